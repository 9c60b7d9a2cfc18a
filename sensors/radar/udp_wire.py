"""SWRD radar datagrams: packing, parsing and frame reassembly (pure: no sockets, no clock).

The byte layout is documented in ``sensors/radar/udp.py``; this module implements it.
``pack_frame`` turns one frame into its datagrams (fragments), ``unpack_fragment`` parses one
and checks it against itself, and ``FrameAssembler`` rebuilds frames from fragments that
arrive in sequence order, counting frames of which some fragments never came (incomplete)
and frames of which none came (lost).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from sensors.datagram import FLAG_STREAM_START, MAX_UDP_PAYLOAD, DatagramError, HeaderFormat
from sensors.radar.frames import RadarGeometry

SWRD = HeaderFormat(b"SWRD", 1, "QIHHIHHBBHIIiI")
"""Common 12 bytes + t_us u64, frame_index u32, fragment_index u16, fragment_count u16, offset u32,
n_sweeps u16, n_points u16, sample_type u8, domain u8, reserved u16, frame_rate_mhz u32,
sweep_rate_mhz u32, range_start_um i32, range_step_um u32 (56 bytes)."""
FLAG_RANGE_TABLE = 0x02
DOMAINS = ("range", "fmcw_adc")
DEFAULT_DATAGRAM_BYTES = 1472
"""Ethernet MTU 1500 - IPv4 20 - UDP 8: datagrams that never need IP fragmentation."""
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
_U32 = 1 << 32


class SampleType(IntEnum):
    INT16_IQ = 0
    FLOAT32_IQ = 1
    UINT16_REAL = 2
    FLOAT32_REAL = 3

    @property
    def dtype(self) -> np.dtype[np.generic]:
        return np.dtype(("<i2", "<f4", "<u2", "<f4")[self.value])

    @property
    def is_complex(self) -> bool:
        return self in (SampleType.INT16_IQ, SampleType.FLOAT32_IQ)

    @property
    def sample_bytes(self) -> int:
        return self.dtype.itemsize * (2 if self.is_complex else 1)


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """What every fragment of a frame says about the frame (all its fragments must agree)."""

    frame_index: int
    t_us: int
    n_sweeps: int
    n_channels: int
    n_points: int
    sample_type: SampleType
    domain: int
    frame_rate_mhz: int
    sweep_rate_mhz: int
    range_start_um: int
    range_step_um: int
    range_table: bool
    fragment_count: int

    @property
    def frame_bytes(self) -> int:
        return self.n_sweeps * self.n_channels * self.n_points * self.sample_type.sample_bytes


@dataclass(frozen=True, slots=True)
class Fragment:
    seq: int
    start: bool
    frame: FrameHeader
    index: int
    offset: int
    """Byte offset of ``data`` in the frame's samples."""
    data: bytes
    ranges_um: npt.NDArray[np.int32] | None
    """Fragment 0 of a frame with a range table: the distance of each point (µm)."""


def _rate_mhz(rate_hz: float | None, what: str) -> int:
    if rate_hz is None:
        return 0
    mhz = round(rate_hz * 1000)
    if not 0 < mhz < _U32:
        msg = f"{what} {rate_hz} Hz does not fit the header (milli-Hz, u32)"
        raise ValueError(msg)
    return mhz


def _ranges(geometry: RadarGeometry) -> tuple[int, int, npt.NDArray[np.int32] | None]:
    """``(range_start_um, range_step_um, table)``: a table when the range cells are not evenly spaced."""
    if geometry.domain == "fmcw_adc":
        step = round((geometry.range_resolution_m or 0.0) * 1e6)
        if not 0 < step < _U32:
            msg = f"range resolution {geometry.range_resolution_m} m does not fit the header (µm, u32)"
            raise ValueError(msg)
        return 0, step, None
    um = np.rint(np.asarray(geometry.range_m, dtype=np.float64) * 1e6)
    if np.abs(um).max() >= 1 << 31:
        msg = "a range cell lies beyond +-2147 m, which the header (µm, i32) cannot carry"
        raise ValueError(msg)
    steps = np.diff(um)
    if steps.size == 0 or (steps[0] >= 0 and (steps == steps[0]).all()):
        return int(um[0]), int(steps[0]) if steps.size else 0, None
    return 0, 0, um.astype("<i4")


