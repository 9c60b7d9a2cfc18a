"""Chip profiles: limits, precision and energy constants as data, each with its provenance.

A profile is a TOML file validated against ``ChipProfile``; the built-in ones live in
``runtime/chips/profiles/``. A user's file with the same schema describes a new chip (or a
variant with other limits) without a code change: ``--chip path/to/mychip.toml``.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runtime.config import ConfigError, format_validation_error

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


class ChipProfile(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    title: str
    kernel: Literal["cuba_lif_crossbar"] = Field(description="Which emulator kernel runs it.")
    neuron_model: str
    limits: Limits
    precision: Precision
    timing: Timing
    energy: Energy
    mismatch: Mismatch


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
        return ChipProfile.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        msg = f"{origin}: not valid TOML: {exc}"
        raise ConfigError(msg) from exc
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin)) from exc
