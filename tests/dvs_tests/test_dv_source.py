"""Live DVS input through dv-processing: a real NetworkWriter on loopback, config and install errors.

dv-processing is the optional ``camera`` extra. CI installs only ``.[dev]``, so there the
tests that need it skip (saying so); the conversion, config and missing-package tests
always run. The loopback tests run a ``dv.io.NetworkWriter`` in a child process
(``dv_writer_proc.py``) and read it with ``DvCameraSource(network=...)``, as a camera on
another host would be read. The camera test needs a camera attached and skips without one.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mqtt_helpers import free_port

from runtime.config import ConfigError, load_settings
from sensors.blocks import EVENT_DTYPE, EventBlock, InputError
from sensors.dvs.dv import INSTALL_HINT, DvCameraSource, _Batch, _Connected, events_from_dv, import_dv

WRITER = Path(__file__).with_name("dv_writer_proc.py")
W, H = 64, 48
NO_DV = "dv-processing is not installed (optional extra: pip install 'spikewire[camera]'); CI skips this"


def dv_or_skip():
    try:
        return import_dv()
    except InputError:
        pytest.skip(NO_DV)


def random_events(n: int, t0: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.empty(n, EVENT_DTYPE)
    ev["t"] = t0 + np.sort(rng.integers(0, 100_000, n))
    ev["x"] = rng.integers(0, W, n)
    ev["y"] = rng.integers(0, H, n)
    ev["p"] = rng.integers(0, 2, n).astype(bool)
    return ev


class Writer:
    """The writer process: ``write`` sends one batch and waits for the writer's answer."""

    def __init__(self, port: int, tmp_path: Path, name: str = "DVXplorer_TEST0001") -> None:
        self.tmp_path = tmp_path
        self.n = 0
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(port), str(W), str(H), name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.ask(None) == "ready"

    def ask(self, line: str | None) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line is not None:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def write(self, events: np.ndarray) -> None:
        path = self.tmp_path / f"batch{self.n}.npy"
        self.n += 1
        np.save(path, events)
        assert self.ask(f"write {path}") == "ok"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def writers(tmp_path: Path) -> Iterator[list[Writer]]:
    made: list[Writer] = []
    yield made
    for w in made:
        w.kill()


async def collect(src: DvCameraSource, n_events: int) -> list[EventBlock]:
    blocks: list[EventBlock] = []
    async for block in src:
        blocks.append(block)
        if sum(len(b) for b in blocks) >= n_events:
            return blocks
    return blocks


async def until(cond, what: str) -> None:
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


# -- always run -------------------------------------------------------------------------------


def test_dv_records_convert_to_event_dtype() -> None:
    # The layout EventStore.numpy() gives in dv-processing 2.0.
    dv_dtype = np.dtype({"names": ["timestamp", "x", "y", "polarity"], "formats": ["<i8", "<i2", "<i2", "i1"]})
    rec = np.array([(1_700_000_000_000_123, 3, 4, 1), (1_700_000_000_000_200, 639, 479, 0)], dv_dtype)
    ev = events_from_dv(rec)
    assert ev.dtype == EVENT_DTYPE
    assert ev["t"].tolist() == [1_700_000_000_000_123, 1_700_000_000_000_200]
    assert ev["x"].tolist() == [3, 639] and ev["y"].tolist() == [4, 479]
    assert ev["p"].tolist() == [True, False]


async def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dv_processing", None)  # makes the import fail
    src = DvCameraSource(network="127.0.0.1:7777")
    with pytest.raises(InputError, match=r"pip install 'spikewire\[camera\]'"):
        await src.start()
    assert "spikewire[camera]" in INSTALL_HINT


CAMERA_CONFIG = """
[[pipelines]]
name = "digits"
model = "nmnist"
[pipelines.source]
kind = "dvs_camera"
"""


def test_config_camera_or_network_not_both(tmp_path: Path) -> None:
    path = tmp_path / "spikewire.toml"
    path.write_text(CAMERA_CONFIG + 'camera = "DXA00093"\nnetwork = "10.0.0.5:7777"\n')
    with pytest.raises(ConfigError, match=r"pipelines\.0\.source\.dvs_camera\.network: .*not both"):
        load_settings(path)
    path.write_text(CAMERA_CONFIG + 'network = "cam-host"\n')
    with pytest.raises(ConfigError, match=r"dvs_camera\.network: Value error, must be host:port"):
        load_settings(path)
    path.write_text(CAMERA_CONFIG + 'network = "cam-host:7777"\nblock_ms = 10\n')
    src = load_settings(path).pipelines[0].source
    assert src.kind == "dvs_camera" and src.network == "cam-host:7777" and src.camera is None
    path.write_text(CAMERA_CONFIG)
    src = load_settings(path).pipelines[0].source
    assert src.kind == "dvs_camera" and src.camera is None and src.network is None  # the first camera found


