"""Replay of ECG recordings (WFDB, EDF/EDF+, CSV) as ``SampleBlock``s in mV, paced or as fast as possible.

Each recording is read in chunks (``sensors.ecg.reader``), its invalid (NaN) samples are
repaired, it is resampled to the model's rate when the record's rate differs, and cut into
blocks of ``block_ms``. Stream time is exact: sample ``n`` of the output is at
``sample_time_us(n, rate_hz)``, and the blocks do not depend on how the file was chunked.

Invalid samples (gaps a recorder marks, e.g. -2048 in WFDB format 212): with ``nan="hold"``
a NaN run takes the last valid value of its lead (0 at the very start of a record), with
``nan="zero"`` it becomes 0. Repaired samples and runs are counted in ``drops()``. A run
longer than ``max_nan_ms`` is not a gap to paper over: it is an ``InputError`` naming the
file, the lead, the time and the length of the run. ``nan="error"`` makes any NaN an error.

Bad files follow ``on_error`` as in the audio replay (``sensors.files.BadFiles``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numba
import numpy as np
import numpy.typing as npt

from sensors.audio.resample import StreamingResampler, sample_time_us
from sensors.blocks import InputError, SampleBlock
from sensors.ecg.reader import CHUNK_SAMPLES, EcgReader, Leads, expand_ecg_paths, open_ecg
from sensors.files import OnError
from sensors.replay import FileEnd, FrameCutter, SampleFileReplay, SamplePiece

NanPolicy = Literal["hold", "zero", "error"]


@numba.njit(nogil=True, cache=True)
def _repair_nans(
    data: npt.NDArray[np.float32],
    last: npt.NDArray[np.float32],
    run_len: npt.NDArray[np.int64],
    zero: bool,
    max_run: int,
) -> tuple[int, int, int, int]:
    """Replace NaNs in ``data`` in place, carrying ``last`` value and ``run_len`` across chunks.

    Returns (NaN samples, runs started, lead, row) where lead/row point at the first sample
    that makes a run longer than ``max_run`` (-1, -1 when none does; the chunk is then only
    partly repaired and must not be used).
    """
    n_nan = 0
    n_runs = 0
    for c in range(data.shape[1]):
        for i in range(data.shape[0]):
            v = data[i, c]
            if v != v:
                if run_len[c] == 0:
                    n_runs += 1
                run_len[c] += 1
                n_nan += 1
                if run_len[c] > max_run:
                    return n_nan, n_runs, c, i
                data[i, c] = 0.0 if zero else last[c]
            else:
                run_len[c] = 0
                last[c] = v
    return n_nan, n_runs, -1, -1


class _RecordStream:
    """One recording: chunks -> NaN repair -> resampling -> blocks of ``block_ms``."""

    def __init__(self, reader: EcgReader, rate_hz: float | None, block_ms: float, nan: NanPolicy,
                 max_nan_ms: float) -> None:  # fmt: skip
        self.reader = reader
        self.rate_hz = reader.rate_hz if rate_hz is None else float(rate_hz)
        self.resampler: StreamingResampler | None = None
        if self.rate_hz != reader.rate_hz:
            try:
                self.resampler = StreamingResampler(reader.rate_hz, self.rate_hz, reader.n_leads)
            except ValueError as exc:
                msg = f"{reader.path}: cannot resample its {reader.rate_hz:g} Hz to {self.rate_hz:g} Hz: {exc}"
                raise InputError(msg) from exc
        self.zero = nan == "zero"
        self.nan = nan
        self.max_nan_ms = max_nan_ms
        self.max_run = 0 if nan == "error" else math.floor(max_nan_ms * reader.rate_hz / 1000.0 + 1e-9)
        self._last = np.zeros(reader.n_leads, dtype=np.float32)
        self._run_len = np.zeros(reader.n_leads, dtype=np.int64)
        self.nan_samples = 0
        self.nan_runs = 0
        self.cut = FrameCutter(max(1, round(self.rate_hz * block_ms / 1000.0)), reader.n_leads)
        self._done = False

    def read(self) -> npt.NDArray[np.float32] | None:
        """Next ``(frames, n_leads)`` block of ``block_ms`` (the last may be shorter); None at the end."""
        while self.cut.short() and not self._done:
            self._fill()
        return self.cut.take()

    def _fill(self) -> None:
        first = self.reader.position
        chunk = self.reader.read()
        if chunk is None:
            out = self.resampler.flush() if self.resampler is not None else chunk
            self._done = True
        else:
            chunk = np.array(chunk, dtype=np.float32, order="C")  # writable copy for the repair
            n_nan, n_runs, col, row = _repair_nans(chunk, self._last, self._run_len, self.zero, self.max_run)
            self.nan_samples += n_nan
            self.nan_runs += n_runs
            if col >= 0:
                self._nan_error(chunk, first, col, row)
            out = self.resampler.process(chunk) if self.resampler is not None else chunk
        if out is not None and out.shape[0]:
            self.cut.push(out)

    def _nan_error(self, chunk: npt.NDArray[np.float32], first: int, col: int, row: int) -> None:
        """Raise for the NaN run of lead ``col`` that grew too long at ``chunk[row]``, measured to its end."""
        start = first + row - int(self._run_len[col]) + 1
        here = _leading_nans(chunk[row:, col])
        length = int(self._run_len[col]) - 1 + here
        tail_open = here == chunk.shape[0] - row
        while tail_open and (more := self.reader.read()) is not None:
            n = _leading_nans(more[:, col])
            length += n
            tail_open = n == more.shape[0]
        rate = self.reader.rate_hz
        where = f"{self.reader.path}: lead {self.reader.leads[col]}: {length} invalid (NaN) sample(s)"
        span = f"at {start / rate:.3f} s ({length * 1000.0 / rate:.1f} ms)"
        if self.nan == "error":
            msg = f"{where} {span}; nan='error' accepts none"
        else:
            msg = f"{where} in a run {span}, longer than max_nan_ms={self.max_nan_ms:g}"
        raise InputError(msg)

    def close(self) -> None:
        self.reader.close()


def _leading_nans(x: npt.NDArray[np.float32]) -> int:
    valid = np.flatnonzero(~np.isnan(x))
    return int(valid[0]) if valid.size else int(x.shape[0])


class EcgFileSource(SampleFileReplay[_RecordStream]):
    """Async iterator of ``SampleBlock``s (mV, float32, ``(n, n_leads)``) and an ``EndOfStream`` per record.

    ``speed="max"`` (or None) replays as fast as the consumer takes blocks; ``speed=x`` releases
    each block when its end is due at x times real time, on the loop clock from the start of
    the replay (never drifts; a slow consumer is caught up with, nothing is dropped).
    ``rate_hz=None`` keeps each record's own rate. ``EndOfStream.meta`` holds ``record`` (path
    without extension), ``rate_hz`` (the record's own rate), ``lead`` (names, comma-separated),
    ``unit`` and, for a record that failed after some blocks, ``error``.
    """

    _what = "record(s)"

    def __init__(
        self,
        paths: Sequence[Path],
        rate_hz: float | None = None,
        *,
        lead: Leads = 0,
        block_ms: float = 100.0,
        speed: float | Literal["max"] | None = 1.0,
        loop: bool = False,
        labels: Mapping[str, str] | None = None,
        on_error: OnError = "raise",
        nan: NanPolicy = "hold",
        max_nan_ms: float = 200.0,
        chunk_samples: int = CHUNK_SAMPLES,
        csv_rate_hz: float | None = None,
    ) -> None:
        if rate_hz is not None and not (math.isfinite(rate_hz) and rate_hz > 0):
            msg = f"rate_hz must be positive or None (the record's rate), got {rate_hz}"
            raise ValueError(msg)
        if not (math.isfinite(block_ms) and block_ms > 0):
            msg = f"block_ms must be positive, got {block_ms}"
            raise ValueError(msg)
        if speed == "max":
            speed = None
        if speed is not None and (isinstance(speed, str) or not (math.isfinite(speed) and speed > 0)):
            msg = f"speed must be positive or 'max' (unpaced), got {speed!r}"
            raise ValueError(msg)
        if nan not in ("hold", "zero", "error"):
            msg = f"nan must be 'hold', 'zero' or 'error', got {nan!r}"
            raise ValueError(msg)
        if not (math.isfinite(max_nan_ms) and max_nan_ms >= 0):
            msg = f"max_nan_ms must be >= 0, got {max_nan_ms}"
            raise ValueError(msg)
        super().__init__(paths, expand_ecg_paths, speed=speed, loop=loop, labels=labels, on_error=on_error)
        self.rate_hz = None if rate_hz is None else float(rate_hz)
        self.lead = lead
        self.block_ms = float(block_ms)
        self.nan: NanPolicy = nan
        self.max_nan_ms = float(max_nan_ms)
        self.chunk_samples = chunk_samples
        self.csv_rate_hz = csv_rate_hz
        self.nan_samples = 0
        """Invalid samples repaired (hold/zero), over all leads and records."""
        self.nan_runs = 0

    def drops(self) -> dict[str, int]:
        """Nothing is dropped; repaired invalid samples and skipped files are counted here."""
        return {"nan_samples": self.nan_samples, "nan_runs": self.nan_runs, "skipped_files": self.skipped_files}

    def _open(self, path: Path) -> _RecordStream:
        reader = open_ecg(path, lead=self.lead, chunk_samples=self.chunk_samples, csv_rate_hz=self.csv_rate_hz)
        try:
            return _RecordStream(reader, self.rate_hz, self.block_ms, self.nan, self.max_nan_ms)
        except InputError:
            reader.close()
            raise

    def _label_of(self, path: Path) -> str | None:
        label = self._label(path)
        if label is None and path.suffix.lower() in (".hea", ".dat"):
            label = self._label(path.with_suffix(""))
        return label

    def _due_s(self, f: _RecordStream, played: float, piece: SamplePiece) -> float:
        # Records may differ in rate: the pacing clock runs in seconds.
        return played + (piece[0] + len(piece[1])) / f.rate_hz

    def _close(self, f: _RecordStream) -> None:
        f.close()
        self.nan_samples += f.nan_samples
        self.nan_runs += f.nan_runs

    def _end(self, f: _RecordStream) -> FileEnd:
        reader, n_out = f.reader, f.cut.n_out
        meta = {
            "record": str(reader.record),
            "rate_hz": f"{reader.rate_hz:g}",
            "lead": ",".join(reader.leads),
            "unit": ",".join(reader.units),
        }
        return FileEnd(sample_time_us(n_out, f.rate_hz), n_out / f.rate_hz, meta)


async def _drain(src: EcgFileSource) -> int:
    n = 0
    async for item in src:
        if isinstance(item, SampleBlock):
            n += item.n_samples
    return n


def bench(path: Path, *, repeat: int = 5, block_ms: float = 100.0, rate_hz: float | None = None) -> float:
    """Median samples/s (per lead, output rate) of an unpaced replay of ``path``, lead 0."""
    rates: list[float] = []
    for _ in range(repeat + 1):  # the first run compiles the numba kernel and warms the page cache
        src = EcgFileSource([path], rate_hz, block_ms=block_ms, speed="max")
        t0 = time.perf_counter()
        n = asyncio.run(_drain(src))
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates[1:]))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Throughput of an ECG replay at --speed max.")
    parser.add_argument("path", type=Path)
    parser.add_argument("--speed", choices=["max"], default="max", help="only unpaced replay is measured")
    parser.add_argument("--block-ms", type=float, default=100.0)
    parser.add_argument("--rate-hz", type=float, default=None, help="resample to this rate (default: the record's)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    median = bench(args.path, repeat=args.repeat, block_ms=args.block_ms, rate_hz=args.rate_hz)
    print(f"{args.path}: median {median:,.0f} samples/s over {args.repeat} runs (block {args.block_ms:g} ms)")
