"""Radar frames over UDP: a radar on a microcontroller (or ``spikewire send`` replaying a recording) feeds the daemon.

Datagram format "SWRD" version 1, little-endian, a 56-byte header then samples. A frame is the
cube ``(n_sweeps, n_channels, n_points)`` of ``sensors.radar.frames``; a frame larger than one
datagram is split into fragments, each carrying the whole header::

    offset  type  field
     0      4s    magic "SWRD"
     4      u8    version = 1
     5      u8    flags: bit 0 = first datagram since the sender started (lets the receiver tell a
                  restart from a duplicate); bit 1 = range table (below); other bits 0
     6      u16   n_channels (>= 1): receive antennas / virtual antennas
     8      u32   seq: +1 per datagram (every fragment), wraps to 0 after 2**32 - 1
    12      u64   t_us: frame time, µs on the sender's clock (increasing from frame to frame)
    20      u32   frame_index: +1 per frame, wraps; a skipped index is a lost frame
    24      u16   fragment_index: 0 .. fragment_count - 1
    26      u16   fragment_count (>= 1)
    28      u32   offset: byte offset of this fragment's samples within the frame's samples
    32      u16   n_sweeps (>= 1): sweeps / chirps per frame (slow time)
    34      u16   n_points (>= 1): range cells (domain 0) or ADC samples per chirp (domain 1)
    36      u8    sample_type: 0 = int16 IQ (4 bytes: I then Q), 1 = float32 IQ (8 bytes),
                  2 = uint16 real amplitude (2 bytes), 3 = float32 real (4 bytes)
    37      u8    domain: 0 = range (each point is a range cell), 1 = fmcw_adc (ADC samples of a chirp)
    38      u16   reserved = 0
    40      u32   frame_rate_mhz: nominal frame rate in milli-Hz (12 Hz -> 12000), > 0
    44      u32   sweep_rate_mhz: sweeps (chirps) per second in milli-Hz, 0 = not known
    48      i32   range_start_um: domain 0: distance of point 0 in µm; domain 1: 0
    52      u32   range_step_um: domain 0: spacing of the points in µm; domain 1: range resolution
                  c / (2 x bandwidth) in µm (> 0); range bin k is at k x step
    56      payload: samples (and, in fragment 0 with flag bit 1, a range table first)

Samples are in C order, point fastest: ``sample[sweep][channel][point]``, an IQ sample is I then
Q. The frame's sample bytes (``n_sweeps x n_channels x n_points x sample size``) are cut into
fragments in order: fragment ``i`` carries bytes ``offset .. offset + len`` of them; fragment 0
starts at offset 0 and the last one ends at the end of the frame. With flag bit 1 (domain 0
only, for range cells that are not evenly spaced, e.g. several Acconeer subsweeps),
range_start/step are 0 and fragment 0's payload begins with ``n_points`` i32 distances in µm
before its samples; every fragment of the frame sets the flag.

A C sender of one-datagram frames (little-endian MCU, as ARM Cortex-M and ESP32 are)::

    struct __attribute__((packed)) swrd { char magic[4]; uint8_t version, flags; uint16_t n_channels;
        uint32_t seq; uint64_t t_us; uint32_t frame_index; uint16_t fragment_index, fragment_count;
        uint32_t offset; uint16_t n_sweeps, n_points; uint8_t sample_type, domain; uint16_t reserved;
        uint32_t frame_rate_mhz, sweep_rate_mhz; int32_t range_start_um; uint32_t range_step_um;
        int16_t iq[8 * 1 * 40 * 2]; } d = {{'S','W','R','D'}, 1, 1, 1, 0, 0, 0, 0, 1, 0, 8, 40, 0, 0, 0,
        20000, 0, 200000, 2500};   /* 8 sweeps x 1 channel x 40 points from 0.2 m every 2.5 mm, 20 Hz */
    for (;;) {
        read_frame(d.iq); d.t_us = micros64();
        sendto(sock, &d, sizeof d, 0, (struct sockaddr *)&daemon, sizeof daemon);
        d.flags = 0; d.seq++; d.frame_index++;
    }

Receiving (``RadarUdpSource``): every datagram is parsed and checked on its own (magic, version,
sizes, payload matching the geometry); a bad one is counted (``bad_datagrams``) and dropped with
one log line per burst. Sequence numbers go through ``sensors.datagram.SequenceTracker``: late
and duplicate datagrams are counted and dropped, lost ones counted. A frame is handed on only
when all its fragments arrived in order; otherwise it is dropped and counted
(``incomplete_frames``), never glued with another frame's fragments; frames none of whose
fragments arrived are ``lost_frames``. Frame times are rebased so a stream's first frame is at
0. A sender restart (flag, or seq / frame_index / t_us going back), a frame-time jump beyond
``max_gap_ms``, silence beyond ``max_gap_ms`` or ``close()`` ends the stream (``EndOfStream``).
Blocks hold up to ``frames_per_block`` consecutive frames of one geometry; a geometry change
or a skipped frame starts a new block. A block covers ``[first frame's time, last frame's time
+ 1 µs)`` (the next frame's time is not known yet); an ``EndOfStream`` is one nominal frame
period after the stream's last frame, as in a file replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sensors.blocks import EndOfStream
from sensors.datagram import DatagramError
from sensors.radar.frames import RadarBlock, RadarChunk, RadarGeometry
from sensors.radar.udp_wire import (
    DEFAULT_DATAGRAM_BYTES,
    DEFAULT_MAX_FRAME_BYTES,
    SWRD,
    Frame,
    FrameAssembler,
    SampleType,
    pack_frame,
    unpack_fragment,
    wire_samples,
)
from sensors.udp_source import UdpBlockSource

__all__ = [
    "DEFAULT_DATAGRAM_BYTES",
    "SWRD",
    "RadarUdpSource",
    "SampleType",
    "pack_frame",
    "send_radar",
    "send_recordings",
    "unpack_fragment",
]

log = logging.getLogger(__name__)
Item = RadarBlock | EndOfStream
_U32 = 1 << 32
_RCVBUF_BYTES = 4 * 1024 * 1024


@dataclass
class _Stream:
    """The stream being received: where its time starts and the frames not yet handed on."""

    t0_us: int
    first_index: int
    last_index: int
    last_t_us: int
    geometry: RadarGeometry | None = None
    frames: list[npt.NDArray[np.complex64]] = field(default_factory=list)
    t_us: list[int] = field(default_factory=list)
    first_frame: int = 0
    captured_ns: int = 0


class RadarUdpSource(UdpBlockSource[Item]):
    """Async iterator of ``RadarBlock`` / ``EndOfStream`` from SWRD datagrams (a live source: never ends)."""

    log = log

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 7790,
        *,
        frames_per_block: int = 1,
        queue_blocks: int = 64,
        max_gap_ms: float = 2000.0,
        idle_flush_ms: float = 200.0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if frames_per_block < 1 or max_gap_ms <= 0 or idle_flush_ms <= 0 or max_frame_bytes < 1:
            msg = (
                "frames_per_block, max_gap_ms, idle_flush_ms and max_frame_bytes must be positive, got "
                f"{frames_per_block}, {max_gap_ms}, {idle_flush_ms}, {max_frame_bytes}"
            )
            raise ValueError(msg)
        super().__init__(
            host, port, queue_blocks=queue_blocks, max_gap_ms=max_gap_ms, idle_flush_ms=idle_flush_ms,
            datagram_queue=16_384,
        )  # fmt: skip
        self.frames_per_block = frames_per_block
        self.max_gap_us = round(max_gap_ms * 1000)
        self.max_frame_bytes = max_frame_bytes
        self.assembler = FrameAssembler()
        self.counts = {"bad_datagrams": 0, "frame_restarts": 0, "long_gaps": 0, "geometry_changes": 0}
        self._cur: _Stream | None = None

    def _listening(self, transport: asyncio.DatagramTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a whole large frame arrives in a burst; the kernel caps this at rmem_max
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF_BYTES)

    def drops(self) -> dict[str, int]:
        a = self.assembler.counts
        return self._datagram_drops(
            more_restarts=self.counts["frame_restarts"],
            bad_frames=a.bad_frames,
            incomplete_frames=a.incomplete_frames,
            lost_frames=a.lost_frames,
            long_gaps=self.counts["long_gaps"],
            geometry_changes=self.counts["geometry_changes"],
        )

    def _active(self) -> bool:
        return self._cur is not None or self.tracker.newest is not None

    def _accept(self, data: bytes, captured_ns: int) -> bool:
        # Every datagram, even a bad one, shows the sender is alive.
        try:
            frag = unpack_fragment(data, max_frame_bytes=self.max_frame_bytes)
        except DatagramError as exc:
            self._bad(str(exc))
            return True
        self._in_bad_burst = False
        verdict = self.tracker.classify(frag.seq, start=frag.start)
        if not verdict.kind.accepted:
            return True  # late or repeated: counted by the tracker, never glued in
        if verdict.kind.new_stream:
            self._end("restart")
        frame, problem = self.assembler.push(frag)
        if problem is not None:
            self._bad(problem)
        if frame is not None:
            self._add(frame, captured_ns)
        return True

    def _add(self, frame: Frame, captured_ns: int) -> None:
        index, t_us = frame.header.frame_index, frame.header.t_us
        cur = self._cur
        if cur is not None:
            ahead = (index - cur.last_index) % _U32
            if ahead == 0 or ahead >= _U32 // 2 or t_us <= cur.last_t_us:
                # In sequence, but the frame counter or clock went back: the device restarted.
                self.counts["frame_restarts"] += 1
                self._end("restart", reset_assembler=False)
            elif t_us - cur.last_t_us > self.max_gap_us:
                self.counts["long_gaps"] += 1
                self._end("gap", reset_assembler=False)
            else:
                if ahead > 1:
                    self._flush()  # a block holds consecutive frames only
                if cur.geometry is not None and frame.geometry != cur.geometry:
                    self.counts["geometry_changes"] += 1
                    self._flush()
        if self._cur is None:
            self._cur = _Stream(t_us, index, index, t_us)
        cur = self._cur
        if not cur.frames:
            cur.geometry = frame.geometry
            cur.first_frame = (index - cur.first_index) % _U32
            cur.captured_ns = captured_ns
        cur.frames.append(frame.samples)
        cur.t_us.append(t_us - cur.t0_us)
        cur.last_index, cur.last_t_us = index, t_us
        if len(cur.frames) >= self.frames_per_block:
            self._flush()

    def _flush(self) -> None:
        cur = self._cur
        if cur is None or not cur.frames or cur.geometry is None:
            return
        t = np.asarray(cur.t_us, dtype=np.int64)
        frames = np.stack(cur.frames)
        block = RadarBlock(
            self.stream, cur.geometry, frames, t, int(t[0]), int(t[-1]) + 1, cur.captured_ns, cur.first_frame
        )
        cur.frames, cur.t_us = [], []
        self._blocks.put(block)

    def _end(self, reason: str, *, reset_assembler: bool = True) -> None:
        if reset_assembler:
            self.assembler.reset()  # a frame still waiting for fragments is incomplete
        if self._cur is None:
            return
        self._flush()
        cur, self._cur = self._cur, None
        # Nothing follows: the last frame lasts its nominal period, as in a file replay.
        period_us = max(1, round(1e6 / cur.geometry.frame_rate_hz)) if cur.geometry is not None else 1
        t_end_us = cur.last_t_us - cur.t0_us + period_us
        self._blocks.put(EndOfStream(self.stream, t_end_us, time.monotonic_ns(), meta={"end": reason}))


def _frame_times(chunk: RadarChunk) -> npt.NDArray[np.int64]:
    t = np.asarray(chunk.t_us, dtype=np.int64)
    if t.shape != (len(chunk.frames),) or (t.size > 1 and (np.diff(t) <= 0).any()):
        msg = f"radar chunk: frame times must be {len(chunk.frames)} increasing values"
        raise ValueError(msg)
    return t


async def send_radar(
    chunks: Iterable[RadarChunk],
    host: str,
    port: int,
    *,
    speed: float | None = 1.0,
    max_datagram_bytes: int = DEFAULT_DATAGRAM_BYTES,
    first_seq: int = 0,
) -> int:
    """Stream frames (e.g. a recording's chunks) as SWRD datagrams; returns the number of datagrams sent.

    One call is one stream: its first datagram carries the stream-start flag, frame indices
    count from 0 and frame times are rebased to 0 at the first frame. ``speed=1`` sends each
    frame at its time, ``speed=2`` twice as fast, ``speed=None`` as fast as the socket takes
    them. Samples go as int16 IQ / uint16 real when they are whole numbers in range (raw ADC
    counts), else as float32. Frames larger than ``max_datagram_bytes`` are fragmented.
    """
    if speed is not None and not speed > 0:
        msg = f"speed must be positive (or None: unpaced), got {speed}"
        raise ValueError(msg)
    aio = asyncio.get_running_loop()
    transport, _ = await aio.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=(host, port))
    seq, index = first_seq, 0
    t0: int | None = None
    last_t = -1
    start = aio.time()
    try:
        for chunk in chunks:
            t = _frame_times(chunk)
            if not len(t):
                continue
            t0 = int(t[0]) if t0 is None else t0
            if int(t[0]) <= last_t:
                msg = f"radar chunks: frame time {int(t[0])} µs does not follow {last_t} µs"
                raise ValueError(msg)
            last_t = int(t[-1])
            samples, stype = wire_samples(chunk.frames, chunk.geometry.is_complex)
            for k in range(len(t)):
                t_rel = int(t[k]) - t0
                if speed is not None:
                    delay = start + t_rel / 1e6 / speed - aio.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                datagrams = pack_frame(
                    seq=seq, frame_index=index, t_us=t_rel, geometry=chunk.geometry, samples=samples[k],
                    sample_type=stype, max_datagram_bytes=max_datagram_bytes, start=index == 0,
                )  # fmt: skip
                for dg in datagrams:
                    transport.sendto(dg)
                    if speed is None or len(datagrams) > 1:
                        # asyncio reads one datagram per socket per loop pass: yield so a receiver on
                        # this loop (or the kernel buffer) keeps up with a burst of fragments.
                        await asyncio.sleep(0)
                seq += len(datagrams)
                index += 1
    finally:
        with contextlib.suppress(Exception):
            transport.close()
    return seq - first_seq


async def send_recordings(
    paths: Sequence[Path],
    host: str,
    port: int,
    *,
    speed: float | None = 1.0,
    loop: bool = False,
    max_datagram_bytes: int = DEFAULT_DATAGRAM_BYTES,
    chirp: str | Path | None = None,
    frames_per_read: int = 32,
) -> int:
    """Stream radar recordings (files or folders of them) with ``send_radar``, one stream per file.

    Each file starts a new stream (the receiver ends the previous one); ``loop`` sends them all
    again and again. ``chirp`` is the TI chirp config (a preset such as ``"openradar"`` or a
    ``.cfg`` path). Returns the number of datagrams sent.
    """
    from sensors.radar.reader import expand_radar_paths, open_radar

    files = expand_radar_paths(paths)
    sent = 0
    while True:
        for path in files:
            reader = open_radar(path, chirp=chirp)
            try:
                chunks = iter(partial(reader.read, frames_per_read), None)
                sent += await send_radar(
                    chunks, host, port, speed=speed, max_datagram_bytes=max_datagram_bytes, first_seq=sent
                )
            finally:
                reader.close()
        if not loop:
            return sent
