"""Streaming radar encoder: ``RadarBlock`` -> ``SpikeBatch`` (see ``encoder_config`` for what it computes).

The stateless part of each frame (range FFT of FMCW chirps, mean and variance over sweeps)
is vectorised numpy over the whole block; the recurrences (clutter, phase, delta modulation)
are numba kernels over frames. A change of geometry within a stream (an Acconeer file whose
sessions switch app mode) starts the per-point state afresh and is counted.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from sensors.blocks import InputError, SpikeBatch
from sensors.radar.encode_kernel import delta_modulate, point_features
from sensors.radar.encoder_config import FEATURES, RadarEncoderConfig
from sensors.radar.frames import SPEED_OF_LIGHT_M_S, RadarBlock, RadarGeometry

N_FEATURES = len(FEATURES)


def point_ranges_m(geometry: RadarGeometry) -> npt.NDArray[np.float64]:
    """Range of each point the encoder sees: the recording's points, or FMCW range-FFT bins."""
    if geometry.domain == "range":
        assert geometry.range_m is not None  # RadarGeometry checks it
        return np.asarray(geometry.range_m, dtype=np.float64)
    assert geometry.range_resolution_m is not None
    n_bins = geometry.n_points if geometry.is_complex else geometry.n_points // 2
    return np.arange(n_bins, dtype=np.float64) * geometry.range_resolution_m


