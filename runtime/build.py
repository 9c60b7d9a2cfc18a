"""Assemble pipelines from configuration, checking everything before anything starts.

A wrong field, a model that does not load, a network that does not fit its chip, or an
encoder that does not match the model's inputs is reported here, naming the pipeline,
rather than minutes later from inside a running stage.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.bundle import Bundle, load_bundle
from models.network import ModelError
from runtime.chips.compile import Compiled, compile_network
from runtime.chips.crossbar import CrossbarChip
from runtime.chips.profile import load_profile
from runtime.config import AudioFileSourceConfig, ConfigError, MicrophoneSourceConfig, PipelineConfig, ReadoutConfig
from runtime.pipeline import Encoder, OnDecision, Pipeline, PipelineInfo
from runtime.readout import Mode, Readout, ReadoutSettings
from runtime.sinks.base import Sink
from sensors.audio.encoder import AudioEncoder, AudioEncoderConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A model compiled for its chip, ready to be given sources."""

    bundle: Bundle
    compiled: Compiled
    encoder_config: AudioEncoderConfig


def prepare(model: str, chip: str | None, *, mismatch: bool | None, seed: int, strict: bool) -> Prepared:
    """Load, check and compile; raises ModelError, CompileError or ConfigError."""
    bundle = load_bundle(model)
    info = bundle.manifest.model
    if info.modality != "audio":
        msg = f"model {bundle.ident}: modality {info.modality!r} has no encoder in this version (only 'audio')"
        raise ModelError(msg)
    profile = load_profile(chip or info.target_chip)
    compiled = compile_network(bundle.network, profile, mismatch=mismatch, seed=seed, strict=strict)
    for warning in compiled.report.warnings:
        log.warning("model %s on %s: %s", bundle.ident, profile.name, warning)
    try:
        enc = AudioEncoderConfig(**bundle.manifest.encoder)
    except (TypeError, ValueError) as exc:
        msg = f"{bundle.path / 'manifest.toml'}: [encoder]: {exc}"
        raise ModelError(msg) from exc
    if enc.n_channels != compiled.n_in:
        msg = (
            f"model {bundle.ident}: the encoder makes {enc.n_channels} channels but the network "
            f"takes {compiled.n_in} inputs"
        )
        raise ModelError(msg)
    return Prepared(bundle, compiled, enc)


def readout_for(prep: Prepared, cfg: ReadoutConfig, mode: Mode | None = None) -> Readout:
    spec = prep.bundle.manifest.readout
    fields = cfg.model_dump()
    fields["mode"] = mode or cfg.mode
    settings = ReadoutSettings(kind=spec.kind, temperature=spec.temperature, n_inputs=prep.compiled.n_in, **fields)
    return Readout(settings, prep.compiled.out_hi - prep.compiled.out_lo)


def file_source(
    cfg: AudioFileSourceConfig, prep: Prepared, labels: Mapping[str, str] | None = None, on_error: str = "raise"
) -> Any:
    from sensors.audio.file import AudioFileSource

    return AudioFileSource(
        cfg.paths,
        rate_hz=prep.encoder_config.rate_hz,
        block_ms=cfg.block_ms,
        speed=None if cfg.speed == "max" else float(cfg.speed),
        loop=cfg.loop,
        channel=cfg.channel,
        labels=labels,
        on_error=on_error,  # type: ignore[arg-type]
    )


def microphone_source(cfg: MicrophoneSourceConfig, prep: Prepared) -> Any:
    from sensors.audio.mic import MicrophoneSource

    return MicrophoneSource(
        device=cfg.device,
        rate_hz=prep.encoder_config.rate_hz,
        capture_rate_hz=cfg.rate_hz,
        block_ms=cfg.block_ms,
        queue_blocks=cfg.queue_blocks,
        channel=cfg.channel,
    )


def build_pipeline(
    cfg: PipelineConfig,
    device: str,
    sinks: Sequence[Sink],
    *,
    labels: Mapping[str, str] | None = None,
    on_error: str = "raise",
    on_decision: OnDecision | None = None,
) -> Pipeline:
    prep = prepare(cfg.model, cfg.chip, mismatch=cfg.mismatch, seed=cfg.seed, strict=cfg.strict)
    source: Any
    if isinstance(cfg.source, AudioFileSourceConfig):
        source = file_source(cfg.source, prep, labels, on_error)
        source_desc = ", ".join(str(p) for p in cfg.source.paths)
    else:
        source = microphone_source(cfg.source, prep)
        source_desc = f"microphone {cfg.source.device if cfg.source.device is not None else 'default'}"
    info = PipelineInfo(
        name=cfg.name,
        device=device,
        model=prep.bundle.ident,
        chip=prep.compiled.profile.name,
        labels=prep.bundle.manifest.labels,
        source=source_desc,
    )
    encoder: Encoder = AudioEncoder(prep.encoder_config)
    return Pipeline(
        info,
        source,
        encoder,
        CrossbarChip(prep.compiled),
        readout_for(prep, cfg.readout),
        sinks,
        telemetry_interval_s=cfg.telemetry_interval_s,
        queue_blocks=cfg.queue_blocks,
        on_decision=on_decision,
    )


def read_labels(csv_path: Path, column: str) -> dict[str, str]:
    """``file`` column (relative to the CSV's folder) -> label, keyed by resolved path."""
    import csv

    try:
        with csv_path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            if "file" not in fields or column not in fields:
                msg = f"{csv_path}: needs columns 'file' and {column!r}; it has {', '.join(fields) or 'none'}"
                raise ConfigError(msg)
            return {str((csv_path.parent / row["file"]).resolve()): row[column] for row in reader}
    except FileNotFoundError as exc:
        msg = f"{csv_path}: labels file not found"
        raise ConfigError(msg) from exc
