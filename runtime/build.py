"""Assemble pipelines from configuration, checking everything before anything starts.

A wrong field, a model that does not load, a network that does not fit its chip, or an
encoder that does not match the model's inputs is reported here, naming the pipeline,
rather than minutes later from inside a running stage.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from models.bundle import Bundle, load_bundle
from models.convnet import ConvNet
from models.network import ModelError
from runtime.chips.base import Chip
from runtime.chips.compile import Compiled, CompileError, compile_network
from runtime.chips.crossbar import CrossbarChip
from runtime.chips.dynapcnn import CompiledConv, DynapcnnChip, compile_convnet
from runtime.chips.dynapse2.chip import Dynapse2Chip
from runtime.chips.dynapse2.compile import Dynapse2Compiled, compile_dynapse2
from runtime.chips.profile import AdexCoreProfile, ConvCoreProfile, CrossbarProfile, load_profile
from runtime.config import (
    AudioFileSourceConfig,
    ConfigError,
    DvsCameraSourceConfig,
    DvsFileSourceConfig,
    DvsUdpSourceConfig,
    EcgFileSourceConfig,
    EcgSerialSourceConfig,
    EcgUdpSourceConfig,
    MicrophoneSourceConfig,
    PipelineConfig,
    RadarFileSourceConfig,
    RadarUdpSourceConfig,
    ReadoutConfig,
    format_validation_error,
)
from runtime.pipeline import Encoder, OnDecision, Pipeline, PipelineInfo
from runtime.readout import Mode, Readout, ReadoutSettings
from runtime.sinks.base import Sink
from sensors.address import parse_host_port
from sensors.audio.encoder import AudioEncoder, AudioEncoderConfig
from sensors.dvs.frontend import DvsFrontEnd, check_sensor
from sensors.dvs.preprocess_config import DvsPreprocessConfig
from sensors.ecg.encoder_config import EcgEncoderConfig
from sensors.radar.encoder_config import RadarEncoderConfig
from sensors.retry import RetryingSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A model compiled for its chip, ready to be given sources."""

    bundle: Bundle
    compiled: Compiled | CompiledConv | Dynapse2Compiled
    encoder_config: AudioEncoderConfig | DvsPreprocessConfig | EcgEncoderConfig | RadarEncoderConfig

    @property
    def n_outputs(self) -> int:
        c = self.compiled
        return c.n_out if isinstance(c, CompiledConv) else c.out_hi - c.out_lo

    def make_chip(self) -> Chip:
        if isinstance(self.compiled, CompiledConv):
            return DynapcnnChip(self.compiled)
        if isinstance(self.compiled, Dynapse2Compiled):
            return Dynapse2Chip(self.compiled)
        return CrossbarChip(self.compiled)


def _compile(
    bundle: Bundle, chip: str | None, *, mismatch: bool | None, seed: int, strict: bool
) -> Compiled | CompiledConv | Dynapse2Compiled:
    info = bundle.manifest.model
    if chip is None:
        try:
            profile = load_profile(info.target_chip)
        except ConfigError as exc:  # the manifest's chip, not the config's: name the manifest (fuzz suite)
            msg = f"{bundle.path / 'manifest.toml'}: model.target_chip: {exc}"
            raise ModelError(msg) from exc
    else:
        profile = load_profile(chip)
    net = bundle.network
    if isinstance(net, ConvNet):
        if not isinstance(profile, ConvCoreProfile):
            msg = (
                f"model {bundle.ident} is a convolutional network; chip {profile.name!r} runs "
                f"{profile.kernel} networks (use a convolutional chip such as 'dynapcnn')"
            )
            raise ModelError(msg)
        conv = compile_convnet(net, profile)
        for warning in conv.report.warnings:
            log.warning("model %s on %s: %s", bundle.ident, profile.name, warning)
        return conv
    if isinstance(profile, AdexCoreProfile):
        adex = compile_dynapse2(net, profile, mismatch=mismatch, seed=seed, **_chip_options(bundle))
        for warning in adex.report.warnings:
            log.warning("model %s on %s: %s", bundle.ident, profile.name, warning)
        return adex
    if not isinstance(profile, CrossbarProfile):
        msg = (
            f"model {bundle.ident} is a dense recurrent network; chip {profile.name!r} runs "
            f"{profile.kernel} networks (use a crossbar chip such as 'snp' or 'dynapse2')"
        )
        raise ModelError(msg)
    compiled = compile_network(net, profile, mismatch=mismatch, seed=seed, strict=strict)
    for warning in compiled.report.warnings:
        log.warning("model %s on %s: %s", bundle.ident, profile.name, warning)
    return compiled


