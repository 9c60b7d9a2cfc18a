"""The disk spool on its own: order, restart, torn records, acks, compaction, bounds."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest
from mqtt_helpers import classification

from runtime.config import MqttConfig
from runtime.mqtt.queue import Message
from runtime.mqtt.sink import MqttSink
from runtime.mqtt.spool import ACK_NAME, HEADER_BYTES, LOG_NAME, SpoolError, SpoolQueue, encode_record, read_pending


def msg(i: int, size: int = 20) -> Message:
    return Message(f"spikewire/dev/kws/{i}", f"{i:0{size}d}".encode(), 1, "kws", "spikewire.classification/1")


def spool(path: Path, **kw: object) -> SpoolQueue:
    options: dict[str, object] = {"max_bytes": 1 << 20, "fsync": "never", **kw}
    return SpoolQueue(path, **options)  # type: ignore[arg-type]


def drain(q: SpoolQueue) -> list[Message]:
    out = []
    while (head := q.head()) is not None:
        out.append(head)
        q.pop_head()
    return out


@pytest.mark.parametrize("fsync", ["always", "interval", "never"])
def test_unacked_records_survive_a_restart_in_order(tmp_path: Path, fsync: str) -> None:
    q = spool(tmp_path, fsync=fsync)
    for i in range(10):
        q.append(msg(i))
    assert q.head() == msg(0)
    q.pop_head()
    q.pop_head()  # two acknowledged
    q.close()
    again = spool(tmp_path, fsync=fsync)
    assert again.loaded == 8
    assert drain(again) == [msg(i) for i in range(2, 10)]
    again.close()
    assert read_pending(tmp_path) == []


def test_not_closed_is_like_a_kill(tmp_path: Path) -> None:
    # A SIGKILLed daemon never closes: the records are in the file all the same.
    q = spool(tmp_path)
    for i in range(5):
        q.append(msg(i))
    q.pop_head()
    assert read_pending(tmp_path) == [msg(i) for i in range(1, 5)]
    q.close()


@pytest.mark.parametrize("cut", [1, 5, 8, 12, 30])
def test_torn_last_record_is_truncated_counted_and_logged(
    tmp_path: Path, cut: int, caplog: pytest.LogCaptureFixture
) -> None:
    q = spool(tmp_path)
    for i in range(3):
        q.append(msg(i))
    q.close()
    with (tmp_path / LOG_NAME).open("ab") as f:
        f.write(encode_record(msg(3))[:cut])  # a crash in mid-write
    size_before = (tmp_path / LOG_NAME).stat().st_size
    with caplog.at_level(logging.WARNING, logger="runtime.mqtt.spool"):
        again = spool(tmp_path)
    assert again.torn_records == 1
    assert drain(again) == [msg(i) for i in range(3)]
    assert (tmp_path / LOG_NAME).stat().st_size == size_before - cut
    assert any("torn or damaged record" in r.getMessage() and str(tmp_path) in r.getMessage() for r in caplog.records)
    again.close()


def test_damaged_checksum_truncates_from_there(tmp_path: Path) -> None:
    q = spool(tmp_path)
    for i in range(4):
        q.append(msg(i))
    q.close()
    record = len(encode_record(msg(0)))
    with (tmp_path / LOG_NAME).open("r+b") as f:
        f.seek(HEADER_BYTES + 2 * record + 12)
        f.write(b"X")  # a flipped byte in record 2's body
    again = spool(tmp_path)
    assert again.torn_records == 1
    assert drain(again) == [msg(0), msg(1)]
    again.close()


def test_torn_or_foreign_ack_file_resends_everything(tmp_path: Path) -> None:
    q = spool(tmp_path)
    for i in range(3):
        q.append(msg(i))
    q.pop_head()
    q.close()
    raw = (tmp_path / ACK_NAME).read_bytes()
    (tmp_path / ACK_NAME).write_bytes(raw[:10])  # torn: duplicates, never a loss
    assert read_pending(tmp_path) == [msg(i) for i in range(3)]
    (tmp_path / ACK_NAME).write_bytes(b"\0" * 8 + raw[8:])  # another file id (a crash mid-compaction)
    assert read_pending(tmp_path) == [msg(i) for i in range(3)]


def test_compacts_when_fully_acknowledged(tmp_path: Path) -> None:
    q = spool(tmp_path, compact_bytes=1000)
    for i in range(100):
        q.append(msg(i))
        if i % 3 == 2:
            drain(q)
    drain(q)
    assert (tmp_path / LOG_NAME).stat().st_size < 1000 + HEADER_BYTES
    q.append(msg(100))
    q.close()
    assert read_pending(tmp_path) == [msg(100)]


def test_dead_prefix_of_dropped_records_is_reclaimed(tmp_path: Path) -> None:
    q = spool(tmp_path, max_bytes=2000, compact_bytes=500)
    for i in range(1000):
        while not q.fits(msg(i)):
            assert q.drop_oldest(keep_head=True)
        q.append(msg(i))
    assert (tmp_path / LOG_NAME).stat().st_size < 2 * 2000 + 500
    assert q.head() == msg(0)  # the head (in flight) is kept
    assert drain(q)[-1] == msg(999)
    q.close()


def test_one_process_per_spool_and_foreign_files_refused(tmp_path: Path) -> None:
    q = spool(tmp_path)
    with pytest.raises(SpoolError, match="in use by another process"):
        spool(tmp_path)
    q.close()
    other = tmp_path / "other"
    other.mkdir()
    (other / LOG_NAME).write_bytes(b"hello world, not a spool")
    with pytest.raises(SpoolError, match=rf"{other / LOG_NAME} is not a spikewire spool"):
        spool(other)


def test_torn_header_starts_a_new_spool(tmp_path: Path) -> None:
    (tmp_path / LOG_NAME).write_bytes(b"SWSP")
    q = spool(tmp_path)
    assert q.torn_records == 1 and len(q) == 0
    q.append(msg(1))
    q.close()
    assert read_pending(tmp_path) == [msg(1)]


def test_record_layout_is_documented(tmp_path: Path) -> None:
    record = encode_record(Message("a/b", b"{}", 1, "kws", "s/1"))
    length, _crc = struct.unpack_from("<II", record)
    assert length == len(record) - 8
    assert struct.unpack_from("<BHHH", record, 8) == (1, 3, 3, 3)
    assert record.endswith(b"a/bkwss/1{}")


# -- the sink over the spool, no broker -------------------------------------------------


def sink_config(tmp_path: Path, **overrides: object) -> MqttConfig:
    # Port 9 (discard) on loopback: nothing listens, every attempt is refused at once.
    return MqttConfig.model_validate(
        {"url": "mqtt://127.0.0.1:9", "spool_dir": str(tmp_path / "spool"), "spool_fsync": "never", **overrides}
    )


async def test_sink_keeps_undelivered_decisions_in_the_spool_for_the_next_start(tmp_path: Path) -> None:
    sink = MqttSink(sink_config(tmp_path), "dev")
    for seq in range(1, 31):
        sink.offer(classification(seq, device="dev"))
    await sink.close(drain_timeout_s=0.1)
    assert sink.stats().dropped == 0
    kept = read_pending(tmp_path / "spool")
    assert [int(m.payload.split(b'"seq":')[1].split(b",")[0]) for m in kept] == list(range(1, 31))

    again = MqttSink(sink_config(tmp_path), "dev")
    assert again.queued == 30  # loaded first, before anything new
    again.offer(classification(31, device="dev"))
    await again.close(drain_timeout_s=0.1)
    assert len(read_pending(tmp_path / "spool")) == 31


@pytest.mark.parametrize(("policy", "kept"), [("drop_oldest", range(11, 21)), ("drop_newest", range(1, 11))])
async def test_overflow_policy_counts_every_drop_and_logs_once_per_burst(
    tmp_path: Path, policy: str, kept: range, caplog: pytest.LogCaptureFixture
) -> None:
    one = len(encode_record(Message(*_decision_fields(1))))
    config = sink_config(tmp_path, overflow=policy, spool_max_mb=(10 * one + one // 2) / 2**20)
    sink = MqttSink(config, "dev")
    with caplog.at_level(logging.WARNING, logger="runtime.mqtt"):
        for seq in range(1, 21):
            sink.offer(classification(seq, device="dev"))
    assert sink.stats().dropped == 10
    assert len([r for r in caplog.records if "buffer full" in r.getMessage()]) == 1
    await sink.close(drain_timeout_s=0.1)
    seqs = [int(m.payload.split(b'"seq":')[1].split(b",")[0]) for m in read_pending(tmp_path / "spool")]
    assert seqs == list(kept)


def _decision_fields(seq: int) -> tuple[str, bytes, int, str, str]:
    from runtime.contract import dump

    payload = dump(classification(seq, device="dev"))
    return ("spikewire/dev/kws/classification", payload, 1, "kws", "spikewire.classification/1")


async def test_memory_queue_drop_newest(tmp_path: Path) -> None:
    config = MqttConfig.model_validate({"url": "mqtt://127.0.0.1:9", "buffer_size": 5, "overflow": "drop_newest"})
    sink = MqttSink(config, "dev")
    for seq in range(1, 21):
        sink.offer(classification(seq, device="dev"))
    assert (sink.queued, sink.dropped) == (5, 15)
    head = sink.queue.head()
    assert head is not None and b'"seq":1,' in head.payload
    await sink.close(drain_timeout_s=0.1)
    assert sink.dropped == 20


def test_spool_dir_problem_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SpoolError, match=rf"mqtt.spool_dir: cannot use {blocker / 'spool'}"):
        MqttSink(MqttConfig.model_validate({"spool_dir": str(blocker / "spool")}), "dev")
    assert blocker.read_text() == "x"  # left alone
