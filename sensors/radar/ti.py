"""TI mmWave FMCW raw ADC captures: ``.npy`` cubes, numpy-text chirps and DCA1000 ``.bin`` files.

Chirp parameters come from a ``ChirpConfig``: given field by field, read from a TI mmWave SDK
CLI ``.cfg`` (``ChirpConfig.from_cfg``), or a named preset (``"openradar"``: the parameters the
OpenRadar tutorials state for their captures).

Frames are ``(n_chirps, n_tx * n_rx, n_samples)``: chirp loops as sweeps, TDM-MIMO virtual
antennas TX-major (TX0 RX0..RX3, TX1 RX0..RX3) as channels, ADC samples as points
(``domain="fmcw_adc"``).

``.npy`` (and ``.txt``, one chirp of numpy text complex): ``(chirps, samples)``,
``(chirps, antennas, samples)`` or ``(frames, chirps, antennas, samples)``; chirps and antennas
come from the file, samples must match the config. Cubes of complex128 whose parts are all
whole numbers in 0..65535 hold uint16 bit patterns of int16 I/Q (the OpenRadar files):
they are reinterpreted as int16 (65531 -> -5). int16 and true complex cubes are taken as they are.

DCA1000 ``.bin`` (int16 little-endian, frame after frame, chirp after chirp, RX after RX),
``bin_layout``:

* ``"lvds2"`` (xWR16xx/18xx/68xx, complex, 2 LVDS lanes; TI's DCA1000 raw ADC data format):
  per chirp per RX ``I0 I1 Q0 Q1 I2 I3 Q2 Q3 ...``;
* ``"iq"``: ``I0 Q0 I1 Q1 ...`` (files already de-interleaved by other tools);
* ``"real"``: real-only ADC, ``n_samples`` int16 per chirp per RX (chosen automatically when the
  config says ``adc_output="real"``).

A file that is not a whole number of frames is an InputError naming the file and the byte
counts (``partial_frames="error"``), or, with ``partial_frames="drop"``, the trailing partial
frame is left out and counted in ``RadarReader.extra_meta["dropped_bytes"]``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sensors.blocks import InputError
from sensors.radar.base import RadarReader, Segment, regular_times_us
from sensors.radar.frames import RadarGeometry, fmcw_range_resolution_m

BinLayout = Literal["lvds2", "iq", "real"]
PartialFrames = Literal["error", "drop"]


MAX_FRAME_SAMPLES = 1 << 25
"""Largest ADC samples per frame (chirps x TX x RX x samples) accepted: real frames are a few million; a
damaged .cfg claiming 10^11 samples per chirp must be refused before frame buffers are sized from it."""


class ChirpConfig(BaseModel):
    """One FMCW chirp profile and the frame built from it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    start_freq_ghz: float = Field(gt=0, title="Start frequency (GHz)", description="profileCfg startFreq.")
    slope_mhz_per_us: float = Field(gt=0, title="Slope (MHz/µs)", description="profileCfg freqSlopeConst.")
    adc_rate_ksps: float = Field(gt=0, title="ADC rate (ksps)", description="profileCfg digOutSampleRate.")
    n_samples: int = Field(ge=1, title="ADC samples per chirp", description="profileCfg numAdcSamples.")
    n_chirps: int = Field(ge=1, title="Chirp loops per frame", description="frameCfg numLoops.")
    n_rx: int = Field(ge=1, le=16, title="Receive antennas", description="Enabled RX (channelCfg rxChannelEn bits).")
    n_tx: int = Field(
        1, ge=1, le=16, title="TX chirps per loop", description="TDM-MIMO transmitters (frameCfg chirp index span)."
    )
    idle_time_us: float = Field(0.0, ge=0, title="Idle time (µs)", description="profileCfg idleTime.")
    ramp_end_time_us: float = Field(gt=0, title="Ramp end time (µs)", description="profileCfg rampEndTime.")
    frame_period_ms: float = Field(
        gt=0, le=3_600_000, title="Frame period (ms)", description="frameCfg framePeriodicity (at most an hour)."
    )
    adc_output: Literal["complex", "real"] = Field(
        "complex", title="ADC output", description="adcCfg adcOutputFmt: 0 is real, 1 and 2 are complex."
    )

    @model_validator(mode="after")
    def _derived_values(self) -> ChirpConfig:
        # Each field may be in range while what is derived from them is not (found by the fuzz suite: a
        # slope of 1e308 gave a range resolution of 0, which RadarGeometry rejected with a bare ValueError).
        n_frame = self.n_chirps * self.n_tx * self.n_rx * self.n_samples
        if n_frame > MAX_FRAME_SAMPLES:
            msg = f"a frame of {n_frame} ADC samples is more than {MAX_FRAME_SAMPLES} (chirps x TX x RX x samples)"
            raise ValueError(msg)
        try:
            derived = {
                "range resolution (m)": self.range_resolution_m,
                "chirp rate (Hz)": self.chirp_rate_hz,
                "frame rate (Hz)": self.frame_rate_hz,
            }
        except ArithmeticError as exc:  # a bandwidth that underflows to 0 divides by zero
            msg = f"these values give no usable range resolution, chirp or frame rate ({exc})"
            raise ValueError(msg) from exc
        for name, value in derived.items():
            if not (math.isfinite(value) and value > 0):
                msg = f"the {name} derived from these values is {value}, not a positive finite number"
                raise ValueError(msg)
        return self

    @property
    def range_resolution_m(self) -> float:
        return fmcw_range_resolution_m(self.slope_mhz_per_us, self.n_samples, self.adc_rate_ksps)

    @property
    def chirp_rate_hz(self) -> float:
        """Chirp loops per second inside a frame (each loop is ``n_tx`` chirps)."""
        return 1e6 / ((self.idle_time_us + self.ramp_end_time_us) * self.n_tx)

    @property
    def frame_rate_hz(self) -> float:
        return 1000.0 / self.frame_period_ms

    @classmethod
    def from_cfg(cls, path: Path) -> ChirpConfig:
        """Read profileCfg, chirpCfg, frameCfg, channelCfg (and adcCfg) of a mmWave SDK CLI file."""
        return parse_cli_cfg(Path(path))