def _chip_options(bundle: Bundle) -> dict[str, Any]:
    """Per-population chip settings a CubaLIF network cannot express (manifest ``[chip]``)."""
    opts = dict(bundle.manifest.chip)
    unknown = set(opts) - {"nmda", "refractory_s", "ahp_weight_a"}
    if unknown:
        msg = f"{bundle.path / 'manifest.toml'}: [chip] has unknown setting(s) {sorted(unknown)}"
        raise ModelError(msg)
    return opts


def prepare(model: str, chip: str | None, *, mismatch: bool | None, seed: int, strict: bool) -> Prepared:
    """Load, check and compile; raises ModelError, CompileError or ConfigError."""
    bundle = load_bundle(model)
    try:
        compiled = _compile(bundle, chip, mismatch=mismatch, seed=seed, strict=strict)
    except CompileError as exc:  # the compilers know the network, not the bundle: name it
        raise CompileError(exc.chip, exc.problems, model=f"{bundle.ident} ({bundle.path})") from exc
    modality = bundle.manifest.model.modality
    where = f"{bundle.path / 'manifest.toml'}: [encoder]"
    if modality == "dvs":
        try:
            return Prepared(bundle, compiled, DvsPreprocessConfig.model_validate(bundle.manifest.encoder))
        except ValidationError as exc:
            raise ModelError(format_validation_error(exc, where)) from exc
    if modality not in ("audio", "ecg", "radar"):
        msg = f"model {bundle.ident}: modality {modality!r} has no encoder in this version (audio, dvs, ecg, radar)"
        raise ModelError(msg)
    enc: AudioEncoderConfig | EcgEncoderConfig | RadarEncoderConfig
    try:
        if modality == "ecg":
            enc = EcgEncoderConfig.model_validate(bundle.manifest.encoder)
        elif modality == "radar":
            enc = RadarEncoderConfig.model_validate(bundle.manifest.encoder)
        else:
            enc = AudioEncoderConfig(**bundle.manifest.encoder)
    except ValidationError as exc:
        raise ModelError(format_validation_error(exc, where)) from exc
    except (TypeError, ValueError) as exc:
        msg = f"{where}: {exc}"
        raise ModelError(msg) from exc
    if enc.n_channels != compiled.n_in:
        msg = (
            f"model {bundle.ident}: the encoder makes {enc.n_channels} channels but the network "
            f"takes {compiled.n_in} inputs"
        )
        raise ModelError(msg)
    return Prepared(bundle, compiled, enc)


def readout_for(prep: Prepared, cfg: ReadoutConfig, mode: Mode | None = None) -> Readout:
    """Readout settings: the pipeline's own fields win over the model's, which win over the defaults."""
    spec = prep.bundle.manifest.readout
    merged: dict[str, Any] = dict(spec.settings)
    if spec.mode is not None:
        merged["mode"] = spec.mode
    merged.update(cfg.model_dump(include=cfg.model_fields_set))
    try:
        fields = ReadoutConfig(**merged).model_dump()
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"model {prep.bundle.ident}: readout settings")) from exc
    if mode is not None:
        fields["mode"] = mode
    offsets = tuple(spec.offsets) if spec.offsets is not None else None
    settings = ReadoutSettings(
        kind=spec.kind, temperature=spec.temperature, n_inputs=prep.compiled.n_in, offsets=offsets, **fields
    )
    return Readout(settings, prep.n_outputs, len(prep.bundle.manifest.labels))


