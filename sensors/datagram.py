"""The datagram layer shared by UDP sources (ECG "SWEC", radar, DVS): header, sequence numbers, listening socket.

Every datagram starts with the same 12 bytes (little-endian)::

    offset 0  4s   magic        four ASCII bytes naming the kind ("SWEC", ...)
    offset 4  u8   version      of that kind's layout
    offset 5  u8   flags        bit 0 (FLAG_STREAM_START): first datagram since the sender started;
                                the other bits belong to the kind
    offset 6  u16  word         kind-specific (channel count, ...), keeps ``seq`` 4-byte aligned
    offset 8  u32  seq          +1 per datagram, wraps from 2**32 - 1 to 0

followed by the kind's own fixed fields (``HeaderFormat.fields``, a ``struct`` format) and
its payload.

UDP loses, duplicates and reorders datagrams. ``SequenceTracker`` sorts every arriving
sequence number into one of the ``Seq`` classes and counts it, so a receiver never glues
a late datagram into a stream that has moved on and never drops anything without counting.
It is pure (no I/O, no clock) so it is tested on its own.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sensors.blocks import InputError

COMMON = struct.Struct("<4sBBHI")
"""magic, version, flags, kind-specific u16 word, seq."""
FLAG_STREAM_START = 0x01
MAX_UDP_PAYLOAD = 65_507
"""Largest UDP payload over IPv4."""


class DatagramError(ValueError):
    """A datagram that cannot be parsed; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Header:
    version: int
    flags: int
    word: int
    seq: int
    fields: tuple[Any, ...]
    """The kind-specific fields after the common 12 bytes, as ``struct`` unpacked them."""
    payload_offset: int


@dataclass(frozen=True, slots=True)
class HeaderFormat:
    """Header of one datagram kind: the common 12 bytes plus ``fields`` (``struct`` codes, no byte order)."""

    magic: bytes
    version: int
    fields: str = ""

    def __post_init__(self) -> None:
        if len(self.magic) != 4:
            msg = f"magic must be 4 bytes, got {self.magic!r}"
            raise ValueError(msg)
        if any(c in self.fields for c in "<>!=@"):
            msg = f"fields {self.fields!r} must not set a byte order (always little-endian)"
            raise ValueError(msg)

    @property
    def layout(self) -> struct.Struct:
        """The whole header as one ``struct.Struct``."""
        return _struct(self.fields)

    @property
    def size(self) -> int:
        return self.layout.size

    def pack(self, *, seq: int, flags: int = 0, word: int = 0, fields: tuple[Any, ...] = ()) -> bytes:
        """The header bytes; ``seq`` is taken modulo 2**32."""
        try:
            return self.layout.pack(self.magic, self.version, flags, word, seq & 0xFFFFFFFF, *fields)
        except struct.error as exc:
            msg = f"{self.magic.decode(errors='replace')} header fields {fields!r} do not fit: {exc}"
            raise ValueError(msg) from exc

    def unpack(self, data: bytes | memoryview) -> Header:
        """Parse the header; ``DatagramError`` on a short datagram, wrong magic or version."""
        st = self.layout
        if len(data) < st.size:
            msg = f"datagram of {len(data)} bytes is shorter than the {st.size}-byte header"
            raise DatagramError(msg)
        magic, version, flags, word, seq, *rest = st.unpack_from(data)
        if magic != self.magic:
            msg = f"magic {bytes(magic)!r} is not {self.magic!r}"
            raise DatagramError(msg)
        if version != self.version:
            msg = f"version {version} is not {self.version}"
            raise DatagramError(msg)
        return Header(version, flags, word, seq, tuple(rest), st.size)


_STRUCTS: dict[str, struct.Struct] = {}


def _struct(fields: str) -> struct.Struct:
    st = _STRUCTS.get(fields)
    if st is None:
        st = _STRUCTS[fields] = struct.Struct(COMMON.format + fields)
    return st


class Seq(Enum):
    """What an arriving sequence number means."""

    FIRST = "first"
    """The first datagram the tracker sees: a stream starts."""
    IN_ORDER = "in_order"
    """Exactly the next one."""
    GAP = "gap"
    """Ahead of the next one: the ones in between are lost (``Verdict.lost``)."""
    LATE = "late"
    """Behind the newest, not seen before: arrived after a later one. Dropped."""
    DUPLICATE = "duplicate"
    """Seen before. Dropped."""
    RESTART = "restart"
    """The sender restarted (flagged, or jumped back beyond the window): a new stream."""

    @property
    def accepted(self) -> bool:
        """Whether the datagram's payload belongs to the stream (the others are dropped)."""
        return self in (Seq.FIRST, Seq.IN_ORDER, Seq.GAP, Seq.RESTART)

    @property
    def new_stream(self) -> bool:
        return self in (Seq.FIRST, Seq.RESTART)


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Seq
    lost: int = 0
    """Datagrams skipped over (``GAP`` only)."""


