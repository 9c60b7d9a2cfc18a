"""Fuzzing the model loader (models/bundle.py load_bundle) and its compile step (runtime/build.py prepare):
broken NIR files (damaged bytes, groups removed or reshaped), manifests that are damaged or lie about
shapes (labels vs outputs, encoder channels vs network inputs), and weights that do not fit the chip.
Every case loads or raises ModelError / CompileError (ConfigError for encoder settings) naming the bundle,
the file or the limit."""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from fuzz_util import FUZZ, guarded, mutated
from hypothesis import given
from hypothesis import strategies as st

from models.bundle import load_bundle, zoo_dir
from models.network import ModelError, Network, Population, Projection
from models.nir_io import write_network
from runtime.build import prepare
from runtime.chips.compile import CompileError
from runtime.config import ConfigError

ZOO = "radar-activity"
"""The smallest dense zoo model (snp crossbar, 72 inputs, 3 labels): the seed of every bundle here."""
MODEL_ERRORS = (ModelError, CompileError, ConfigError)


@functools.cache
def zoo_files() -> tuple[bytes, str]:
    root = zoo_dir() / ZOO
    return (root / "model.nir").read_bytes(), (root / "manifest.toml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model_fuzz")


def bundle(folder: Path, *, nir: bytes | None = None, manifest: str | bytes | None = None) -> Path:
    """A bundle folder named after the zoo model (so an error naming the folder or the model names it)."""
    root = folder / f"{ZOO}-copy"
    root.mkdir(parents=True, exist_ok=True)
    seed_nir, seed_manifest = zoo_files()
    (root / "model.nir").write_bytes(seed_nir if nir is None else nir)
    text = seed_manifest if manifest is None else manifest
    (root / "manifest.toml").write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return root


def load_and_prepare(root: Path) -> int:
    prep = prepare(str(root), None, mismatch=None, seed=0, strict=False)
    return prep.n_outputs


def test_seed_bundle_prepares(work: Path) -> None:
    assert load_and_prepare(bundle(work / "seed")) == 3


@FUZZ
@given(data=st.data())
def test_damaged_nir_bytes(work: Path, data: st.DataObject) -> None:
    root = bundle(work / "nir_bytes", nir=data.draw(mutated(zoo_files()[0], header_bytes=512)))
    guarded("model:nir_bytes", lambda: load_and_prepare(root), names=ZOO, allowed=MODEL_ERRORS)


def _h5_paths(data: bytes) -> list[str]:
    with tempfile.NamedTemporaryFile(suffix=".nir") as tmp:
        tmp.write(data)
        tmp.flush()
        with h5py.File(tmp.name, "r") as f:
            found: list[str] = []
            f.visit(found.append)
            return sorted(found)


@functools.cache
def nir_paths() -> tuple[str, ...]:
    return tuple(_h5_paths(zoo_files()[0]))


@FUZZ
@given(
    data=st.data(),
    action=st.sampled_from(["delete", "scalar", "string", "reshape", "transpose", "nan", "huge", "empty", "int"]),
)
def test_nir_structure(work: Path, data: st.DataObject, action: str) -> None:
    """A group or dataset of the NIR file removed, or replaced by a scalar, text, another shape, NaN, 10^300."""
    target = data.draw(st.sampled_from(nir_paths()))
    root = bundle(work / "nir_structure")
    with h5py.File(root / "model.nir", "r+") as f:
        node = f[target]
        old = node[()] if isinstance(node, h5py.Dataset) else None
        del f[target]
        if action == "scalar":
            f[target] = 3.0
        elif action == "string":
            f[target] = "CubaLIF"
        elif action == "int":
            f[target] = np.int64(2**62)
        elif action == "empty":
            f[target] = np.zeros((0,))
        elif action != "delete" and isinstance(old, np.ndarray) and old.dtype.kind in "fiu" and old.size:
            arr = old.astype(np.float64)
            if action == "reshape":
                arr = np.resize(arr, (arr.size + data.draw(st.integers(1, 5)),))
            elif action == "transpose":
                arr = arr.T if arr.ndim == 2 else arr[::-1][:-1]
            elif action == "nan":
                arr = arr.copy()
                arr.flat[data.draw(st.integers(0, arr.size - 1))] = np.nan
            else:
                arr = np.full_like(arr, 1e300)
            f[target] = arr
    guarded("model:nir_groups", lambda: load_and_prepare(root), names=ZOO, allowed=MODEL_ERRORS)


@FUZZ
@given(data=st.data())
def test_damaged_manifest(work: Path, data: st.DataObject) -> None:
    text = zoo_files()[1]
    root = bundle(work / "manifest_bytes", manifest=data.draw(mutated(text.encode("utf-8"), header_bytes=len(text))))
    guarded("model:manifest", lambda: load_and_prepare(root), names=ZOO, allowed=MODEL_ERRORS)


def _set_toml(text: str, key: str, value: str) -> str:
    """Replace ``key = ...`` (a single-line value) in ``text``; labels is replaced whole."""
    if key == "labels":
        return re.sub(r"labels = \[[^\]]*\]", f"labels = {value}", text, count=1)
    return re.sub(rf"(?m)^{re.escape(key)} = .*$", f"{key} = {value}", text, count=1)