CHIRP_PRESETS: dict[str, ChirpConfig] = {
    # OpenRadar tutorial captures (PROVENANCE.md section 4): 77 GHz, 2 TX x 4 RX TDM-MIMO.
    # The tutorials do not state the frame period; 100 ms is assumed (it only sets frame times).
    "openradar": ChirpConfig(
        start_freq_ghz=77.4201,
        slope_mhz_per_us=60.0,
        adc_rate_ksps=2500.0,
        n_samples=128,
        n_chirps=128,
        n_rx=4,
        n_tx=2,
        idle_time_us=30.0,
        ramp_end_time_us=62.0,
        frame_period_ms=100.0,
    ),
}


def chirp_config(value: ChirpConfig | Path | str) -> ChirpConfig:
    """A ChirpConfig as given, a preset name (``"openradar"``), or a ``.cfg`` file path."""
    if isinstance(value, ChirpConfig):
        return value
    if isinstance(value, str) and value in CHIRP_PRESETS:
        return CHIRP_PRESETS[value]
    path = Path(value)
    if path.suffix.lower() != ".cfg" and not path.is_file():
        msg = f"chirp config {value!r} is neither a preset ({', '.join(CHIRP_PRESETS)}) nor a .cfg file"
        raise InputError(msg)
    return parse_cli_cfg(path)


def _numbers(path: Path, line_no: int, words: list[str], need: int) -> list[float]:
    if len(words) - 1 < need:
        msg = f"{path}:{line_no}: {words[0]} needs at least {need} values, found {len(words) - 1}"
        raise InputError(msg)
    try:
        return [float(w) for w in words[1:]]
    except ValueError as exc:
        msg = f"{path}:{line_no}: {words[0]}: {exc}"
        raise InputError(msg) from exc