def file_source(
    cfg: AudioFileSourceConfig, prep: Prepared, labels: Mapping[str, str] | None = None, on_error: str = "raise"
) -> Any:
    from sensors.audio.file import AudioFileSource

    assert isinstance(prep.encoder_config, AudioEncoderConfig)
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

    assert isinstance(prep.encoder_config, AudioEncoderConfig)
    return MicrophoneSource(
        device=cfg.device,
        rate_hz=prep.encoder_config.rate_hz,
        capture_rate_hz=cfg.rate_hz,
        block_ms=cfg.block_ms,
        queue_blocks=cfg.queue_blocks,
        channel=cfg.channel,
    )


def dvs_preprocess(
    cfg: DvsFileSourceConfig | DvsUdpSourceConfig | DvsCameraSourceConfig, prep: Prepared
) -> DvsPreprocessConfig:
    """The source's own pre-processing if it sets one, else the model's."""
    if cfg.preprocess is not None:
        return cfg.preprocess
    assert isinstance(prep.encoder_config, DvsPreprocessConfig)
    return prep.encoder_config


def dvs_file_source(
    cfg: DvsFileSourceConfig, prep: Prepared, labels: Mapping[str, str] | None = None, on_error: str = "raise"
) -> Any:
    from sensors.dvs.source import EventFileSource

    assert isinstance(prep.compiled, CompiledConv)
    pre = dvs_preprocess(cfg, prep)
    return EventFileSource(
        cfg.paths,
        block_ms=cfg.block_ms,
        speed=None if cfg.speed == "max" else float(cfg.speed),
        loop=cfg.loop,
        sensor_size=cfg.sensor_size,
        fmt=None if cfg.format == "auto" else cfg.format,
        labels=labels,
        on_error=on_error,  # type: ignore[arg-type]
        check_sensor=functools.partial(check_sensor, pre, prep.compiled.input_shape),
    )


def _source_and_encoder(
    cfg: PipelineConfig, prep: Prepared, labels: Mapping[str, str] | None, on_error: str
) -> tuple[Any, Encoder, str]:
    modality = prep.bundle.manifest.model.modality
    src = cfg.source
    wants = src.kind.split("_")[0] if src.kind.startswith(("dvs", "ecg", "radar")) else "audio"
    if wants != modality:
        msg = f"pipeline {cfg.name}: a {src.kind} source cannot feed model {prep.bundle.ident} ({modality} input)"
        raise ConfigError(msg)
    if isinstance(src, EcgFileSourceConfig | EcgSerialSourceConfig | EcgUdpSourceConfig):
        return _ecg_source_and_encoder(src, prep, labels, on_error)
    if isinstance(src, RadarFileSourceConfig | RadarUdpSourceConfig):
        return _radar_source_and_encoder(src, prep, labels, on_error)
    if isinstance(src, DvsFileSourceConfig | DvsUdpSourceConfig | DvsCameraSourceConfig):
        assert isinstance(prep.compiled, CompiledConv)
        front = DvsFrontEnd(dvs_preprocess(src, prep), prep.compiled.input_shape)
        if isinstance(src, DvsUdpSourceConfig):
            from sensors.dvs.udp import UdpEventSource

            host, port = parse_host_port(src.listen, min_port=0)
            dvs_udp = src

            def open_udp() -> UdpEventSource:
                return UdpEventSource(
                    host,
                    port,
                    block_ms=dvs_udp.block_ms,
                    queue_blocks=dvs_udp.queue_blocks,
                    idle_flush_ms=dvs_udp.idle_flush_ms,
                )

            desc = f"udp://{host}:{port}"
            return RetryingSource(open_udp, name=desc), front, desc
        if isinstance(src, DvsCameraSourceConfig):
            from sensors.dvs.dv import DvCameraSource

            cam = DvCameraSource(src.camera, network=src.network, block_ms=src.block_ms, queue_blocks=src.queue_blocks)
            return cam, front, cam.stream
        return dvs_file_source(src, prep, labels, on_error), front, ", ".join(str(p) for p in src.paths)
    assert isinstance(prep.encoder_config, AudioEncoderConfig)
    encoder = AudioEncoder(prep.encoder_config)
    if isinstance(src, AudioFileSourceConfig):
        return file_source(src, prep, labels, on_error), encoder, ", ".join(str(p) for p in src.paths)
    desc = f"microphone {src.device if src.device is not None else 'default'}"
    mic = src
    return RetryingSource(lambda: microphone_source(mic, prep), name=desc), encoder, desc


