"""``--workers N`` and ``--executor ray|dask`` give the serial run's results (wall-clock figures aside)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
from replay_util import deterministic, fsdd_files, short_record

from runtime.replay import ReplayOptions, run_replay


def _fsdd(data_dir: Path, n: int) -> ReplayOptions:
    fsdd = data_dir / "audio" / "fsdd"
    return ReplayOptions(
        paths=fsdd_files(data_dir, n), model="kws-digits", labels_csv=fsdd / "labels.csv", label_column="digit"
    )


@pytest.mark.slow
def test_two_workers_equal_one_on_fsdd(data_dir: Path, tmp_path: Path) -> None:
    opts = _fsdd(data_dir, 40)
    serial = run_replay(opts)
    parallel = run_replay(dataclasses.replace(opts, workers=2, report_dir=tmp_path / "r"))
    assert serial["files"] == serial["decisions"] == serial["scored"] == 40
    assert deterministic(parallel) == deterministic(serial)
    # The merged report's records are the serial run's, in file order.
    doc = json.loads((tmp_path / "r" / "summary.json").read_text())
    names = [doc["report"]["files"][row[0]] for row in doc["report"]["decisions"]["rows"]]
    assert names == [str(p) for p in opts.paths]


@pytest.mark.slow
def test_two_workers_equal_one_on_ecg_beats(data_dir: Path, tmp_path: Path) -> None:
    records = [short_record(data_dir / "ecg" / "mitdb" / r, tmp_path / r, 45.0) for r in ("100", "208")]
    opts = ReplayOptions(paths=records, model="ecg-beats")
    serial = run_replay(opts)
    parallel = run_replay(dataclasses.replace(opts, workers=2))
    assert serial["annotated_records"] == ["100", "208"] and serial["beats"] > 100
    assert deterministic(parallel) == deterministic(serial)


def test_more_workers_than_files(data_dir: Path) -> None:
    opts = _fsdd(data_dir, 2)
    assert deterministic(run_replay(dataclasses.replace(opts, workers=4))) == deterministic(run_replay(opts))


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["dask", "ray"])
def test_executor_on_a_local_cluster_of_two(data_dir: Path, executor: str) -> None:
    module = "dask.distributed" if executor == "dask" else "ray"
    if importlib.util.find_spec(module.split(".")[0]) is None:
        pytest.skip(f"the '{executor}' extra is not installed (pip install -e '.[{executor}]')")
    opts = _fsdd(data_dir, 12)
    serial = run_replay(opts)
    remote = run_replay(dataclasses.replace(opts, workers=2, executor=executor))  # type: ignore[arg-type]
    assert deterministic(remote) == deterministic(serial)
    assert remote["files"] == 12
