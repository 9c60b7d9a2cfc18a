"""Disk spool: the MQTT sink's queue as an append-only file, so a restart loses nothing.

Files in ``spool_dir``:

- ``spool.log``: a 16-byte header (``SWSPOOL1`` and a random 8-byte file id), then one
  record per message: ``u32 body length | u32 CRC-32 of body | body`` (little endian),
  body = ``u8 qos | u16 topic length | u16 pipeline length | u16 schema length | topic |
  pipeline | schema | payload``. Records are only ever appended.
- ``spool.ack``: where the unsent records start: ``file id | u64 offset | u32 CRC-32`` of
  the first 16 bytes. It moves only after the broker acknowledged a message (PUBACK), so
  a crash at any moment can resend a message (subscribers dedupe by ``seq``) but never
  loses one. An ack file that is torn, or names another file id, means "send all".
- ``spool.lock``: ``flock``-ed while open, so two daemons cannot share a spool.

At open, records after the ack offset are checked; a torn last record (a crash in
mid-write) or a damaged one fails its length or checksum: the file is truncated there,
counted in ``torn_records`` and logged. When everything is acknowledged and the file has
grown past ``compact_bytes``, or dropped messages left a large dead prefix, the pending
records are copied to a new file with a new id that replaces the old one by ``rename``.

fsync policy: ``always`` fsyncs each appended record before ``append`` returns;
``interval`` at most ``fsync_interval_ms`` after a write; ``never`` leaves it to the OS
(a killed daemon loses nothing, a power cut may). The ack file is synced with the data;
a lost ack only means a resend. All of this runs on the event loop's thread: with
``always`` each decision costs one fsync there.

Dropping the second-oldest record while the oldest is in flight (drop-oldest overflow)
leaves a hole that only memory knows; after a crash that record would be sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import struct
import time
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runtime.config import MqttConfig
from runtime.mqtt.queue import MemoryQueue, Message, MessageQueue

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "interval", "never"]

MAGIC = b"SWSPOOL1"
_HEADER = struct.Struct("<8s8s")
_RECORD = struct.Struct("<II")
_BODY = struct.Struct("<BHHH")
_ACK = struct.Struct("<8sQ")
HEADER_BYTES = _HEADER.size
LOG_NAME, ACK_NAME, LOCK_NAME = "spool.log", "spool.ack", "spool.lock"
_MAX_RECORD_BYTES = 64 * 1024 * 1024


class SpoolError(ValueError):
    """The spool directory cannot be used; the message names the file and the problem."""


def encode_record(message: Message) -> bytes:
    topic, pipeline, schema = (s.encode() for s in (message.topic, message.pipeline, message.schema))
    body = _BODY.pack(message.qos, len(topic), len(pipeline), len(schema)) + topic + pipeline + schema
    body += message.payload
    return _RECORD.pack(len(body), zlib.crc32(body)) + body


def decode_body(body: bytes) -> Message:
    qos, n_topic, n_pipeline, n_schema = _BODY.unpack_from(body)
    at = _BODY.size
    fields = []
    for n in (n_topic, n_pipeline, n_schema):
        fields.append(body[at : at + n].decode())
        at += n
    if at > len(body) or qos > 2:
        msg = "record fields overrun the body"
        raise ValueError(msg)
    return Message(fields[0], body[at:], qos, fields[1], fields[2])


@dataclass(frozen=True, slots=True)
class ScanResult:
    records: list[tuple[int, int]]
    """(offset, size) of each valid record from the start offset on."""
    good_end: int
    """Where the valid records end; anything after it is torn or damaged."""


def scan(data: bytes, start: int) -> ScanResult:
    """Valid records in ``data`` (a whole spool.log) from ``start`` up to the first bad one."""
    records: list[tuple[int, int]] = []
    at = start
    while at + _RECORD.size <= len(data):
        length, crc = _RECORD.unpack_from(data, at)
        end = at + _RECORD.size + length
        if length < _BODY.size or length > _MAX_RECORD_BYTES or end > len(data):
            break
        body = data[at + _RECORD.size : end]
        if zlib.crc32(body) != crc:
            break
        try:
            decode_body(body)
        except (ValueError, UnicodeDecodeError, struct.error):
            break
        records.append((at, end - at))
        at = end
    return ScanResult(records, at)


def read_pending(spool_dir: Path) -> list[Message]:
    """The unsent messages of a spool, read-only (for tests and inspection)."""
    data = (spool_dir / LOG_NAME).read_bytes()
    if len(data) < HEADER_BYTES:
        return []
    _, file_id = _HEADER.unpack_from(data)
    start = _read_ack(spool_dir / ACK_NAME, file_id, len(data))
    return [decode_body(data[o + _RECORD.size : o + n]) for o, n in scan(data, start).records]


def _read_ack(path: Path, file_id: bytes, size: int) -> int:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return HEADER_BYTES
    if len(raw) != _ACK.size + 4 or zlib.crc32(raw[: _ACK.size]) != struct.unpack_from("<I", raw, _ACK.size)[0]:
        return HEADER_BYTES
    ack_id, offset = _ACK.unpack_from(raw)
    offset = int(offset)
    if ack_id != file_id:
        return HEADER_BYTES
    return min(max(offset, HEADER_BYTES), size)


def open_queue(config: MqttConfig) -> MessageQueue:
    """The disk spool if ``spool_dir`` is set, else memory; ``SpoolError`` names the problem."""
    if config.spool_dir is None:
        return MemoryQueue(config.buffer_size)
    return SpoolQueue(
        config.spool_dir,
        max_bytes=int(config.spool_max_mb * 1024 * 1024),
        fsync=config.spool_fsync,
        fsync_interval_ms=config.spool_fsync_interval_ms,
    )


class SpoolQueue:
    """``MessageQueue`` on disk; see the module doc for the format and guarantees."""

    persistent = True

    def __init__(
        self,
        spool_dir: Path,
        *,
        max_bytes: int,
        fsync: FsyncPolicy = "interval",
        fsync_interval_ms: float = 200.0,
        compact_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.dir = spool_dir
        self.path = spool_dir / LOG_NAME
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._interval_s = fsync_interval_ms / 1000.0
        self._compact_bytes = compact_bytes
        self.torn_records = 0
        """Records found torn or damaged at open and truncated away."""
        self.loaded = 0
        """Unsent records found at open (from the previous run)."""
        self._index: deque[tuple[int, int]] = deque()
        self._pending_bytes = 0
        self._head_offset = HEADER_BYTES
        self._end = HEADER_BYTES
        self._head_cache: tuple[int, Message] | None = None
        self._dirty = False
        self._last_sync = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        try:
            spool_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(spool_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            msg = f"mqtt.spool_dir: cannot use {spool_dir}: {exc.strerror}"
            raise SpoolError(msg) from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            msg = f"mqtt.spool_dir: {spool_dir} is in use by another process ({LOCK_NAME} is locked)"
            raise SpoolError(msg) from exc
        self._fd = -1
        self._ack_fd = -1
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # -- MessageQueue ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._index)

    def head(self) -> Message | None:
        if not self._index:
            return None
        offset, size = self._index[0]
        if self._head_cache is None or self._head_cache[0] != offset:
            record = os.pread(self._fd, size, offset)
            self._head_cache = (offset, decode_body(record[_RECORD.size :]))
        return self._head_cache[1]

    def pop_head(self) -> None:
        self._remove(0)

    def fits(self, message: Message) -> bool:
        text = len(message.topic.encode()) + len(message.pipeline.encode()) + len(message.schema.encode())
        size = _RECORD.size + _BODY.size + text + len(message.payload)
        return self._pending_bytes + size <= self.max_bytes

    def drop_oldest(self, *, keep_head: bool) -> bool:
        index = 1 if keep_head else 0
        if len(self._index) <= index:
            return False
        self._remove(index)
        return True

    def append(self, message: Message) -> None:
        record = encode_record(message)
        offset = os.lseek(self._fd, 0, os.SEEK_END)
        _write_all(self._fd, record)
        self._index.append((offset, len(record)))
        self._end = offset + len(record)
        self._pending_bytes += len(record)
        self._dirty = True
        self._after_write()

    def discard_all(self) -> int:
        return 0  # kept on disk for the next start

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self.sync()
        for fd in (self._fd, self._ack_fd, self._lock_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._ack_fd = self._lock_fd = -1

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def sync(self) -> None:
        """fsync the log and the ack file now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._dirty:
            os.fsync(self._fd)
            os.fsync(self._ack_fd)
            self._dirty = False
        self._last_sync = time.monotonic()

    # -- internals ------------------------------------------------------------------

    def _remove(self, index: int) -> None:
        offset, size = self._index[index]
        del self._index[index]
        self._pending_bytes -= size
        if index == 0:
            self._head_offset = self._index[0][0] if self._index else offset + size
            self._write_ack()
        dead = self._end - HEADER_BYTES - self._pending_bytes
        if not self._index and dead >= self._compact_bytes:
            self._rewrite()
        elif dead >= max(self._compact_bytes, self.max_bytes):
            self._rewrite()  # drop-oldest under a long outage: reclaim the dropped records

    def _after_write(self) -> None:
        if self.fsync == "always":
            self.sync()
        elif self.fsync == "interval":
            if time.monotonic() - self._last_sync >= self._interval_s:
                self.sync()
            elif self._timer is None:
                # Nothing may stay unsynced longer than the interval, even if no write follows.
                with contextlib.suppress(RuntimeError):  # no running loop: the next write syncs
                    loop = asyncio.get_running_loop()
                    self._timer = loop.call_later(self._interval_s, self._timed_sync)

    def _timed_sync(self) -> None:
        self._timer = None
        if self._fd >= 0:
            try:
                self.sync()
            except OSError as exc:
                log.error("MQTT spool %s: fsync failed: %s", self.path, exc)

    def _write_ack(self) -> None:
        raw = _ACK.pack(self._file_id, self._head_offset)
        os.pwrite(self._ack_fd, raw + struct.pack("<I", zlib.crc32(raw)), 0)
        self._dirty = True
        if self.fsync == "interval":
            self._after_write()

    def _load(self) -> None:
        self._ack_fd = os.open(self.dir / ACK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            msg = f"mqtt.spool_dir: cannot read {self.path}: {exc.strerror}"
            raise SpoolError(msg) from exc
        if len(data) >= HEADER_BYTES:
            magic, file_id = _HEADER.unpack_from(data)
            if magic != MAGIC:
                msg = f"mqtt.spool_dir: {self.path} is not a spikewire spool (no {MAGIC.decode()} header)"
                raise SpoolError(msg)
        elif data:
            log.warning("MQTT spool %s: torn header (%d bytes); starting a new spool", self.path, len(data))
            self.torn_records += 1
        if len(data) < HEADER_BYTES:
            self._rewrite(records=b"")
            return
        self._file_id = file_id
        start = _read_ack(self.dir / ACK_NAME, file_id, len(data))
        result = scan(data, start)
        self._fd = os.open(self.path, os.O_RDWR)
        if result.good_end < len(data):
            self.torn_records += 1
            log.warning(
                "MQTT spool %s: torn or damaged record at byte %d; truncated %d byte(s) "
                "(a crash during a write); %d record(s) before it kept",
                self.path,
                result.good_end,
                len(data) - result.good_end,
                len(result.records),
            )
            os.ftruncate(self._fd, result.good_end)
            os.fsync(self._fd)
        self._index.extend(result.records)
        self._pending_bytes = sum(size for _, size in result.records)
        self._head_offset = start
        self._end = result.good_end
        self.loaded = len(self._index)
        self._write_ack()
        if self.loaded:
            log.info("MQTT spool %s: %d unsent message(s) from the previous run go first", self.path, self.loaded)
        if start - HEADER_BYTES >= self._compact_bytes:
            self._rewrite()

    def _rewrite(self, records: bytes | None = None) -> None:
        """Replace the log by one holding only the pending records, under a new file id."""
        if records is None:
            records = b"".join(os.pread(self._fd, size, offset) for offset, size in self._index)
        file_id = secrets.token_bytes(8)
        tmp = self.dir / (LOG_NAME + ".tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, _HEADER.pack(MAGIC, file_id) + records)
            os.fsync(fd)
            tmp.replace(self.path)
        except BaseException:
            os.close(fd)
            raise
        _fsync_dir(self.dir)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._file_id = file_id
        self._index = deque((HEADER_BYTES + offset, size) for offset, size in _sizes(records))
        self._head_offset = HEADER_BYTES
        self._end = HEADER_BYTES + len(records)
        self._pending_bytes = len(records)
        self._head_cache = None
        # A crash before this write leaves an ack naming the old id: "send all", correct.
        self._write_ack()
        os.fsync(self._ack_fd)


def _sizes(records: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each record in a run of already checked records."""
    found, at = [], 0
    while at < len(records):
        size = _RECORD.size + _RECORD.unpack_from(records, at)[0]
        found.append((at, size))
        at += size
    return found


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