def wire_samples(frames: npt.NDArray[np.complex64], is_complex: bool) -> tuple[npt.NDArray[np.generic], SampleType]:
    """``frames`` as they go on the wire, in the smallest sample type that holds them exactly.

    Complex: int16 IQ when both parts are whole numbers within int16, else float32 IQ.
    Real (``is_complex`` False, the imaginary part ignored): uint16 when whole within 0..65535, else float32.
    """
    if not np.isfinite(frames).all():
        msg = "radar frames hold NaN or infinite values, which the wire cannot carry"
        raise ValueError(msg)
    parts = frames.view(np.float32).reshape(*frames.shape, 2) if is_complex else frames.real
    whole = bool((np.rint(parts) == parts).all())
    if is_complex:
        if whole and parts.size and parts.min() >= -32768 and parts.max() <= 32767:
            return parts.astype("<i2"), SampleType.INT16_IQ
        return parts.astype("<f4"), SampleType.FLOAT32_IQ
    if whole and parts.size and parts.min() >= 0 and parts.max() <= 65535:
        return parts.astype("<u2"), SampleType.UINT16_REAL
    return parts.astype("<f4"), SampleType.FLOAT32_REAL


def pack_frame(
    *,
    seq: int,
    frame_index: int,
    t_us: int,
    geometry: RadarGeometry,
    samples: npt.NDArray[np.generic],
    sample_type: SampleType,
    max_datagram_bytes: int = DEFAULT_DATAGRAM_BYTES,
    start: bool = False,
) -> list[bytes]:
    """The datagrams of one frame (``samples`` from ``wire_samples``, one frame), seq numbers from ``seq`` on.

    Fragments hold whole samples; ``start`` sets the stream-start flag on the first one.
    """
    if not SWRD.size + 8 <= max_datagram_bytes <= MAX_UDP_PAYLOAD:
        msg = f"max_datagram_bytes must be in {SWRD.size + 8}..{MAX_UDP_PAYLOAD}, got {max_datagram_bytes}"
        raise ValueError(msg)
    n_s, n_c, n_p = geometry.frame_shape
    if max(n_s, n_c, n_p) > 0xFFFF:
        msg = f"frame shape {geometry.frame_shape} does not fit the header (u16 per axis)"
        raise ValueError(msg)
    start_um, step_um, table = _ranges(geometry)
    body = np.ascontiguousarray(samples).tobytes()
    sb = sample_type.sample_bytes
    if len(body) != n_s * n_c * n_p * sb:
        msg = f"{len(body)} sample bytes for a {geometry.frame_shape} frame of {sample_type.name}"
        raise ValueError(msg)
    room = (max_datagram_bytes - SWRD.size) // sb * sb
    table_bytes = b"" if table is None else table.tobytes()
    room0 = (max_datagram_bytes - SWRD.size - len(table_bytes)) // sb * sb
    if room0 < sb:
        msg = f"the range table of {n_p} points does not fit a {max_datagram_bytes}-byte datagram"
        raise ValueError(msg)
    cuts = [0, *range(room0, len(body), room), len(body)] if len(body) > room0 else [0, len(body)]
    count = len(cuts) - 1
    if count > 0xFFFF:
        msg = f"a frame of {len(body)} bytes needs {count} fragments, more than 65535: raise max_datagram_bytes"
        raise ValueError(msg)
    flags = (FLAG_RANGE_TABLE if table is not None else 0) | (FLAG_STREAM_START if start else 0)
    fixed = (
        geometry.n_sweeps, geometry.n_points, int(sample_type), DOMAINS.index(geometry.domain), 0,
        _rate_mhz(geometry.frame_rate_hz, "frame rate"), _rate_mhz(geometry.sweep_rate_hz, "sweep rate"),
        start_um, step_um,
    )  # fmt: skip
    out = []
    for i in range(count):
        fields = (t_us, frame_index & 0xFFFFFFFF, i, count, cuts[i], *fixed)
        head = SWRD.pack(seq=seq + i, flags=flags if i == 0 else flags & ~FLAG_STREAM_START, word=n_c, fields=fields)
        out.append(head + (table_bytes if i == 0 else b"") + body[cuts[i] : cuts[i + 1]])
    return out


