"""Chip profiles: limits, precision and energy constants as data, each with its provenance.

A profile is a TOML file validated against one of the ``ChipProfile`` models, chosen by its
``kernel`` field: ``CrossbarProfile`` (``cuba_lif_crossbar``, e.g. ``snp``) or
``ConvCoreProfile`` (``iaf_conv_cores``, e.g. ``dynapcnn``). The built-in ones live in
``runtime/chips/profiles/``. A user's file with the same schema describes a new chip (or a
variant with other limits) without a code change: ``--chip path/to/mychip.toml``.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from runtime.config import ConfigError

Provenance = Literal["seed datasheet", "vendor simulator", "paper", "assumed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sourced(_Model):
    """A number and where it comes from."""

    value: float
    source: Provenance
    note: str = ""


class Limits(_Model):
    neurons: Sourced = Field(description="Neurons on the chip (all populations).")
    synapses: Sourced = Field(description="Synapses (non-zero crossbar entries after quantisation).")
    inputs: Sourced = Field(description="Input channels (spike sources from the encoder).")
    model_bytes: Sourced = Field(description="Weight memory; a soft limit (warning) unless strict.")


class Precision(_Model):
    weight_bits: Sourced = Field(description="Signed weight width; levels are -(2^(b-1)-1)..2^(b-1)-1.")


class Timing(_Model):
    tick_us: Sourced = Field(description="Emulation step of the neuron dynamics.")
    layer_latency_us: Sourced = Field(description="Latency added by each synaptic layer an event crosses.")


class Energy(_Model):
    static_mw: Sourced = Field(description="Power drawn with no activity.")
    sop_pj: Sourced = Field(description="Energy per synaptic operation.")
    update_pj: Sourced = Field(description="Energy per neuron state update.")
    spike_pj: Sourced = Field(description="Energy per emitted spike.")


class Mismatch(_Model):
    enabled: bool = Field(description="Default for pipelines that do not say.")
    weight_sigma: Sourced = Field(description="Relative std of each synapse's weight.")
    threshold_sigma: Sourced = Field(description="Relative std of each neuron's threshold.")
    tau_sigma: Sourced = Field(description="Relative std of each neuron's time constants.")


class _Profile(_Model):
    """What every profile says about itself; ``kernel`` (in each kind) picks the emulator."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    title: str
    neuron_model: str
    energy: Energy


class CrossbarProfile(_Profile):
    kernel: Literal["cuba_lif_crossbar"] = Field(description="Which emulator kernel runs it.")
    limits: Limits
    precision: Precision
    timing: Timing
    mismatch: Mismatch


class Core(_Model):
    kernel_memory: Sourced = Field(description="Kernel (weight) memory entries of this core.")
    neuron_memory: Sourced = Field(description="Neuron (state) memory entries of this core.")


class Choices(_Model):
    """A set of allowed values and where it comes from."""

    values: tuple[int, ...] = Field(min_length=1)
    source: Provenance
    note: str = ""


class ConvLimits(_Model):
    kernel_size: Sourced = Field(description="Largest square kernel side.")
    strides: Choices = Field(description="Allowed strides (each axis).")
    padding: Sourced = Field(description="Largest padding (each axis).")
    output_map: Sourced = Field(description="Largest side of a core's neuron map (before pooling).")
    channels: Sourced = Field(description="Most output channels (features) of one core.")
    destinations: Sourced = Field(description="Destination cores one core can send to.")
    readout_classes: Sourced = Field(description="Most classes the last layer may output.")
    pools: Choices = Field(description="Allowed sum-pool sizes.")
    input_size: Sourced = Field(description="Largest side of the DVS input map.")
    input_channels: Sourced = Field(description="Most input (polarity) channels.")


class ConvPrecision(_Model):
    weight_bits: Sourced = Field(description="Signed weight width; levels are -(2^(b-1)-1)..2^(b-1)-1.")
    state_bits: Sourced = Field(description="Signed neuron state width; the state saturates at its range.")
    state_floor: Sourced = Field(description="Lowest state (the floor used when a layer sets none).")


class ConvTiming(_Model):
    step_us: Sourced = Field(description="Events whose timestamps fall in the same step are processed together.")
    layer_latency_us: Sourced = Field(description="Latency added by each core an event crosses.")


class ConvCoreProfile(_Profile):
    kernel: Literal["iaf_conv_cores"] = Field(description="Which emulator kernel runs it.")
    cores: tuple[Core, ...] = Field(min_length=1)
    limits: ConvLimits
    precision: ConvPrecision
    timing: ConvTiming


ChipProfile = Annotated[CrossbarProfile | ConvCoreProfile, Field(discriminator="kernel")]
"""Any chip profile; ``kernel`` says which model (and which emulator) applies."""

_ADAPTER: TypeAdapter[CrossbarProfile | ConvCoreProfile] = TypeAdapter(ChipProfile)
_KERNELS = ("cuba_lif_crossbar", "iaf_conv_cores")
_BUILTIN = resources.files("runtime.chips") / "profiles"


def builtin_profiles() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in _BUILTIN.iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str) -> ChipProfile:
    """Load a built-in profile by name, or a user's TOML file by path."""
    if name_or_path in builtin_profiles():
        text = (_BUILTIN / f"{name_or_path}.toml").read_text(encoding="utf-8")
        origin = f"chip profile {name_or_path!r}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            msg = f"chip {name_or_path!r}: neither a built-in profile ({', '.join(builtin_profiles())}) nor a TOML file"
            raise ConfigError(msg)
        text = path.read_text(encoding="utf-8")
        origin = str(path)
    try:
        return _ADAPTER.validate_python(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        msg = f"{origin}: not valid TOML: {exc}"
        raise ConfigError(msg) from exc
    except ValidationError as exc:
        raise ConfigError(_format(exc, origin)) from exc


def _format(exc: ValidationError, origin: str) -> str:
    # The union puts the kernel tag in front of every path ("iaf_conv_cores.limits..."):
    # drop it, the user's file has no such level.
    lines = [f"{origin}: {exc.error_count()} problem(s)"]
    for err in exc.errors():
        loc: tuple[Any, ...] = err["loc"]
        if loc and loc[0] in _KERNELS:
            loc = loc[1:]
        msg = err["msg"]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc, msg = ("kernel",), f"must be one of {', '.join(repr(k) for k in _KERNELS)}"
        path = ".".join(str(p) for p in loc) or "(top level)"
        lines.append(f"  {path}: {msg}")
    return "\n".join(lines)