def parse_cli_cfg(path: Path) -> ChirpConfig:
    """ChirpConfig of a mmWave SDK CLI ``.cfg`` (one profile; chirps of the frame from frameCfg).

    Fields used (mmWave SDK user guide order): ``profileCfg id startFreq idleTime adcStartTime
    rampEndTime txPower txPhase slope txStartTime numAdcSamples sampleRate ...``;
    ``chirpCfg startIdx endIdx profileId ...``; ``frameCfg chirpStartIdx chirpEndIdx numLoops
    numFrames framePeriodicity ...``; ``channelCfg rxEnableMask txEnableMask cascading``;
    ``adcCfg numAdcBits adcOutputFmt``.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        msg = f"{path}: cannot read chirp config: {exc}"
        raise InputError(msg) from exc
    found: dict[str, tuple[int, list[float]]] = {}
    profiles = 0
    need = {"profileCfg": 11, "frameCfg": 5, "channelCfg": 2, "adcCfg": 2, "chirpCfg": 3}
    for line_no, raw in enumerate(text.splitlines(), 1):
        words = raw.split("%", 1)[0].split()
        if not words or words[0] not in need:
            continue
        if words[0] == "profileCfg":
            profiles += 1
        if words[0] == "chirpCfg" and "chirpCfg" in found:
            continue  # several chirpCfg lines are normal (one per TX); frameCfg says which are used
        found[words[0]] = (line_no, _numbers(path, line_no, words, need[words[0]]))
    missing = [k for k in ("profileCfg", "frameCfg", "channelCfg") if k not in found]
    if missing:
        msg = f"{path}: chirp config lacks {', '.join(missing)}"
        raise InputError(msg)
    if profiles > 1:
        msg = f"{path}: {profiles} profileCfg lines; only one chirp profile is supported"
        raise InputError(msg)
    p = found["profileCfg"][1]
    fr = found["frameCfg"][1]
    ch = found["channelCfg"][1]
    try:
        adc_fmt = int(found["adcCfg"][1][1]) if "adcCfg" in found else 1
        return ChirpConfig(
            start_freq_ghz=p[1],
            idle_time_us=p[2],
            ramp_end_time_us=p[4],
            slope_mhz_per_us=p[7],
            n_samples=int(p[9]),
            adc_rate_ksps=p[10],
            n_chirps=int(fr[2]),
            n_tx=int(fr[1] - fr[0]) + 1,
            frame_period_ms=fr[4],
            n_rx=bin(int(ch[0])).count("1"),
            adc_output="real" if adc_fmt == 0 else "complex",
        )
    except (ValueError, OverflowError) as exc:  # ValidationError is a ValueError; int(inf) an OverflowError
        msg = f"{path}: chirp config values out of range: {exc}"
        raise InputError(msg) from exc


def int16_iq(path: Path, cube: npt.NDArray[np.generic]) -> npt.NDArray[np.complex64]:
    """A TI cube as complex64 ADC counts; uint16 bit patterns stored in complex128 become int16."""
    if cube.dtype.kind == "c":
        re, im = cube.real, cube.imag
        whole = bool(np.all(re == np.round(re)) and np.all(im == np.round(im)))
        if whole and re.size and min(re.min(), im.min()) >= 0 and max(re.max(), im.max()) <= 65535:
            # uint16 bit patterns of int16 values: 65531 -> -5 (values below 32768 are unchanged)
            re16 = re.astype(np.uint16).view(np.int16)
            im16 = im.astype(np.uint16).view(np.int16)
            out = np.empty(cube.shape, dtype=np.complex64)
            out.real, out.imag = re16, im16
            return out
        return cube.astype(np.complex64)
    if cube.dtype.kind in "iuf":
        return cube.astype(np.complex64)
    msg = f"{path}: expected a complex or integer cube, found dtype {cube.dtype}"
    raise InputError(msg)


def as_4d(path: Path, cube: npt.NDArray[np.complex64], n_samples: int) -> npt.NDArray[np.complex64]:
    """``(frames, chirps, antennas, samples)`` from the 1-4 dimensional TI cube layouts."""
    if cube.ndim not in (1, 2, 3, 4) or cube.size == 0:
        msg = (
            f"{path}: expected (samples), (chirps, samples), (chirps, antennas, samples) or "
            f"(frames, chirps, antennas, samples), found shape {cube.shape}"
        )
        raise InputError(msg)
    if cube.shape[-1] != n_samples:
        msg = (
            f"{path}: {cube.shape[-1]} samples per chirp (last axis of {cube.shape}), the chirp config says {n_samples}"
        )
        raise InputError(msg)
    shapes = {1: (1, 1, 1, -1), 2: (1, cube.shape[0], 1, -1), 3: (1, *cube.shape[:2], -1), 4: cube.shape}
    return cube.reshape(shapes[cube.ndim])


def bin_frame_values(cfg: ChirpConfig, layout: BinLayout) -> int:
    """int16 values per frame of a DCA1000 capture."""
    per_sample = 1 if layout == "real" else 2
    return cfg.n_chirps * cfg.n_tx * cfg.n_rx * cfg.n_samples * per_sample


def decode_bin(raw: npt.NDArray[np.int16], cfg: ChirpConfig, layout: BinLayout) -> npt.NDArray[np.complex64]:
    """int16 values of whole frames -> complex64 ``(frames, n_chirps, n_tx * n_rx, n_samples)``."""
    n_frames = raw.size // bin_frame_values(cfg, layout)
    n_s = cfg.n_samples
    rows = raw.reshape(n_frames * cfg.n_chirps * cfg.n_tx * cfg.n_rx, -1)
    out = np.empty((rows.shape[0], n_s), dtype=np.complex64)
    if layout == "real":
        out.real, out.imag = rows, 0.0
    elif layout == "iq":
        out.real, out.imag = rows[:, 0::2], rows[:, 1::2]
    else:  # lvds2: groups of four values I(2k) I(2k+1) Q(2k) Q(2k+1)
        quads = rows.reshape(rows.shape[0], n_s // 2, 4)
        out.real = quads[:, :, 0:2].reshape(rows.shape[0], n_s)
        out.imag = quads[:, :, 2:4].reshape(rows.shape[0], n_s)
    # chirp order in a frame: loop-major, TX inside a loop; channels TX-major virtual antennas
    return out.reshape(n_frames, cfg.n_chirps, cfg.n_tx * cfg.n_rx, n_s)


def encode_bin(cube: npt.NDArray[np.complexfloating], layout: BinLayout = "lvds2") -> bytes:
    """The inverse of ``decode_bin`` for ``(frames, chirps, tx * rx, samples)`` cubes (tests, simulators)."""
    c = np.asarray(cube)
    rows = c.reshape(-1, c.shape[-1])
    re = np.round(rows.real).astype(np.int16)
    im = np.round(rows.imag).astype(np.int16)
    if layout == "real":
        return re.tobytes()
    if layout == "iq":
        return np.stack((re, im), axis=-1).astype("<i2").tobytes()
    n = rows.shape[1]
    quads = np.concatenate((re.reshape(-1, n // 2, 2), im.reshape(-1, n // 2, 2)), axis=-1)
    return quads.astype("<i2").tobytes()


def ti_geometry(cfg: ChirpConfig, n_chirps: int, n_channels: int) -> RadarGeometry:
    return RadarGeometry(
        "fmcw_adc",
        n_chirps,
        n_channels,
        cfg.n_samples,
        cfg.frame_rate_hz,
        cfg.chirp_rate_hz,
        range_resolution_m=cfg.range_resolution_m,
        # The sampled part of the ramp is centred near start + half the swept bandwidth.
        carrier_hz=cfg.start_freq_ghz * 1e9
        + 0.5 * cfg.slope_mhz_per_us * 1e12 * cfg.n_samples / (cfg.adc_rate_ksps * 1e3),
        sensor="ti-mmwave",
    )


def open_ti_cube(path: Path, chirp: ChirpConfig) -> RadarReader:
    """A ``.npy`` cube (memory-mapped) or a ``.txt`` chirp (numpy text complex, small, read whole)."""
    try:
        if path.suffix.lower() == ".txt":
            data: npt.NDArray[np.generic] = np.loadtxt(path, dtype=np.complex128, ndmin=1)
        else:
            data = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy's .npy header parser also raises SyntaxError and tokenize.TokenError
        msg = f"{path}: not a readable {'numpy text' if path.suffix.lower() == '.txt' else '.npy'} array: {exc}"
        raise InputError(msg) from exc
    if data.dtype.kind not in "iufc":
        msg = f"{path}: expected a complex or integer cube, found dtype {data.dtype}"
        raise InputError(msg)
    shape4 = as_4d(path, np.empty(data.shape, dtype=np.int8), chirp.n_samples).shape

    def load(a: int, b: int) -> npt.NDArray[np.complex64]:
        # The bit-pattern test runs per chunk; fewer than 4 dimensions is one frame, read whole.
        if data.ndim == 4:
            return np.ascontiguousarray(int16_iq(path, np.asarray(data[a:b])))
        return as_4d(path, int16_iq(path, np.asarray(data)), chirp.n_samples)[a:b].copy()

    geometry = ti_geometry(chirp, shape4[1], shape4[2])
    fmt = "ti_txt" if path.suffix.lower() == ".txt" else "ti_npy"
    times = regular_times_us(shape4[0], chirp.frame_rate_hz)
    return RadarReader(path, fmt, [Segment("cube", geometry, times, load)])


def open_ti_bin(
    path: Path, chirp: ChirpConfig, *, bin_layout: BinLayout = "lvds2", partial_frames: PartialFrames = "error"
) -> RadarReader:
    """A DCA1000 ``.bin`` capture, memory-mapped (see the module docstring for layouts and partial frames)."""
    layout: BinLayout = "real" if chirp.adc_output == "real" else bin_layout
    if chirp.adc_output == "complex" and layout == "real":
        msg = f"{path}: bin_layout 'real' with a complex chirp config (adc_output='complex')"
        raise InputError(msg)
    if layout == "lvds2" and chirp.n_samples % 2:
        msg = f"{path}: the 2-lane LVDS layout needs an even number of samples per chirp, config says {chirp.n_samples}"
        raise InputError(msg)
    try:
        size = path.stat().st_size
    except OSError as exc:
        msg = f"{path}: cannot read: {exc}"
        raise InputError(msg) from exc
    frame_bytes = 2 * bin_frame_values(chirp, layout)
    n_frames, rest = divmod(size, frame_bytes)
    meta: dict[str, str] = {}
    if rest:
        where = (
            f"{path}: {size} bytes is {n_frames} whole frame(s) of {frame_bytes} bytes "
            f"({chirp.n_chirps} loops x {chirp.n_tx} TX x {chirp.n_rx} RX x {chirp.n_samples} samples, {layout}) "
            f"and {rest} bytes of a partial frame"
        )
        if partial_frames == "error":
            raise InputError(f"{where} (truncated capture or wrong chirp config)")
        meta["dropped_bytes"] = str(rest)
    if n_frames == 0:
        msg = f"{path}: {size} bytes, less than one frame of {frame_bytes} bytes"
        raise InputError(msg)
    raw = np.memmap(path, dtype="<i2", mode="r", shape=(n_frames * frame_bytes // 2,))
    per_frame = frame_bytes // 2

    def load(a: int, b: int) -> npt.NDArray[np.complex64]:
        return decode_bin(np.asarray(raw[a * per_frame : b * per_frame]), chirp, layout)

    geometry = ti_geometry(chirp, chirp.n_chirps, chirp.n_tx * chirp.n_rx)
    times = regular_times_us(n_frames, chirp.frame_rate_hz)
    return RadarReader(path, "ti_bin", [Segment("capture", geometry, times, load)], meta=meta)