def cell_weights(ranges_m: npt.NDArray[np.float64], cells_m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """(n_cells, n_points) weights: a cell averages the points in its log-range bin.

    Bin edges lie halfway (in log range) between cell centres. A cell whose bin holds no point
    but lies within the points' span interpolates linearly (in log range) between its nearest
    points; the span reaches half a point spacing beyond the outer points (a single point:
    +-10 %). Cells outside it get no weight and stay silent.
    """
    n_pt = len(ranges_m)
    w = np.zeros((len(cells_m), n_pt))
    r_all = np.log(np.maximum(ranges_m, 1e-3))
    c = np.log(cells_m)
    step = float(np.median(np.diff(c))) if len(c) > 1 else math.log(2.0)
    edges = np.concatenate([[c[0] - step / 2], (c[:-1] + c[1:]) / 2, [c[-1] + step / 2]])
    order = np.argsort(r_all)
    r = r_all[order]
    half = 0.5 * float(np.median(np.diff(r))) if n_pt > 1 else math.log(1.1)
    eye = np.eye(n_pt)
    for j in range(len(c)):
        in_bin = np.flatnonzero((r_all >= edges[j]) & (r_all < edges[j + 1]))
        if in_bin.size:
            w[j, in_bin] = 1.0 / in_bin.size
        elif r[0] - half <= c[j] <= r[-1] + half:
            w[j, order] = [np.interp(c[j], r, eye[k]) for k in range(n_pt)] if n_pt > 1 else 1.0
    return w


class RadarEncoder:
    """Encoder of one radar stream at a time; call ``reset()`` before the next stream."""

    def __init__(self, cfg: RadarEncoderConfig) -> None:
        self.cfg = cfg
        self._cells_m = cfg.cell_ranges_m()
        self._thresholds = np.array(
            [cfg.threshold_db, cfg.threshold_db, cfg.threshold_mm] * cfg.n_range, dtype=np.float64
        )
        self._dropped = np.zeros(1, dtype=np.int64)
        self.geometry_changes = 0
        self.frames = 0
        self.reset()

    @property
    def n_channels(self) -> int:
        return self.cfg.n_channels

    def drops(self) -> dict[str, int]:
        """Spikes beyond ``max_spikes_per_frame`` (the reference still moved), over the encoder's life."""
        return {"saturated": int(self._dropped[0])}

    def reset(self) -> None:
        self._geometry: RadarGeometry | None = None
        self._t_end_us: int | None = None
        self._last_t_us: int | None = None
        self._cum_mm = np.zeros(self.cfg.n_range)
        self._ref = np.zeros(self.cfg.n_range * N_FEATURES)
        self._started = False

    def _start_geometry(self, g: RadarGeometry) -> None:
        if self._geometry is not None:
            self.geometry_changes += 1
        self._geometry = g
        self._weights = cell_weights(point_ranges_m(g), self._cells_m)
        self._covered = self._weights.sum(axis=1) > 0
        carrier = getattr(g, "carrier_hz", None) or self.cfg.carrier_hz
        self._wavelength_mm = SPEED_OF_LIGHT_M_S / carrier * 1e3
        n_ch, n_pt = g.n_channels, self._weights.shape[1]
        self._clutter = np.zeros((n_ch, n_pt), np.complex128)
        self._prev = np.zeros((n_ch, n_pt), np.complex128)
        self._state = np.zeros(2)
        self._fresh = True  # reference levels settle on the first frame of a new geometry

    def encode(self, block: RadarBlock) -> SpikeBatch:
        """Spikes of one block; the batch covers ``[end of the previous batch, end of this block)``."""
        t_start_us = self._t_end_us if self._t_end_us is not None else block.t_start_us
        if len(block) == 0:
            self._t_end_us = max(t_start_us, block.t_end_us)
            return self._batch(block, np.empty(0, np.int64), np.empty(0, np.int32), t_start_us)
        self._check(block)
        if block.geometry != self._geometry:
            self._start_geometry(block.geometry)
        values = self._values(block)
        t_us = np.ascontiguousarray(block.t_us, dtype=np.int64)
        if self._fresh:
            self._ref[:] = values[0]
            self._fresh = False
        k = values.shape[1]
        cap = len(block) * k * self.cfg.max_spikes_per_frame
        out_t = np.empty(cap, np.int64)
        out_ch = np.empty(cap, np.int32)
        n_out = delta_modulate(
            values, t_us, self._ref, self._thresholds, self.cfg.max_spikes_per_frame, out_t, out_ch, self._dropped
        )
        self.frames += len(block)
        self._last_t_us = int(t_us[-1])
        self._t_end_us = max(block.t_end_us, t_start_us)
        return self._batch(block, out_t[:n_out], out_ch[:n_out], t_start_us)

    def _values(self, block: RadarBlock) -> npt.NDArray[np.float64]:
        """(n_frames, n_range * 3) feature values per cell: motion dB, doppler dB, cumulative mm."""
        g = block.geometry
        x = block.frames.astype(np.complex128)
        if g.domain == "fmcw_adc":
            x = x - x.mean(axis=-1, keepdims=True)  # ADC DC offset would leak into every bin
            x = np.fft.fft(x * np.hanning(g.n_points), axis=-1)[..., : self._weights.shape[1]]
        m = x.mean(axis=1)
        var = (np.abs(x - m[:, None]) ** 2).mean(axis=1)
        dt_s = np.diff(block.t_us, prepend=self._last_t_us if self._last_t_us is not None else block.t_us[0])
        dt_s = np.where(dt_s > 0, dt_s * 1e-6, 1.0 / g.frame_rate_hz)
        alpha = 1.0 - np.exp(-dt_s / self.cfg.clutter_tau_s)
        n, n_pt = len(block), m.shape[2]
        motion, doppler, disp = (np.zeros((n, n_pt)) for _ in range(3))
        ref_power = np.zeros(n)
        gate = 10.0 ** (self.cfg.phase_snr_db / 10.0)
        point_features(
            np.ascontiguousarray(m), np.ascontiguousarray(var), alpha, g.n_sweeps, self._clutter, self._prev,
            self._state, self._wavelength_mm, gate, g.is_complex, motion, doppler, disp, ref_power,
        )  # fmt: skip
        floor = 10.0 ** (self.cfg.floor_db / 10.0)
        ref = np.maximum(ref_power, 1e-12)[:, None]
        w = self._weights.T
        mot_db = 10.0 * np.log10(np.maximum((motion @ w) / ref, floor))
        dop_db = 10.0 * np.log10(np.maximum((doppler @ w) / ref, floor))
        # A cell's displacement is its points' weighted by how much each moved: the static
        # points of a cell must not dilute the one reflector that moves.
        moved = motion * w.T.any(axis=0)
        disp_cell = ((disp * moved) @ w) / np.maximum(moved @ w, 1e-300)
        cum = self._cum_mm + np.cumsum(disp_cell * (w.sum(axis=0) > 0), axis=0)
        self._cum_mm = cum[-1].copy()
        # Cells the points do not reach stay at the floor: they never spike.
        mot_db[:, ~self._covered] = self.cfg.floor_db
        dop_db[:, ~self._covered] = self.cfg.floor_db
        return np.ascontiguousarray(np.stack([mot_db, dop_db, cum], axis=2).reshape(n, -1))

    def _check(self, block: RadarBlock) -> None:
        bad = ~np.isfinite(block.frames.view(np.float32).reshape(len(block), -1)).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            msg = f"{block.stream}: frame {block.first_frame + i} at t = {int(block.t_us[i])} us holds NaN or inf"
            raise InputError(msg)
        t = block.t_us
        if (self._last_t_us is not None and t[0] <= self._last_t_us) or (len(t) > 1 and (np.diff(t) <= 0).any()):
            msg = f"{block.stream}: frame times must increase (block from frame {block.first_frame})"
            raise InputError(msg)

    def _batch(
        self, block: RadarBlock, t_us: npt.NDArray[np.int64], ch: npt.NDArray[np.int32], t_start_us: int
    ) -> SpikeBatch:
        end = self._t_end_us if self._t_end_us is not None else block.t_end_us
        return SpikeBatch(block.stream, t_us, ch, self.cfg.n_channels, t_start_us, end, block.captured_ns)
