"""ECG samples over UDP: a front end (an AD8232 on a microcontroller, say) feeds the daemon.

Datagram format "SWEC" version 1, little-endian, a 32-byte header then the samples::

    offset  type  field
     0      4s    magic "SWEC"
     4      u8    version = 1
     5      u8    flags: bit 0 = first datagram since the sender started (optional but helps
                  the receiver tell a restart from a duplicate); bit 1 = samples are float32
                  (clear: int16)
     6      u16   n_channels (>= 1)
     8      u32   seq: +1 per datagram, wraps to 0 after 2**32 - 1
    12      u64   first_sample: index of the datagram's first sample since the sender started
    20      u32   rate_mhz: sampling rate in milli-Hz (360 Hz -> 360000)
    24      u16   n_samples (sample times in this datagram)
    26      u16   reserved = 0
    28      f32   scale: millivolts per unit (value_mv = sample * scale)
    32      n_samples x n_channels samples, interleaved (s0c0, s0c1, s1c0, ...), int16 or float32

A C sender (on a little-endian MCU, as ARM Cortex-M and ESP32 are)::

    struct __attribute__((packed)) swec { char magic[4]; uint8_t version, flags; uint16_t n_channels;
        uint32_t seq; uint64_t first_sample; uint32_t rate_mhz; uint16_t n_samples, reserved; float scale;
        int16_t samples[2 * 36]; } d = {{'S','W','E','C'}, 1, 1, 2, 0, 0, 360000, 36, 0, 1.0f / 200};
    for (;;) {
        for (int i = 0; i < 36; i++) { wait_for_adc_tick(); d.samples[2*i] = adc(0); d.samples[2*i+1] = adc(1); }
        sendto(sock, &d, sizeof d, 0, (struct sockaddr *)&daemon, sizeof daemon);
        d.flags = 0; d.seq++; d.first_sample += 36;
    }

The receiver (``UdpEcgSource``) checks every datagram against the configured channel count
and rate; one that disagrees or cannot be parsed is counted in ``bad_datagrams`` and dropped
with one log line per burst of bad datagrams. Sequence numbers go through the shared
``sensors.datagram.SequenceTracker``: late and duplicate datagrams are counted and dropped
(never glued in), lost ones counted. Samples missing between datagrams (``first_sample``
jumps ahead) are filled with the last value and counted in ``lost_samples``; a gap longer
than ``max_gap_ms``, silence longer than ``max_gap_ms``, or a sender restart ends the
stream (``EndOfStream``) and the next datagram starts a new one at stream time 0. Stream
time is exact: sample ``n`` of a stream is at ``sample_time_us(n, rate)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from sensors.blocks import EndOfStream, SampleBlock
from sensors.datagram import FLAG_STREAM_START, MAX_UDP_PAYLOAD, DatagramError, HeaderFormat
from sensors.ecg.live_blocks import LiveBlocker
from sensors.udp_source import UdpBlockSource

log = logging.getLogger(__name__)

SWEC = HeaderFormat(b"SWEC", 1, "QIHHf")
"""Common header + first_sample u64, rate_mhz u32, n_samples u16, reserved u16, scale f32."""
FLAG_FLOAT32 = 0x02
Item = SampleBlock | EndOfStream


@dataclass(frozen=True, slots=True)
class EcgDatagram:
    seq: int
    flags: int
    first_sample: int
    rate_mhz: int
    scale: float
    raw: npt.NDArray[np.int16] | npt.NDArray[np.float32]
    """Samples as sent, shape ``(n_samples, n_channels)``."""

    @property
    def n_channels(self) -> int:
        return int(self.raw.shape[1])

    def samples_mv(self) -> npt.NDArray[np.float32]:
        return self.raw.astype(np.float32) * np.float32(self.scale)


def max_samples_per_datagram(n_channels: int, *, float32: bool = False) -> int:
    return min(0xFFFF, (MAX_UDP_PAYLOAD - SWEC.size) // (n_channels * (4 if float32 else 2)))


def rate_mhz(rate_hz: float) -> int:
    if not (math.isfinite(rate_hz) and 0 < rate_hz * 1000 < 2**32 - 0.5):
        msg = f"rate must be positive and below 4.29 MHz, got {rate_hz} Hz"
        raise ValueError(msg)
    return round(rate_hz * 1000)


def pack_datagram(
    seq: int, first_sample: int, rate_hz: float, samples: npt.NDArray[np.generic],
    *, scale: float = 1.0, start: bool = False,
) -> bytes:  # fmt: skip
    """One SWEC datagram of ``samples`` ``(n, channels)``: int16 stays int16, anything else is sent as float32."""
    if samples.ndim != 2 or samples.shape[1] < 1:
        msg = f"samples must be (n_samples, n_channels), got shape {samples.shape}"
        raise ValueError(msg)
    is_int = samples.dtype == np.int16
    if samples.shape[0] > max_samples_per_datagram(samples.shape[1], float32=not is_int):
        msg = f"{samples.shape[0]} samples x {samples.shape[1]} channels do not fit one datagram"
        raise ValueError(msg)
    flags = (0 if is_int else FLAG_FLOAT32) | (FLAG_STREAM_START if start else 0)
    fields = (first_sample, rate_mhz(rate_hz), samples.shape[0], 0, scale)
    head = SWEC.pack(seq=seq, flags=flags, word=samples.shape[1], fields=fields)
    return head + np.ascontiguousarray(samples, dtype="<i2" if is_int else "<f4").tobytes()


def unpack_datagram(data: bytes) -> EcgDatagram:
    """Parse one datagram; ``DatagramError`` says what is wrong with it."""
    h = SWEC.unpack(data)
    first_sample, rate, n_samples, _reserved, scale = h.fields
    n_ch = h.word
    if n_ch < 1:
        msg = "n_channels is 0"
        raise DatagramError(msg)
    if rate == 0:
        msg = "rate_mhz is 0"
        raise DatagramError(msg)
    if not math.isfinite(scale):
        msg = f"scale {scale} is not finite"
        raise DatagramError(msg)
    dtype = np.dtype("<f4" if h.flags & FLAG_FLOAT32 else "<i2")
    expected = h.payload_offset + n_samples * n_ch * dtype.itemsize
    if len(data) != expected:
        msg = f"header says {n_samples} samples x {n_ch} channels ({expected} bytes), datagram has {len(data)}"
        raise DatagramError(msg)
    raw = np.frombuffer(data, dtype, count=n_samples * n_ch, offset=h.payload_offset).reshape(n_samples, n_ch)
    if dtype.kind == "f" and not np.isfinite(raw).all():
        msg = "a float32 sample is NaN or infinite"
        raise DatagramError(msg)
    return EcgDatagram(h.seq, h.flags, first_sample, rate, scale, raw.astype(raw.dtype.newbyteorder("=")))


class UdpEcgSource(UdpBlockSource[Item]):
    """Async iterator of ``SampleBlock`` / ``EndOfStream`` from SWEC datagrams (a live source: never ends).

    ``lead`` keeps one channel (index), ``None`` keeps all. ``model_rate_hz`` resamples to the
    rate the model wants when it differs from the device's ``rate_hz``.
    """

    log = log

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 7780,
        *,
        channels: int,
        rate_hz: float,
        lead: int | None = None,
        block_ms: float = 100.0,
        queue_blocks: int = 64,
        max_gap_ms: float = 2000.0,
        idle_flush_ms: float = 200.0,
        model_rate_hz: float | None = None,
    ) -> None:
        if max_gap_ms <= 0 or idle_flush_ms <= 0:
            msg = f"max_gap_ms and idle_flush_ms must be positive, got {max_gap_ms}, {idle_flush_ms}"
            raise ValueError(msg)
        super().__init__(
            host, port, queue_blocks=queue_blocks, max_gap_ms=max_gap_ms, idle_flush_ms=idle_flush_ms,
            datagram_queue=4096,
        )  # fmt: skip
        self.channels = channels
        self.rate_hz = float(rate_hz)
        self._rate_mhz = rate_mhz(rate_hz)
        self.max_gap_samples = max_gap_ms * self.rate_hz / 1000
        self.blocker = LiveBlocker(
            self.stream, self.rate_hz, channels, lead=lead, block_ms=block_ms, out_rate_hz=model_rate_hz
        )
        self.counts = {"bad_datagrams": 0, "lost_samples": 0, "long_gaps": 0, "sample_restarts": 0}
        self._next_sample = 0

    def _listening(self, transport: asyncio.DatagramTransport) -> None:
        self.blocker.stream = self.stream

    def drops(self) -> dict[str, int]:
        return self._datagram_drops(
            more_restarts=self.counts["sample_restarts"],
            lost_samples=self.counts["lost_samples"],
            long_gaps=self.counts["long_gaps"],
        )

    def _active(self) -> bool:
        return self.blocker.active

    def _flush(self) -> None:
        self._put(self.blocker.flush(time.monotonic_ns()))

    def _put(self, items: Sequence[Item]) -> None:
        for item in items:
            self._blocks.put(item)

    def _accept(self, data: bytes, captured_ns: int) -> bool:
        try:
            dg = unpack_datagram(data)
        except DatagramError as exc:
            return self._bad(str(exc))
        if dg.n_channels != self.channels or dg.rate_mhz != self._rate_mhz:
            return self._bad(
                f"{dg.n_channels} channels at {dg.rate_mhz / 1000:g} Hz, "
                f"configured {self.channels} channels at {self._rate_mhz / 1000:g} Hz"
            )
        self._in_bad_burst = False
        verdict = self.tracker.classify(dg.seq, start=bool(dg.flags & FLAG_STREAM_START))
        if not verdict.kind.accepted:
            return True
        gap = dg.first_sample - self._next_sample
        if verdict.kind.new_stream or not self.blocker.active:
            self._begin(dg, "restart")
        elif gap < 0:
            # In sequence, but the sample counter went back: the device restarted its clock.
            self.counts["sample_restarts"] += 1
            self._begin(dg, "restart")
        elif gap > self.max_gap_samples:
            self.counts["long_gaps"] += 1
            self._begin(dg, "gap")
        elif gap > 0:
            self.counts["lost_samples"] += gap
            self._put(self.blocker.fill(gap, captured_ns))
        self._put(self.blocker.push(dg.samples_mv(), captured_ns))
        self._next_sample = dg.first_sample + dg.raw.shape[0]
        return True

    def _begin(self, dg: EcgDatagram, reason: str) -> None:
        if self.blocker.active:
            self._end(reason)
        self.blocker.begin({"device_first_sample": str(dg.first_sample)})
        self._next_sample = dg.first_sample

    def _end(self, reason: str) -> None:
        self._put(self.blocker.end(time.monotonic_ns(), {"end": reason}))


def _load(
    source: Path | str | npt.NDArray[np.generic], rate_hz: float | None, lead: str | int | None
) -> tuple[npt.NDArray[np.generic], float]:
    if isinstance(source, np.ndarray):
        if rate_hz is None:
            msg = "rate_hz is required when sending an array"
            raise ValueError(msg)
        arr = source.reshape(len(source), -1)
        return (arr if lead is None else arr[:, [int(lead)]]), rate_hz
    from sensors.ecg.records import read_csv_signal, read_wfdb

    path = Path(source)
    rec = read_csv_signal(path, rate_hz=rate_hz, lead=lead) if path.suffix == ".csv" else read_wfdb(path, lead=lead)
    return rec.signals_mv, rec.rate_hz


def _finite_runs(values: npt.NDArray[np.generic]) -> list[tuple[int, int]]:
    """``[start, end)`` runs of rows whose samples are all finite (integers always are)."""
    if values.dtype.kind in "iu":
        return [(0, len(values))] if len(values) else []
    ok = np.concatenate(([False], np.isfinite(values).all(axis=1), [False]))
    edges = np.flatnonzero(np.diff(ok.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


async def send_record(
    source: Path | str | npt.NDArray[np.generic],
    host: str,
    port: int,
    *,
    rate_hz: float | None = None,
    speed: float | None = 1.0,
    samples_per_datagram: int = 36,
    lead: str | int | None = None,
    sample_format: Literal["int16", "float32"] = "float32",
    scale_mv: float = 1.0,
    first_seq: int = 0,
    duration_s: float | None = None,
) -> int:
    """Stream a recording (WFDB record, CSV, or an ``(n, channels)`` array) as SWEC datagrams.

    ``speed=1`` paces in real time (a datagram leaves when its last sample would have been
    captured), ``speed=None`` sends as fast as the socket takes them. ``sample_format``
    ``"int16"`` sends ``round(value / scale_mv)`` (an int16 array is sent as it is), ``"float32"``
    sends ``value / scale_mv``. Rows with an invalid (NaN) sample are not sent: the receiver
    sees the gap, fills and counts it. ``duration_s`` sends only the beginning. Returns the
    number of datagrams sent.
    """
    values, rate = _load(source, rate_hz, lead)
    if duration_s is not None:
        values = values[: max(0, round(duration_s * rate))]
    if sample_format not in ("int16", "float32"):
        msg = f"sample_format must be 'int16' or 'float32', got {sample_format!r}"
        raise ValueError(msg)
    n_ch = values.shape[1]
    limit = max_samples_per_datagram(n_ch, float32=sample_format == "float32")
    if not 1 <= samples_per_datagram <= limit:
        msg = f"samples_per_datagram must be in 1..{limit} for {n_ch} channels, got {samples_per_datagram}"
        raise ValueError(msg)
    runs = _finite_runs(values)
    payload = _to_wire(values, sample_format, scale_mv)
    aio = asyncio.get_running_loop()
    transport, _ = await aio.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=(host, port))
    sent = 0
    start = aio.time()
    try:
        for run_start, run_end in runs:
            for a in range(run_start, run_end, samples_per_datagram):
                b = min(a + samples_per_datagram, run_end)
                if speed is not None:
                    delay = start + b / rate / speed - aio.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                else:
                    # Unpaced, but yield after each datagram: asyncio reads one datagram per
                    # socket per loop pass, so a receiver on this loop keeps up instead of
                    # losing most of them in the socket buffer.
                    await asyncio.sleep(0)
                dg = pack_datagram(first_seq + sent, a, rate, payload[a:b], scale=scale_mv, start=sent == 0)
                transport.sendto(dg)
                sent += 1
    finally:
        with contextlib.suppress(Exception):
            transport.close()
    return sent


def _to_wire(
    values: npt.NDArray[np.generic], sample_format: Literal["int16", "float32"], scale_mv: float
) -> npt.NDArray[np.generic]:
    if sample_format == "int16" and values.dtype == np.int16:
        return values
    scaled = np.asarray(values, dtype=np.float64) / scale_mv
    if sample_format == "float32":
        return scaled.astype(np.float32)
    counts = np.rint(np.nan_to_num(scaled))
    if counts.size and (counts.min() < -32768 or counts.max() > 32767):
        msg = f"values / scale_mv {scale_mv:g} span {counts.min():g}..{counts.max():g}, beyond int16"
        raise ValueError(msg)
    return counts.astype(np.int16)
