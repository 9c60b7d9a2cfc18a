"""Re-blocking for live ECG sources (serial, UDP): device chunks -> fixed-size ``SampleBlock``s."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sensors.audio.resample import StreamingResampler, sample_time_us
from sensors.blocks import EndOfStream, SampleBlock


class LiveBlocker:
    """Sample chunks from a live device (device rate, mV, all channels) -> ``SampleBlock``s of ``block_ms``.

    Keeps ``lead`` (or all channels), resamples to ``out_rate_hz`` when it differs from the
    device rate, and numbers output samples from 0 in each stream (``begin`` .. ``end``).
    Shared by the UDP and serial sources.
    """

    def __init__(
        self, stream: str, rate_hz: float, channels: int, *, lead: int | None, block_ms: float,
        out_rate_hz: float | None = None,
    ) -> None:  # fmt: skip
        if channels < 1 or (lead is not None and not 0 <= lead < channels):
            msg = f"{stream}: lead {lead} is not one of the {channels} channel(s) (index 0..{channels - 1})"
            raise ValueError(msg)
        if block_ms <= 0:
            msg = f"{stream}: block_ms must be positive, got {block_ms}"
            raise ValueError(msg)
        self.stream = stream
        self.lead = lead
        self.out_rate_hz = float(out_rate_hz or rate_hz)
        n_out = channels if lead is None else 1
        self._resampler = None if self.out_rate_hz == rate_hz else StreamingResampler(rate_hz, self.out_rate_hz, n_out)
        self.block_n = max(1, round(block_ms * self.out_rate_hz / 1000))
        self.active = False
        self.streams = 0
        self._meta: dict[str, str] = {}
        self._pending = np.empty((0, n_out), dtype=np.float32)
        self._out_pos = 0
        self._last: npt.NDArray[np.float32] | None = None

    def begin(self, meta: dict[str, str] | None = None) -> None:
        """Start a stream at stream time 0 (``meta`` goes into its ``EndOfStream``)."""
        self.active = True
        self.streams += 1
        self._meta = dict(meta or {})
        self._pending = self._pending[:0]
        self._out_pos = 0
        self._last = None
        if self._resampler is not None:
            self._resampler.reset()

    def push(self, data_mv: npt.NDArray[np.float32], captured_ns: int) -> list[SampleBlock]:
        """Append ``(n, channels)`` samples; returns the blocks completed."""
        if data_mv.shape[0] == 0:
            return []
        if not self.active:
            self.begin()
        x = data_mv if self.lead is None else data_mv[:, self.lead : self.lead + 1]
        self._last = x[-1:].copy()
        if self._resampler is not None:
            x = self._resampler.process(x)
        self._pending = np.concatenate((self._pending, x)) if len(self._pending) else x
        return self._emit(captured_ns, partial=False)

    def fill(self, n: int, captured_ns: int) -> list[SampleBlock]:
        """``n`` lost samples stand in as the last value (zeros before the first)."""
        last = self._last
        if last is None:
            last = np.zeros((1, self._pending.shape[1]), dtype=np.float32)
        if self.lead is not None:
            full = np.zeros((n, self.lead + 1), dtype=np.float32)
            full[:, self.lead] = last[0, 0]
            return self.push(full, captured_ns)
        return self.push(np.repeat(last, n, axis=0), captured_ns)

    def flush(self, captured_ns: int) -> list[SampleBlock]:
        """What is pending as a short block (the device is quiet; latency stays bounded)."""
        return self._emit(captured_ns, partial=True)

    def end(self, captured_ns: int, meta: dict[str, str] | None = None) -> list[SampleBlock | EndOfStream]:
        """Flush the resampler and pending samples, then the stream's ``EndOfStream``."""
        if not self.active:
            return []
        if self._resampler is not None:
            tail = self._resampler.flush()
            if len(tail):
                self._pending = np.concatenate((self._pending, tail))
        out: list[SampleBlock | EndOfStream] = list(self._emit(captured_ns, partial=True))
        self.active = False
        end_meta = {**self._meta, **(meta or {})}
        out.append(
            EndOfStream(self.stream, sample_time_us(self._out_pos, self.out_rate_hz), captured_ns, None, end_meta)
        )
        return out

    def _emit(self, captured_ns: int, *, partial: bool) -> list[SampleBlock]:
        n_full = len(self._pending) // self.block_n * self.block_n
        n = len(self._pending) if partial else n_full
        blocks = []
        for a in range(0, n, self.block_n):
            data = np.ascontiguousarray(self._pending[a : min(a + self.block_n, n)])
            t0 = sample_time_us(self._out_pos, self.out_rate_hz)
            blocks.append(SampleBlock(self.stream, t0, self.out_rate_hz, data, captured_ns, self._out_pos))
            self._out_pos += len(data)
        self._pending = self._pending[n:]
        return blocks