def test_new_connection_is_rebased_and_a_new_sensor_gets_its_own_blocks() -> None:
    """The loop-side logic, fed the reader thread's messages directly (no dv-processing, no timing)."""
    src = DvCameraSource(network="127.0.0.1:7777", block_ms=10.0)
    src._on_message(_Connected("cam-A", W, H))
    first = random_events(100, 1_700_000_000_000_000, seed=3)
    first["t"] = 1_700_000_000_000_000 + np.arange(100) * 250  # 0 .. 24.75 ms
    src._on_message(_Batch(first.copy(), 0))
    # The camera comes back as another sensor, its clock restarted.
    src._on_message(_Connected("cam-B", 80, 60))
    second = random_events(50, 5_000, seed=4)
    src._on_message(_Batch(second.copy(), 0))
    blocks: list[EventBlock] = []
    while not src._blocks.empty():
        item = src._blocks.get_nowait()
        assert isinstance(item, EventBlock)
        blocks.append(item)
    old = [b for b in blocks if (b.width, b.height) == (W, H)]
    new = [b for b in blocks if (b.width, b.height) == (80, 60)]
    assert len(old) + len(new) == len(blocks)
    got_old = np.concatenate([b.events for b in old])
    np.testing.assert_array_equal(got_old["t"], first["t"] - first["t"][0])
    assert old[-1].t_end_us == 30_000  # the old sensor's last block was closed at a block boundary
    got_new = np.concatenate([b.events for b in new])
    # The new connection starts where stream time stood (a block of the new sensor may still be open).
    assert got_new["t"][0] == 30_000
    np.testing.assert_array_equal(got_new["t"] - 30_000, (second["t"] - second["t"][0])[: len(got_new)])
    assert src.drops()["reconnects"] == 1 and src.drops()["late_events"] == 0


async def test_quiet_camera_lets_stream_time_run_on_and_resyncs_its_clock() -> None:
    """Loop-side logic again: idle blocks while quiet, then the camera's clock is moved up, nothing late."""
    src = DvCameraSource(network="127.0.0.1:7777", block_ms=10.0, idle_flush_ms=20.0)
    idle = asyncio.create_task(src._run_idle())
    try:
        src._on_message(_Connected("cam", W, H))
        first = random_events(50, 1_000_000, seed=5)
        src._on_message(_Batch(first.copy(), 0))
        span_us = int(first["t"][-1] - first["t"][0])
        # Nothing arrives: stream time runs on with the wall clock, well past the camera's.
        await until(lambda: src._slicer.sent_until_us >= span_us + 100_000, "idle blocks")
        ahead_us = src._slicer.sent_until_us
        second = random_events(50, int(first["t"][-1]) + 1_000, seed=6)
        src._on_message(_Batch(second.copy(), 0))
    finally:
        idle.cancel()
    blocks: list[EventBlock] = []
    while not src._blocks.empty():
        item = src._blocks.get_nowait()
        assert isinstance(item, EventBlock)
        blocks.append(item)
    assert [b.t_start_us for b in blocks] == list(range(0, 10_000 * len(blocks), 10_000))
    got = np.concatenate([b.events for b in blocks])
    np.testing.assert_array_equal(got["t"][:50], first["t"] - first["t"][0])
    later = got["t"][50:]
    assert len(later) and later[0] == ahead_us  # moved up to where stream time stood
    np.testing.assert_array_equal(later - ahead_us, (second["t"] - second["t"][0])[: len(later)])
    assert src.drops()["clock_resyncs"] == 1 and src.drops()["late_events"] == 0


def test_source_refuses_both_inputs() -> None:
    with pytest.raises(ValueError, match="not both"):
        DvCameraSource("DXA00093", network="127.0.0.1:7777")
    with pytest.raises(ValueError, match="host:port"):
        DvCameraSource(network="127.0.0.1")


# -- need dv-processing -----------------------------------------------------------------------


