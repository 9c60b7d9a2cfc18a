"""``spikewire run`` against a real Mosquitto under faults: nothing lost, Will, offline.

The daemon replays the demo recording in a loop (speed 10, a decision every ~0.15 s) and
writes every decision to a JSONL file as well: that file is the ground truth of what the
pipeline decided. Every wait polls a condition (with a generous limit); no assertion
depends on how long something took.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import subprocess
from pathlib import Path

import pytest
from fault_util import DEVICE, daemon_config, decisions, jsonl_seqs, popen_cli, wait_for
from mqtt_helpers import Broker, Collector, collect, dedupe, seqs

from runtime.mqtt.spool import read_pending

pytestmark = [pytest.mark.broker, pytest.mark.slow]

TOPICS = f"spikewire/{DEVICE}/#"


async def stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> str:
    proc.send_signal(sig)
    try:
        _, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        proc.kill()
    return err


async def test_broker_killed_and_restarted_mid_stream(mosquitto: Broker, tmp_path: Path) -> None:
    """Decisions in = decisions delivered, seq contiguous, across a broker SIGKILL + restart."""
    async with Collector(mosquitto.host, mosquitto.port, TOPICS, persistent=True) as sub:
        proc = popen_cli("run", daemon_config(tmp_path, mosquitto.url))
        try:
            await sub.wait_for(lambda ms: len(seqs(ms)) >= 5, timeout_s=60)
            await asyncio.to_thread(mosquitto.kill)
            during = len(jsonl_seqs(tmp_path))
            await wait_for(lambda: len(jsonl_seqs(tmp_path)) >= during + 10, "10 decisions during the outage")
            await asyncio.to_thread(mosquitto.start)
            await wait_for(lambda: len(jsonl_seqs(tmp_path)) >= during + 20, "10 more decisions after it")
            err = await stop(proc)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        decided = jsonl_seqs(tmp_path)
        await sub.wait_for(lambda ms: set(decided) <= set(seqs(ms)), timeout_s=30)
    delivered = dedupe(seqs(sub.messages))
    assert decided == list(range(1, len(decided) + 1))  # the pipeline's own numbering
    assert delivered == decided  # all of them, in order, none invented
    assert "connection to" in err and "lost" in err


async def test_daemon_sigkilled_during_outage_loses_nothing_with_the_spool(mosquitto: Broker, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    config = daemon_config(tmp_path, mosquitto.url, mqtt_extra=f'spool_dir = "{spool}"\nspool_fsync = "interval"')
    async with Collector(mosquitto.host, mosquitto.port, TOPICS, persistent=True) as sub:
        first = popen_cli("run", config)
        try:
            await sub.wait_for(lambda ms: len(seqs(ms)) >= 3, timeout_s=60)
            await asyncio.to_thread(mosquitto.stop)
            await wait_for(lambda: len(read_pending(spool)) >= 10, "10 decisions spooled during the outage")
            killed_at = dt.datetime.now(dt.UTC)
            first.send_signal(signal.SIGKILL)
            await asyncio.to_thread(first.wait, 30)
        finally:
            first.kill()
        pending = [json.loads(m.payload) for m in read_pending(spool)]
        last_seq = max(p["seq"] for p in pending if p["schema"].startswith("spikewire.classification"))
        assert last_seq == max(jsonl_seqs(tmp_path))  # the spool had every decision made before the kill

        second = popen_cli("run", config)  # the broker is still down: it starts from the spool
        try:
            await asyncio.to_thread(mosquitto.start)

            def first_run(ms: list) -> list[int]:  # type: ignore[type-arg]
                return dedupe(c.seq for c in decisions(ms) if c.timestamp < killed_at)

            await sub.wait_for(lambda ms: len(first_run(ms)) >= last_seq, timeout_s=60)
            err = await stop(second)
        finally:
            second.kill()
    assert first_run(sub.messages) == list(range(1, last_seq + 1))
    assert "unsent message(s) from the previous run go first" in err


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
async def test_offline_on_kill_by_will_and_on_term_by_the_daemon(
    mosquitto: Broker, tmp_path: Path, sig: signal.Signals
) -> None:
    """SIGKILL: the broker publishes the Last Will; SIGTERM: the daemon says ``offline`` itself."""
    async with Collector(mosquitto.host, mosquitto.port, f"spikewire/{DEVICE}/availability") as sub:
        proc = popen_cli("run", daemon_config(tmp_path, mosquitto.url))
        try:
            await sub.wait_for(lambda ms: any(m.text == "online" for m in ms), timeout_s=60)
            await stop(proc, sig)
        finally:
            proc.kill()
        await sub.wait_for(lambda ms: ms[-1].text == "offline", timeout_s=30)
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
    # Either way, it is retained for whoever subscribes later.
    late = await collect(mosquitto.host, mosquitto.port, f"spikewire/{DEVICE}/availability", until=bool)
    assert [(m.text, m.retain) for m in late] == [("offline", True)]


async def test_wrong_password_one_error_line_and_retries(mosquitto_binary: str, tmp_path: Path) -> None:
    from mqtt_helpers import free_port

    passwords = tmp_path / "passwd"
    await asyncio.to_thread(
        subprocess.run, ["mosquitto_passwd", "-b", "-c", str(passwords), "edge", "right-one"], check=True
    )
    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = Broker(
        mosquitto_binary, workdir, free_port(), allow_anonymous=False, extra_conf=[f"password_file {passwords}"]
    )
    broker.start()
    secret = "wrong-Secret-4711"
    (tmp_path / "pw").write_text(secret + "\n")
    config = daemon_config(tmp_path, broker.url, mqtt_extra=f'username = "edge"\npassword_file = "{tmp_path / "pw"}"')
    proc = popen_cli("run", config)
    try:
        # The broker sees the attempts: at least four means it retried three times.
        await wait_for(lambda: broker.log_text().count("not authorised") >= 4, "four refused attempts")
        err = await stop(proc)
    finally:
        proc.kill()
        broker.kill()
    # One line when it starts failing (the close summary repeats the reason once more).
    refused = [line for line in err.splitlines() if "refused user 'edge'" in line and "Retrying" in line]
    assert len(refused) == 1, err
    assert err.count("Retrying every") == 1, err
    assert "check mqtt.username and mqtt.password" in refused[0]
    assert "Retrying every 0.05-0.5 s" in refused[0]
    assert secret not in err


async def test_slow_subscriber_does_not_slow_the_pipeline(mosquitto: Broker, tmp_path: Path) -> None:
    """A QoS 1 subscriber taking 10x longer per message than the pipeline does not hold it back.

    The same fixed-length replay (the demo recording once, speed 10) runs twice, alone and
    with a slow subscriber. Measured by counts at the end: the daemon decides and
    delivers the same number of decisions, while the slow subscriber has handled only a
    fraction when the daemon is done (so nobody waited for it).
    """
    import threading
    import time

    import paho.mqtt.client as paho

    async def replay(run: str) -> tuple[int, int]:
        folder = tmp_path / run
        folder.mkdir()
        async with Collector(mosquitto.host, mosquitto.port, f"spikewire/{DEVICE}/+/classification") as fast:
            proc = popen_cli("run", daemon_config(folder, mosquitto.url, loop=False))
            try:
                _, err = await asyncio.to_thread(proc.communicate, timeout=120)
            finally:
                proc.kill()
            assert proc.returncode == 0, err
            decided = jsonl_seqs(folder)
            await fast.wait_for(lambda ms: set(decided) <= set(seqs(ms)), timeout_s=30)
        return len(decided), len(dedupe(seqs(fast.messages)))

    alone = await replay("alone")

    handled = 0
    lock = threading.Lock()

    def on_message(_c: object, _u: object, _m: object) -> None:
        nonlocal handled
        time.sleep(1.5)  # a decision arrives every ~0.15 s: this subscriber is 10x slower
        with lock:
            handled += 1

    slow = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="slow-sub", clean_session=True)
    slow.on_message = on_message
    slow.connect(mosquitto.host, mosquitto.port)
    slow.subscribe(f"spikewire/{DEVICE}/+/classification", qos=1)
    slow.loop_start()
    try:
        with_slow = await replay("with-slow")
        with lock:
            slow_handled = handled
    finally:
        slow.loop_stop()
        slow.disconnect()
    assert with_slow == alone  # same decisions made and delivered with the slow subscriber
    assert alone[0] >= 10
    assert slow_handled < with_slow[0] / 2  # it was far behind when the pipeline had finished