@FUZZ
@given(
    n_labels=st.integers(0, 9),
    n_range=st.sampled_from(["12", "11", "1", "0", "-3", "100000", "1.5", '"x"']),
    temperature=st.sampled_from(["0.001", "0", "-1", "nan", "inf", "1e308"]),
    modality=st.sampled_from(['"radar"', '"audio"', '"ecg"', '"dvs"', '"lidar"']),
    target_chip=st.sampled_from(['"snp"', '"dynapse2"', '"dynapcnn"', '"nope"', '"../../etc/passwd"']),
)
def test_manifest_lies(
    work: Path, n_labels: int, n_range: str, temperature: str, modality: str, target_chip: str
) -> None:
    """Labels that do not match the outputs, an encoder that does not match the inputs, another modality/chip."""
    text = zoo_files()[1]
    text = _set_toml(text, "labels", "[" + ", ".join(f'"l{i}"' for i in range(n_labels)) + "]")
    for key, value in (("n_range", n_range), ("temperature", temperature), ("modality", modality)):
        text = _set_toml(text, key, value)
    text = _set_toml(text, "target_chip", target_chip)
    root = bundle(work / "lies", manifest=text)
    outcome = guarded("model:manifest", lambda: load_and_prepare(root), names=ZOO, allowed=MODEL_ERRORS)
    truthful = n_labels == 3 and n_range == "12" and temperature in ("0.001", "1e308")
    if not (truthful and modality == '"radar"' and target_chip in ('"snp"', '"dynapse2"')):
        assert outcome.error is not None, f"a lying manifest was accepted: {text}"


def _net(n_inputs: int, n_hidden: int, n_out: int) -> Network:
    rng = np.random.default_rng(1)

    def pop(name: str, n: int, thr: float) -> Population:
        return Population(name, n, np.full(n, 5e-3), np.full(n, 20e-3), np.ones(n), np.zeros(n), np.full(n, thr),
                          np.zeros(n))  # fmt: skip

    return Network(
        n_inputs,
        (pop("hidden", n_hidden, 1.0), pop("out", n_out, np.inf)),
        (
            Projection("fc_in", "input", "hidden", rng.normal(0, 0.1, (n_hidden, n_inputs))),
            Projection("fc_out", "hidden", "out", rng.normal(0, 0.1, (n_out, n_hidden))),
        ),
        "out",
    )


@FUZZ
@given(
    n_hidden=st.sampled_from([8, 200, 253, 254, 600]),
    n_inputs=st.sampled_from([72, 256, 257, 400]),
    chip=st.sampled_from(["snp", "dynapse2"]),
)
def test_weights_that_do_not_fit(work: Path, n_hidden: int, n_inputs: int, chip: str) -> None:
    """Too many neurons, inputs or synapses for the chip: a CompileError naming the limit, before anything runs."""
    root = bundle(work / "too_big")
    write_network(_net(n_inputs, n_hidden, 3), root / "model.nir")
    text = _set_toml(zoo_files()[1], "target_chip", f'"{chip}"')
    (root / "manifest.toml").write_text(text)
    outcome = guarded("model:fit", lambda: load_and_prepare(root), names=None, allowed=MODEL_ERRORS)
    if outcome.error is not None:
        message = str(outcome.error)
        assert "limit" in message or "encoder makes" in message, message
    if n_hidden + 3 > 256 and chip == "snp":
        assert isinstance(outcome.error, CompileError), "a network beyond the snp's 256 neurons compiled"
        assert "limit 'neurons'" in str(outcome.error)


def test_manifest_not_utf8(work: Path) -> None:
    root = bundle(work / "latin1", manifest=zoo_files()[1].replace("presence", "pr\u00e9sence").encode("latin-1"))
    outcome = guarded("model:manifest", lambda: load_bundle(str(root)), names=str(root), allowed=MODEL_ERRORS)
    assert outcome.error is not None


def test_bundle_without_files(work: Path) -> None:
    root = work / "empty_bundle"
    root.mkdir()
    assert guarded("model:manifest", lambda: load_bundle(str(root)), names=str(root), allowed=MODEL_ERRORS).error
    shutil.copy(zoo_dir() / ZOO / "manifest.toml", root / "manifest.toml")
    assert guarded("model:nir_bytes", lambda: load_bundle(str(root)), names=str(root), allowed=MODEL_ERRORS).error


def test_regressions_name_the_bundle(work: Path) -> None:
    """Found by the fuzzer: a NaN parameter named only the node, an unknown target_chip only the chip, and a
    CompileError only the chip; each now names the model file, the manifest or the bundle."""
    root = bundle(work / "nan_node")
    with h5py.File(root / "model.nir", "r+") as f:
        r = f["node/nodes/hidden/r"][()]
        del f["node/nodes/hidden/r"]
        f["node/nodes/hidden/r"] = np.full_like(np.asarray(r, dtype=np.float64), np.nan)
    error = guarded("model:nir_groups", lambda: load_and_prepare(root), names=str(root / "model.nir"),
                    allowed=MODEL_ERRORS).error  # fmt: skip
    assert error is not None and "NaN" in str(error)
    root = bundle(work / "unknown_chip", manifest=_set_toml(zoo_files()[1], "target_chip", '"nope"'))
    error = guarded("model:manifest", lambda: load_and_prepare(root), names=str(root / "manifest.toml"),
                    allowed=MODEL_ERRORS).error  # fmt: skip
    assert isinstance(error, ModelError) and "target_chip" in str(error)
    root = bundle(work / "too_many")
    write_network(_net(72, 400, 3), root / "model.nir")
    error = guarded("model:fit", lambda: load_and_prepare(root), names=str(root), allowed=MODEL_ERRORS).error
    assert isinstance(error, CompileError) and "limit 'neurons'" in str(error)
