"""spikewire replay of event recordings on the emulated DynapCNN: every sample format, scored N-MNIST."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from dvs_bundle import make_bundle
from e2e_util import run_cli

pytestmark = pytest.mark.slow

# Pre-processing that brings each sample's sensor down to the test model's 2x34x34 input.
SAMPLES = {
    "prophesee_evt2/faery_evt2_gen3_640x480.raw": ("roi = [200, 100, 136, 136]\npool = 4", []),
    "prophesee_evt3/expelliarmus_evt3_sample_gen41_1280x720.raw": ("roi = [500, 300, 136, 136]\npool = 4", []),
    "aedat4/tonic_sample_dvxplorer.aedat4": ("roi = [90, 50, 136, 136]\npool = 4", []),
    "prophesee_dat/tonic_sample_ncars.dat": ("roi = [0, 0, 68, 68]\npool = 2", ["--sensor-size", "304x240"]),
    "nmnist_bin_misc/tonic_sample_nmnist.bin": ("", []),
    "aedat2/tonic_sample_aedat_header_only.aedat": ("roi = [0, 0, 136, 136]\npool = 4", []),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_streams_through_replay(tmp_path: Path, data_dir: Path, name: str) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    settings, extra = SAMPLES[name]
    pre = tmp_path / "pre.toml"
    pre.write_text(f'polarity = "both"\n{settings}\n', encoding="utf-8")
    proc = run_cli(
        "replay", data_dir / "dvs" / name, "--model", bundle, "--preprocess", pre, *extra, "--speed", "max", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["chip"] == "dynapcnn" and s["files"] == 1 and s["skipped_files"] == 0
    if name.startswith("aedat2/"):  # header only: a stream with no events, so no decision
        assert s["events_read"] == 0 and s["decisions"] == 0
        return
    assert s["events_read"] > 0 and s["decisions"] == 1
    # Everything read either reached the chip or is counted as dropped, by reason.
    encoder_drops = sum(v for k, v in s["drops"].items() if k.startswith("encoder_"))
    assert s["chip_input_events"] + encoder_drops == s["events_read"]
    if settings:
        assert s["drops"]["encoder_roi"] > 0


def test_sensor_that_does_not_fit_the_model_is_named(tmp_path: Path, data_dir: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    path = data_dir / "dvs" / "prophesee_evt2" / "faery_evt2_gen3_640x480.raw"
    proc = run_cli("replay", path, "--model", bundle, "--speed", "max", "--json")
    assert proc.returncode == 3
    assert "640x480" in proc.stderr and "2x34x34" in proc.stderr and "roi" in proc.stderr


def test_nmnist_replay_scores_only_the_given_files(tmp_path: Path, data_dir: Path) -> None:
    folder = data_dir / "dvs" / "nmnist"
    labels = folder / "labels.csv"
    rows = [r for r in csv.DictReader(labels.open()) if r["split"] == "test"][:12]
    files = [folder / r["file"] for r in rows]
    bundle = make_bundle(tmp_path / "bundle")
    proc = run_cli("replay", *files, "--model", bundle, "--labels", labels, "--speed", "max", "--json")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["files"] == s["decisions"] == s["scored"] == 12
    assert sum(c["n"] for c in s["per_class"].values()) == 12
    assert 0.0 <= s["accuracy"] <= 1.0
    assert s["events_read_per_s_wall"] > 0 and s["sops_per_s"] > 0
