"""Chip profiles: limits, precision and energy constants as data, each with its provenance.

A profile is a TOML file validated against one of the ``ChipProfile`` models, chosen by its
``kernel`` field: ``CrossbarProfile`` (``cuba_lif_crossbar``, e.g. ``snp``),
``ConvCoreProfile`` (``iaf_conv_cores``, e.g. ``dynapcnn``) or ``AdexCoreProfile``
(``adex_dpi_cores``, e.g. ``dynapse2``). The built-in ones live in
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


class Range(_Model):
    """An allowed interval and where it comes from."""

    min: float
    max: float
    source: Provenance
    note: str = ""

    def holds(self, value: float) -> bool:
        return self.min <= value <= self.max


class AdexLimits(_Model):
    chips: Sourced = Field(description="Chips a network may be placed on (2x2 grid).")
    cores_per_chip: Sourced = Field(description="Cores per chip; a core's neurons share one parameter set.")
    neurons_per_core: Sourced = Field(description="Neurons per core.")
    synapses_per_neuron: Sourced = Field(description="CAM entries (incoming synapses) per neuron.")
    destinations_per_neuron: Sourced = Field(description="Routing entries (destination chips) per neuron.")
    base_weights: Sourced = Field(description="Base weight currents per core; a synapse's mask selects a sum.")
    inputs: Sourced = Field(description="Input channels (virtual neurons fed from the host).")
    delay_classes_us: Choices = Field(description="Synaptic delay of each delay class (2 bits: 4 classes).")


class AdexRanges(_Model):
    """What one core's shared parameters may be set to."""

    tau_mem_s: Range
    tau_syn_s: Range = Field(description="AMPA, NMDA and GABA synapse time constants.")
    tau_ahp_s: Range
    refractory_s: Range
    spike_threshold_a: Range
    dc_a: Range
    weight_a: Range = Field(description="Each base weight current.")


class Circuit(_Model):
    """Physical constants of the subthreshold circuits (DynapSim's parametrisation)."""

    io_a: Sourced = Field(description="Dark current I0: no current goes below it.")
    ut_v: Sourced = Field(description="Thermal voltage U_T.")
    kappa_n: Sourced
    kappa_p: Sourced
    c_mem_f: Sourced
    c_ampa_f: Sourced
    c_nmda_f: Sourced
    c_gaba_f: Sourced
    c_ahp_f: Sourced


class CoreDefaults(_Model):
    """Settings the compiler uses where the network says nothing."""

    gain_ratio_mem: Sourced = Field(description="I_gain / I_tau of the membrane.")
    gain_ratio_syn: Sourced = Field(description="I_gain / I_tau of each synapse.")
    gain_ratio_ahp: Sourced
    pulse_s: Sourced = Field(description="Pulse width of a synaptic event (charges the DPI).")
    pulse_ahp_s: Sourced
    tau_ahp_s: Sourced
    refractory_s: Sourced
    nmda_gate_a: Sourced = Field(description="I_f of the NMDA voltage gate.")
    spike_threshold_factor: Sourced = Field(description="I_spkthr as a multiple of the ignition current.")
    readout_headroom: Sourced = Field(description="Non-spiking readout: rheobase in units of v = 1.")
    saturation_a: Sourced = Field(description="Upper bound of I_mem (the circuit leaves subthreshold).")


class Routing(_Model):
    hop_latency_us: Sourced = Field(description="Latency of one chip-to-chip hop.")
    hop_pj: Sourced = Field(description="Energy of routing one event over one chip-to-chip hop.")


class AdexMismatch(_Model):
    enabled: bool = Field(description="Default for pipelines that do not say.")
    bias_sigma: Sourced = Field(description="Relative std of each neuron's bias currents (taus, gains, threshold).")
    weight_sigma: Sourced = Field(description="Relative std of each synapse's weight current.")


class AdexCoreProfile(_Profile):
    kernel: Literal["adex_dpi_cores"] = Field(description="Which emulator kernel runs it.")
    limits: AdexLimits
    ranges: AdexRanges
    circuit: Circuit
    defaults: CoreDefaults
    timing: Timing
    routing: Routing
    mismatch: AdexMismatch


ChipProfile = Annotated[CrossbarProfile | ConvCoreProfile | AdexCoreProfile, Field(discriminator="kernel")]
"""Any chip profile; ``kernel`` says which model (and which emulator) applies."""

_ADAPTER: TypeAdapter[CrossbarProfile | ConvCoreProfile | AdexCoreProfile] = TypeAdapter(ChipProfile)
_KERNELS = ("cuba_lif_crossbar", "iaf_conv_cores", "adex_dpi_cores")
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
