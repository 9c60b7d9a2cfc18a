"""Model bundles: a directory with ``model.nir`` (the network) and ``manifest.toml``.

The manifest says what the network needs around it (modality, encoder settings, labels,
readout, target chip) and what it was validated with. Bundles are found by name in the
zoo (``models/zoo/<name>``) or by path.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.convnet import ConvNet
from models.network import ModelError, Network
from models.nir_conv import graph_is_conv, graph_to_convnet
from models.nir_io import check_graph_types, graph_to_network, read_graph

_T = TypeVar("_T")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelInfo(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    version: str
    description: str = ""
    modality: Literal["audio", "ecg", "radar", "dvs"]
    target_chip: str = Field(description="Chip profile the model was trained and quantised for.")
    license: str = ""


class ReadoutSpec(_Model):
    kind: Literal["membrane_mean", "membrane_max", "spike_count", "membrane_rise"] = Field(
        description=(
            "membrane_mean / membrane_max: mean / maximum membrane of each output neuron over the window; "
            "spike_count: its spikes; membrane_rise: the window's mean minus the mean over the batch before it "
            "(cancels each analog neuron's own resting level)."
        )
    )
    temperature: float = Field(1.0, gt=0, description="scores = softmax(readout / temperature).")
    offsets: list[float] | None = Field(
        None,
        description=(
            "Subtracted from each label's readout before the softmax: a calibration for one analog chip "
            "instance, whose neurons rest and gain differently (mismatch)."
        ),
    )
    mode: Literal["stream", "utterance", "window", "auto", "beat"] | None = Field(
        None, description="Readout mode the model was validated with; a pipeline's own readout.mode wins."
    )
    settings: dict[str, float] = Field(
        default_factory=dict,
        description="Readout settings the model was tuned with (e.g. activity_threshold); a pipeline's own win.",
    )


class Validation(_Model):
    dataset: str
    protocol: str
    chip: str
    accuracy: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    command: str = Field("", description="Command that reproduces the figure.")


class Manifest(_Model):
    model: ModelInfo
    labels: list[str] = Field(min_length=2)
    encoder: dict[str, Any] = Field(description="Settings passed to the modality's encoder config.")
    readout: ReadoutSpec
    validation: list[Validation] = Field(default_factory=list)
    training: dict[str, Any] = Field(default_factory=dict, description="Recipe and its settings, for the record.")
    chip: dict[str, Any] = Field(
        default_factory=dict,
        description="Chip settings the network format cannot say (dynapse2: nmda, refractory_s, ahp_weight_a).",
    )


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest
    network: Network | ConvNet
    """A ``ConvNet`` for conv graphs (Conv2d/IF nodes) and "dvs" models, else a ``Network``."""

    @property
    def ident(self) -> str:
        return f"{self.manifest.model.name}@{self.manifest.model.version}"


def zoo_dir() -> Path:
    return Path(str(resources.files("models") / "zoo"))


def zoo_names() -> list[str]:
    root = zoo_dir()
    return sorted(p.name for p in root.iterdir() if (p / "manifest.toml").is_file()) if root.is_dir() else []


def resolve(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if name_or_path in zoo_names():
        return zoo_dir() / name_or_path
    msg = f"model {name_or_path!r}: not a bundle directory and not in the zoo ({', '.join(zoo_names()) or 'empty'})"
    raise ModelError(msg)


def read_manifest(path: Path) -> Manifest:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        msg = f"{path}: manifest not found"
        raise ModelError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not valid TOML: {exc}"
        raise ModelError(msg) from exc
    except UnicodeDecodeError as exc:  # was a bare UnicodeDecodeError (found by the fuzz suite)
        msg = f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); TOML files must be UTF-8"
        raise ModelError(msg) from exc
    except OSError as exc:
        msg = f"{path}: cannot read manifest: {exc.strerror or exc}"
        raise ModelError(msg) from exc
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        msg = f"{path}: {problems}"
        raise ModelError(msg) from exc


def load_bundle(name_or_path: str) -> Bundle:
    root = resolve(name_or_path)
    manifest = read_manifest(root / "manifest.toml")
    model = root / "model.nir"
    graph = read_graph(model, type_check=False)  # read once; dense graphs are type-checked below
    if manifest.model.modality == "dvs" or _converted(model, lambda: graph_is_conv(graph)):
        net = _converted(model, lambda: graph_to_convnet(graph, str(model)))
        return Bundle(root, manifest, _checked_convnet(root, net, len(manifest.labels)))
    check_graph_types(graph, model)
    network = _converted(model, lambda: graph_to_network(graph, str(model)))
    n_out = network.population(network.output).size
    if n_out % len(manifest.labels):
        msg = (
            f"{root}: the output population has {n_out} neurons but the manifest lists {len(manifest.labels)} labels "
            "(it needs one neuron per label, or the same number per label for a population readout)"
        )
        raise ModelError(msg)
    return Bundle(root, manifest, network)


def _converted(model: Path, convert: Callable[[], _T]) -> _T:
    """``convert()`` with every failure a ModelError naming the file (node errors name only the node)."""
    try:
        return convert()
    except ModelError as exc:
        if str(model) in str(exc):
            raise
        raise ModelError(f"{model}: {exc}") from exc
    # Nodes hold whatever the file held: arrays of unexpected shapes, types or sizes (found by the fuzz suite).
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, ArithmeticError) as exc:
        msg = f"{model}: not a usable network ({type(exc).__name__}: {exc})"
        raise ModelError(msg) from exc


def _checked_convnet(root: Path, net: ConvNet, n_labels: int) -> ConvNet:
    out = net.layers[-1].out_shape
    if out[1:] != (1, 1):
        msg = f"{root / 'model.nir'}: the last layer outputs a {out} map; a classifier's must be (classes, 1, 1)"
        raise ModelError(msg)
    if net.n_outputs != n_labels:
        msg = f"{root}: the last layer has {net.n_outputs} output channels but the manifest lists {n_labels} labels"
        raise ModelError(msg)
    return net