def _radar_source_and_encoder(
    src: RadarFileSourceConfig | RadarUdpSourceConfig,
    prep: Prepared,
    labels: Mapping[str, str] | None,
    on_error: str,
) -> tuple[Any, Encoder, str]:
    from sensors.radar.encode import RadarEncoder
    from sensors.radar.file_config import radar_file_source
    from sensors.radar.live_config import radar_udp_source

    assert isinstance(prep.encoder_config, RadarEncoderConfig)
    encoder = RadarEncoder(prep.encoder_config)
    if isinstance(src, RadarUdpSourceConfig):
        udp, desc = src, f"udp {src.listen}"
        return RetryingSource(lambda: radar_udp_source(udp), name=desc), encoder, desc
    source = radar_file_source(src, labels, on_error)  # type: ignore[arg-type]
    return source, encoder, ", ".join(str(p) for p in src.paths)


def _ecg_source_and_encoder(
    src: EcgFileSourceConfig | EcgSerialSourceConfig | EcgUdpSourceConfig,
    prep: Prepared,
    labels: Mapping[str, str] | None,
    on_error: str,
) -> tuple[Any, Encoder, str]:
    from sensors.ecg.encode import EcgEncoder
    from sensors.ecg.file_config import ecg_file_source
    from sensors.ecg.live_config import ecg_serial_source, ecg_udp_source

    assert isinstance(prep.encoder_config, EcgEncoderConfig)
    enc = prep.encoder_config
    source: Any
    if isinstance(src, EcgSerialSourceConfig):
        serial, desc = src, f"serial {src.port}"
        source = RetryingSource(lambda: ecg_serial_source(serial, model_rate_hz=enc.rate_hz), name=desc)
    elif isinstance(src, EcgUdpSourceConfig):
        udp, desc = src, f"udp {src.listen}"
        source = RetryingSource(lambda: ecg_udp_source(udp, model_rate_hz=enc.rate_hz), name=desc)
    else:
        source = ecg_file_source(src, enc.rate_hz, labels, on_error)  # type: ignore[arg-type]
        desc = ", ".join(str(p) for p in src.paths)
    return source, EcgEncoder(enc), desc


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
    source, encoder, source_desc = _source_and_encoder(cfg, prep, labels, on_error)
    info = PipelineInfo(
        name=cfg.name,
        device=device,
        model=prep.bundle.ident,
        chip=prep.compiled.profile.name,
        labels=prep.bundle.manifest.labels,
        source=source_desc,
    )
    readout = readout_for(prep, cfg.readout)
    batch_ms = readout.s.batch_ms
    return Pipeline(
        info,
        source,
        encoder,
        prep.make_chip(),
        readout,
        sinks,
        telemetry_interval_s=cfg.telemetry_interval_s,
        queue_blocks=cfg.queue_blocks,
        on_decision=on_decision,
        batch_us=round(batch_ms * 1000) if batch_ms else None,
    )


def read_labels(csv_path: Path, column: str) -> dict[str, str]:
    """``file`` column (relative to the CSV's folder) -> label, keyed by resolved path.

    A carriage return that does not end a line (seen in a real dataset's labels file,
    ``1\r,train,...``) is removed with a warning rather than splitting the row in two.
    """
    import csv
    import io

    try:
        text = csv_path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        msg = f"{csv_path}: labels file not found"
        raise ConfigError(msg) from exc
    text = text.replace("\r\n", "\n")
    stray = text.count("\r")
    if stray:
        log.warning("%s: removed %d stray carriage return(s) inside rows", csv_path, stray)
        text = text.replace("\r", "")
    reader = csv.DictReader(io.StringIO(text))
    fields = reader.fieldnames or []
    if "file" not in fields or column not in fields:
        msg = f"{csv_path}: needs columns 'file' and {column!r}; it has {', '.join(fields) or 'none'}"
        raise ConfigError(msg)
    return {str((csv_path.parent / row["file"]).resolve()): row[column].strip() for row in reader}