def unpack_fragment(data: bytes, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Fragment:
    """Parse one datagram and check it on its own; ``DatagramError`` says what is wrong."""
    h = SWRD.unpack(data)
    t_us, frame_index, index, count, offset, n_s, n_p, stype, domain, _res, frate, srate, r0, dr = h.fields
    if h.word < 1 or n_s < 1 or n_p < 1:
        msg = f"frame shape ({n_s} sweeps, {h.word} channels, {n_p} points) has an empty axis"
        raise DatagramError(msg)
    if stype > max(SampleType):
        msg = f"sample type {stype} is not one of {[f'{t.value}={t.name}' for t in SampleType]}"
        raise DatagramError(msg)
    if domain >= len(DOMAINS):
        msg = f"domain {domain} is not 0 (range) or 1 (fmcw_adc)"
        raise DatagramError(msg)
    if frate == 0:
        msg = "frame_rate_mhz is 0"
        raise DatagramError(msg)
    table = bool(h.flags & FLAG_RANGE_TABLE)
    if table and domain != 0:
        msg = "a range table is only for domain 0 (range)"
        raise DatagramError(msg)
    if domain == 1 and dr == 0:
        msg = "domain fmcw_adc needs range_step_um (the range resolution) > 0"
        raise DatagramError(msg)
    if not index < count:
        msg = f"fragment {index} of {count}"
        raise DatagramError(msg)
    frame = FrameHeader(
        frame_index, t_us, n_s, h.word, n_p, SampleType(stype), domain, frate, srate, r0, dr, table, count
    )
    if frame.frame_bytes > max_frame_bytes:
        msg = (
            f"a {n_s}x{h.word}x{n_p} frame of {frame.sample_type.name} ({frame.frame_bytes} bytes) "
            f"exceeds the limit of {max_frame_bytes} bytes"
        )
        raise DatagramError(msg)
    pos = h.payload_offset
    ranges = None
    if table and index == 0:
        pos += 4 * n_p
        if len(data) < pos:
            msg = f"fragment 0 ends ({len(data)} bytes) inside its range table of {n_p} points ({4 * n_p} bytes)"
            raise DatagramError(msg)
        ranges = np.frombuffer(data, "<i4", count=n_p, offset=h.payload_offset).astype(np.int32)
    size = len(data) - pos
    end = offset + size
    last = index == count - 1
    if size < 1 or (index == 0 and offset != 0) or end > frame.frame_bytes or (last and end != frame.frame_bytes):
        msg = (
            f"fragment {index}/{count} carries bytes {offset}..{end} of a {frame.frame_bytes}-byte frame "
            f"({n_s}x{h.word}x{n_p} {frame.sample_type.name}): the payload does not match the geometry"
        )
        raise DatagramError(msg)
    return Fragment(h.seq, bool(h.flags & FLAG_STREAM_START), frame, index, offset, data[pos:], ranges)


def to_geometry(frame: FrameHeader, ranges_um: npt.NDArray[np.int32] | None) -> RadarGeometry:
    """The geometry a frame header (and its range table) describes; ``DatagramError`` when inconsistent."""
    domain = DOMAINS[frame.domain]
    try:
        return RadarGeometry(
            domain=domain,  # type: ignore[arg-type]
            n_sweeps=frame.n_sweeps,
            n_channels=frame.n_channels,
            n_points=frame.n_points,
            frame_rate_hz=frame.frame_rate_mhz / 1000,
            sweep_rate_hz=frame.sweep_rate_mhz / 1000 if frame.sweep_rate_mhz else None,
            range_m=_range_m(frame, ranges_um) if domain == "range" else None,
            range_resolution_m=frame.range_step_um / 1e6 if domain == "fmcw_adc" else None,
            is_complex=frame.sample_type.is_complex,
            sensor="udp",
        )
    except ValueError as exc:
        raise DatagramError(str(exc)) from exc


def _range_m(frame: FrameHeader, ranges_um: npt.NDArray[np.int32] | None) -> tuple[float, ...]:
    um = ranges_um if ranges_um is not None else frame.range_start_um + frame.range_step_um * np.arange(frame.n_points)
    return tuple((np.asarray(um, dtype=np.float64) / 1e6).tolist())


def decode_samples(frame: FrameHeader, body: bytes | bytearray) -> npt.NDArray[np.complex64]:
    """A frame's sample bytes as complex64 ``(n_sweeps, n_channels, n_points)``."""
    st = frame.sample_type
    values = np.frombuffer(body, st.dtype).astype(np.float32)
    if st.dtype.kind == "f" and not np.isfinite(values).all():
        msg = "a float32 sample is NaN or infinite"
        raise DatagramError(msg)
    shape = (frame.n_sweeps, frame.n_channels, frame.n_points)
    if st.is_complex:
        return values.view(np.complex64).reshape(shape)
    return values.astype(np.complex64).reshape(shape)


@dataclass(frozen=True, slots=True)
class Frame:
    header: FrameHeader
    geometry: RadarGeometry
    samples: npt.NDArray[np.complex64]


@dataclass
class AssemblyCounts:
    frames: int = 0
    incomplete_frames: int = 0
    """Some fragments arrived, not all: dropped."""
    lost_frames: int = 0
    """Frame indices skipped over: none of their fragments arrived."""
    bad_frames: int = 0
    """Fragments disagreed about their frame, or its samples were invalid: dropped."""


class FrameAssembler:
    """Frames from fragments accepted by a ``SequenceTracker`` (so in sequence order, late ones gone).

    A frame is complete only when fragments ``0..count-1`` arrived one after the other; a missing,
    late or disagreeing fragment makes it incomplete and it is dropped (counted) when the next
    frame starts or the stream ends, never glued to another frame's fragments.
    """

    def __init__(self) -> None:
        self.counts = AssemblyCounts()
        self._geometry: tuple[tuple[FrameHeader, bytes], RadarGeometry] | None = None
        self._open = False
        self._complete = False
        self._broken = False
        self._last_index: int | None = None
        self._index = self._next = self._filled = 0
        self._ranges: npt.NDArray[np.int32] | None = None

    def reset(self) -> None:
        """The stream ended: a frame still missing fragments is incomplete."""
        if self._open and not self._complete:
            self.counts.incomplete_frames += 1
        self._open = self._complete = False
        self._last_index = None

    def push(self, frag: Fragment) -> tuple[Frame | None, str | None]:
        """``(frame, None)`` when ``frag`` completes one, ``(None, problem)`` when the fragment is bad."""
        f = frag.frame
        if not self._open or self._complete or f.frame_index != self._index:
            self._start(f)  # a complete frame's index again is a new frame (the receiver sees it repeat)
        elif f != self._frame:
            self._broken = True
            return None, f"fragment {frag.index} of frame {f.frame_index} disagrees with its fragment 0 header"
        if self._broken or frag.index != self._next or frag.offset != self._filled:
            self._broken = True  # a fragment went missing: the frame cannot be rebuilt
            return None, None
        if frag.ranges_um is not None:
            self._ranges = frag.ranges_um
        self._buf[frag.offset : frag.offset + len(frag.data)] = frag.data
        self._filled += len(frag.data)
        self._next += 1
        if self._next < f.fragment_count:
            return None, None
        self._complete = True
        try:
            frame = Frame(f, self._to_geometry(f), decode_samples(f, self._buf))
        except DatagramError as exc:
            self.counts.bad_frames += 1
            return None, f"frame {f.frame_index}: {exc}"
        self.counts.frames += 1
        return frame, None

    def _start(self, f: FrameHeader) -> None:
        if self._open and not self._complete:
            self.counts.incomplete_frames += 1
        if self._last_index is not None:
            ahead = (f.frame_index - self._last_index) % _U32
            if ahead < _U32 // 2:
                self.counts.lost_frames += max(0, ahead - 1)
        self._last_index = self._index = f.frame_index
        self._frame = f
        self._open, self._complete, self._broken = True, False, False
        self._next = self._filled = 0
        self._buf = bytearray(f.frame_bytes)
        self._ranges = None

    def _to_geometry(self, f: FrameHeader) -> RadarGeometry:
        if f.range_table and self._ranges is None:
            msg = "its range table (fragment 0) is missing"
            raise DatagramError(msg)
        key = (
            replace(f, frame_index=0, t_us=0, fragment_count=0),
            b"" if self._ranges is None else self._ranges.tobytes(),
        )
        if self._geometry is None or self._geometry[0] != key:  # rebuilt only when it changes
            self._geometry = (key, to_geometry(f, self._ranges))
        return self._geometry[1]
