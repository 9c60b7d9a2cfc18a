"""The DVS side of the command line: models check/export on dynapcnn, bench decode, and a
daemon fed over UDP by `spikewire send`, publishing to a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import numpy as np
import pytest
from dvs_bundle import MANIFEST, make_bundle
from e2e_util import popen_cli, run_cli
from mqtt_helpers import Broker, Collector, free_port

from models.convnet import ConvLayer, ConvNet
from models.nir_conv import read_convnet, write_convnet
from runtime.contract import Classification, Telemetry

pytestmark = pytest.mark.slow


def test_models_check_prints_the_core_table() -> None:
    proc = run_cli("models", "check", "nmnist", "--chip", "dynapcnn")
    assert proc.returncode == 0, proc.stderr
    assert "core" in proc.stdout and "kernel memory" in proc.stdout and "neuron memory" in proc.stdout
    proc = run_cli("models", "check", "nmnist", "--json")
    report = json.loads(proc.stdout)
    assert report["fits"] is True and report["chip"] == "dynapcnn" and report["layers"] == 4


def test_models_check_lists_every_violation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    big = ConvLayer("conv1", (2, 128, 128), rng.normal(0, 1, (8, 2, 3, 3)), (1, 1), (1, 1), 1.0, -1.0)
    fc = ConvLayer("fc", big.out_shape, rng.normal(0, 1, (20, 8, 128, 128)), (1, 1), (0, 0), 1.0, -1.0)
    root = tmp_path / "too-big"
    root.mkdir()
    write_convnet(ConvNet((2, 128, 128), (big, fc)), root / "model.nir")
    labels = ", ".join(f'"{i}"' for i in range(20))
    (root / "manifest.toml").write_text(MANIFEST.replace(MANIFEST.splitlines()[0], f"labels = [{labels}]"))
    proc = run_cli("models", "check", root, "--chip", "dynapcnn")
    assert proc.returncode == 4
    err = proc.stderr
    assert "conv1" in err and "128x128 > 64x64" in err  # output map too large
    assert "fc" in err and "128x128 > 16x16" in err  # kernel too large
    assert "20" in err and "15" in err  # readout classes
    proc = run_cli("models", "check", root, "--chip", "dynapcnn", "--json")
    assert proc.returncode == 4 and len(json.loads(proc.stdout)["problems"]) >= 3


def test_models_export_writes_the_integer_network(tmp_path: Path) -> None:
    out = tmp_path / "q.nir"
    proc = run_cli("models", "export", "nmnist", "-o", out)
    assert proc.returncode == 0, proc.stderr
    net = read_convnet(out)
    for layer in net.layers:
        assert np.array_equal(layer.weight, np.round(layer.weight)) and np.abs(layer.weight).max() <= 127
        assert layer.threshold == round(layer.threshold) >= 1


def test_bench_decode_reports_each_format() -> None:
    proc = run_cli("bench", "decode", "--json", "--events", "200000", "--repeat", "1", timeout_s=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for fmt in ("evt2", "evt3", "dat", "nmnist_bin"):
        assert result[fmt]["mev_per_s"] > 0 and result[fmt]["events"] == 200000


@pytest.mark.broker
async def test_daemon_classifies_events_sent_over_udp(mosquitto: Broker, tmp_path: Path, data_dir: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    port = free_port()
    cfg = tmp_path / "dvs.toml"
    cfg.write_text(
        f"""
device = "cam-test"
stdout = false
[mqtt]
url = "{mosquitto.url}"
[[pipelines]]
name = "dvs"
model = "{bundle}"
telemetry_interval_s = 0.5
readout = {{ mode = "window", window_ms = 100, hop_ms = 100 }}
[pipelines.source]
kind = "dvs_udp"
listen = "127.0.0.1:{port}"
block_ms = 10
"""
    )
    sample = data_dir / "dvs" / "nmnist_bin_misc" / "tonic_sample_nmnist.bin"
    async with Collector(mosquitto.host, mosquitto.port, "spikewire/cam-test/#") as sub:
        daemon = popen_cli("run", cfg)
        try:
            await sub.wait_for(lambda ms: any(m.topic.endswith("availability") and m.text == "online" for m in ms), 30)
            sender = await asyncio.to_thread(run_cli, "send", sample, f"127.0.0.1:{port}", "--speed", "2")
            assert sender.returncode == 0, sender.stderr
            await sub.wait_for(lambda ms: any(m.topic.endswith("/dvs/classification") for m in ms), timeout_s=20)
            await sub.wait_for(
                lambda ms: any(
                    m.topic.endswith("/dvs/telemetry") and Telemetry.model_validate_json(m.payload).input_events_per_s
                    for m in ms
                ),
                timeout_s=20,
            )
            daemon.send_signal(signal.SIGTERM)
            _, err = await asyncio.to_thread(daemon.communicate, timeout=20)
        finally:
            daemon.kill()
        assert daemon.returncode == 0, err
    cls = [Classification.model_validate_json(m.payload) for m in sub.messages if m.topic.endswith("/classification")]
    assert cls[0].chip == "dynapcnn" and cls[0].window.stream == f"udp://127.0.0.1:{port}"
    tel = [Telemetry.model_validate_json(m.payload) for m in sub.messages if m.topic.endswith("/telemetry")]
    assert all(t.drops["source_lost_datagrams"] == 0 and t.drops["source_bad_datagrams"] == 0 for t in tel)