@dataclass
class SeqCounts:
    received: int = 0
    accepted: int = 0
    lost: int = 0
    late: int = 0
    duplicates: int = 0
    restarts: int = 0


class SequenceTracker:
    """Classifies sequence numbers of ``bits`` bits (wrap-around handled) and counts them.

    The newest accepted number and which of the ``window`` numbers before it were seen are
    kept. A number behind the newest is late (never seen) or a duplicate (seen) when it is
    at most ``window`` behind, and a sender restart when it is further back (or when the
    datagram carries the stream-start flag). A number ahead is a gap of lost datagrams
    however far ahead it is (up to half the number space; beyond that it reads as behind).
    Late datagrams were already counted as lost when the gap was jumped; they stay lost.
    """

    def __init__(self, *, bits: int = 32, window: int = 1024) -> None:
        if not 8 <= bits <= 64:
            msg = f"bits must be in 8..64, got {bits}"
            raise ValueError(msg)
        if not 1 <= window < 1 << (bits - 2):
            msg = f"window must be in 1..{(1 << (bits - 2)) - 1} for {bits}-bit numbers, got {window}"
            raise ValueError(msg)
        self.bits = bits
        self.window = window
        self._mod = 1 << bits
        self.counts = SeqCounts()
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next number is ``FIRST`` (counts are kept)."""
        self._newest: int | None = None
        self._seen = 0  # bit i set: number (newest - i) arrived

    @property
    def newest(self) -> int | None:
        return self._newest

    def classify(self, seq: int, *, start: bool = False) -> Verdict:
        """Sort ``seq`` (``start``: the datagram has the stream-start flag) and count it."""
        if not 0 <= seq < self._mod:
            msg = f"sequence number {seq} is outside 0..{self._mod - 1}"
            raise ValueError(msg)
        c = self.counts
        c.received += 1
        if self._newest is None or start:
            kind = Seq.FIRST if self._newest is None else Seq.RESTART
            return self._begin(seq, kind)
        ahead = (seq - self._newest) % self._mod
        if ahead == 0:
            c.duplicates += 1
            return Verdict(Seq.DUPLICATE)
        if ahead < self._mod // 2:
            self._newest = seq
            self._seen = ((self._seen << ahead) | 1) & ((1 << (self.window + 1)) - 1)
            c.accepted += 1
            c.lost += ahead - 1
            return Verdict(Seq.IN_ORDER) if ahead == 1 else Verdict(Seq.GAP, ahead - 1)
        behind = self._mod - ahead
        if behind > self.window:
            return self._begin(seq, Seq.RESTART)
        if self._seen >> behind & 1:
            c.duplicates += 1
            return Verdict(Seq.DUPLICATE)
        self._seen |= 1 << behind  # a second copy of it is a duplicate
        c.late += 1
        return Verdict(Seq.LATE)

    def _begin(self, seq: int, kind: Seq) -> Verdict:
        if kind is Seq.RESTART:
            self.counts.restarts += 1
        self.counts.accepted += 1
        self._newest = seq
        self._seen = 1
        return Verdict(kind)


async def listen_udp(
    host: str, port: int, protocol: Callable[[], asyncio.DatagramProtocol], stream: str
) -> asyncio.DatagramTransport:
    """A UDP endpoint on ``host:port`` (port 0: any free one) that hands datagrams to ``protocol()``.

    An address that cannot be bound (busy port, unknown host) is an ``InputError`` naming ``stream``.
    """
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.create_datagram_endpoint(protocol, local_addr=(host, port))
    except OSError as exc:
        msg = f"{stream}: cannot listen: {exc.strerror or exc}"
        raise InputError(msg) from exc
    return transport


def listening_port(transport: asyncio.DatagramTransport | None, port: int) -> int:
    """The port ``transport`` listens on; ``port`` (the one asked for) while there is none."""
    if transport is None:
        return port
    return int(transport.get_extra_info("sockname")[1])