async def test_nothing_listening_is_a_clear_error_at_start() -> None:
    dv_or_skip()
    port = free_port()
    src = DvCameraSource(network=f"127.0.0.1:{port}")
    with pytest.raises(InputError, match=rf"dv-tcp://127\.0\.0\.1:{port}: cannot open: .*refused"):
        await src.start()


async def test_network_stream_arrives_as_rebased_blocks(tmp_path: Path, writers: list[Writer]) -> None:
    dv_or_skip()
    port = free_port()
    writers.append(w := Writer(port, tmp_path))
    # Idle flush long enough that stream time never runs on between two writes (it would resync the clock).
    src = DvCameraSource(network=f"127.0.0.1:{port}", block_ms=10.0, idle_flush_ms=300.0)
    await src.start()
    try:
        assert w.ask("wait") == "ok"
        # Real-time µs, as dv-processing 2 cameras stamp events.
        batches = [random_events(200, 1_700_000_000_000_000 + k * 100_000, seed=k) for k in range(3)]
        for batch in batches:
            w.write(batch)
        blocks = await asyncio.wait_for(collect(src, 600), 10)
    finally:
        src.close()
    assert await src.wait_closed()
    expected = np.concatenate(batches)
    expected["t"] -= expected["t"][0]
    np.testing.assert_array_equal(np.concatenate([b.events for b in blocks]), expected)
    assert all((b.width, b.height, b.stream) == (W, H, f"dv-tcp://127.0.0.1:{port}") for b in blocks)
    assert [b.t_start_us for b in blocks] == list(range(0, 10_000 * len(blocks), 10_000))
    assert all((b.events["t"] >= b.t_start_us).all() and (b.events["t"] < b.t_end_us).all() for b in blocks)
    assert src.camera_name == "DVXplorer_TEST0001"
    assert src.drops() == dict.fromkeys(src.drops(), 0)


async def test_lost_stream_is_counted_and_reopened(tmp_path: Path, writers: list[Writer]) -> None:
    dv_or_skip()
    port = free_port()
    writers.append(w1 := Writer(port, tmp_path))
    src = DvCameraSource(
        network=f"127.0.0.1:{port}", block_ms=10.0, idle_flush_ms=30.0, reconnect_min_s=0.02, reconnect_max_s=0.1
    )
    await src.start()
    try:
        assert w1.ask("wait") == "ok"
        first = random_events(300, 1_700_000_000_000_000, seed=1)
        w1.write(first)
        got1 = np.concatenate([b.events for b in await asyncio.wait_for(collect(src, 300), 10)])
        w1.kill()
        await until(lambda: src.counters.disconnects == 1 and src.counters.open_failures >= 1, "a failed reopen")
        # The host comes back with its clock restarted: timestamps far before the first ones.
        writers.append(w2 := Writer(port, tmp_path))
        assert w2.ask("wait") == "ok"
        second = random_events(300, 5_000_000, seed=2)
        w2.write(second)
        got2 = np.concatenate([b.events for b in await asyncio.wait_for(collect(src, 300), 10)])
    finally:
        src.close()
    assert await src.wait_closed()
    np.testing.assert_array_equal(got1["t"], first["t"] - first["t"][0])
    # After the reconnect stream time goes on where it stood, with the batch's own spacing.
    assert got2["t"][0] >= got1["t"][-1]
    np.testing.assert_array_equal(got2["t"] - got2["t"][0], second["t"] - second["t"][0])
    np.testing.assert_array_equal(got2[["x", "y", "p"]], second[["x", "y", "p"]])
    drops = src.drops()
    assert (drops["disconnects"], drops["reconnects"], drops["late_events"]) == (1, 1, 0)
    assert drops["open_failures"] >= 1


async def test_attached_camera_delivers_blocks() -> None:
    dv = dv_or_skip()
    if not hasattr(dv.io, "camera") or not list(dv.io.camera.discover()):
        pytest.skip("no iniVation camera attached to this host")
    src = DvCameraSource(block_ms=20.0)
    await src.start()
    try:
        block = await asyncio.wait_for(src.__aiter__().__anext__(), 10)
    finally:
        src.close()
    assert await src.wait_closed()
    assert block.width > 0 and block.height > 0 and block.t_end_us - block.t_start_us == 20_000
    assert (block.events["x"] < block.width).all() and (block.events["y"] < block.height).all()
