"""Model switch for a running pipeline (the ``model`` control command).

The new bundle is loaded and compiled for the pipeline's chip, and its encoder is checked
against the pipeline's running source, *before* anything is swapped: a model that does not
fit is refused with the reason and the pipeline carries on with the old one. Only installed
bundles may be named: the zoo, plus the bundles the configuration lists
(``mqtt.control.models``), so a remote user cannot make the daemon load an arbitrary path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from models.bundle import zoo_names
from runtime.build import Prepared, dvs_preprocess, prepare, readout_for
from runtime.config import DvsCameraSourceConfig, DvsFileSourceConfig, DvsUdpSourceConfig, PipelineConfig
from runtime.pipeline import Encoder, ModelSwitch, Pipeline
from sensors.audio.encoder import AudioEncoder, AudioEncoderConfig
from sensors.dvs.preprocess_config import DvsPreprocessConfig
from sensors.ecg.encoder_config import EcgEncoderConfig
from sensors.radar.encoder_config import RadarEncoderConfig


class SwitchError(ValueError):
    """The model cannot replace the running one; the message says why."""


def installed_models(extra: Mapping[str, Path]) -> dict[str, str]:
    """Command name -> what ``prepare`` loads: zoo names, then the configured bundles by folder name."""
    out = {name: name for name in zoo_names()}
    out.update({name: str(path) for name, path in extra.items()})
    return out


def prepare_switch(cfg: PipelineConfig, pipeline: Pipeline, model: str, extra: Mapping[str, Path]) -> ModelSwitch:
    """Compile ``model`` for ``pipeline``'s chip and source; ``SwitchError`` names the problem."""
    installed = installed_models(extra)
    if model not in installed:
        msg = f"model {model!r} is not installed; installed: {', '.join(sorted(installed))}"
        raise SwitchError(msg)
    old = pipeline.info
    chip = cfg.chip or old.chip
    try:
        new = prepare(installed[model], chip, mismatch=cfg.mismatch, seed=cfg.seed, strict=cfg.strict)
        old_prep = prepare(cfg.model, chip, mismatch=cfg.mismatch, seed=cfg.seed, strict=cfg.strict)
    except Exception as exc:  # ModelError, CompileError, ConfigError: all carry a reason
        msg = f"model {model!r} cannot run on chip {chip!r}: {exc}"
        raise SwitchError(msg) from exc
    encoder = _encoder_for_source(cfg, old_prep, new)
    readout = readout_for(new, cfg.readout)
    batch_ms = readout.s.batch_ms
    info = dataclasses.replace(
        old, model=new.bundle.ident, chip=new.compiled.profile.name, labels=new.bundle.manifest.labels
    )
    return ModelSwitch(info, encoder, new.make_chip(), readout, round(batch_ms * 1000) if batch_ms else None)


def _encoder_for_source(cfg: PipelineConfig, old: Prepared, new: Prepared) -> Encoder:
    """An encoder of ``new`` fed by the source built for ``old`` (same modality and input format)."""
    name = new.bundle.ident
    old_mod, new_mod = old.bundle.manifest.model.modality, new.bundle.manifest.model.modality
    if old_mod != new_mod:
        msg = f"model {name} takes {new_mod} input; pipeline {cfg.name}'s source gives {old_mod}"
        raise SwitchError(msg)
    a, b = old.encoder_config, new.encoder_config
    if isinstance(a, AudioEncoderConfig) and isinstance(b, AudioEncoderConfig):
        _same(cfg, name, "sample rate (Hz)", a.rate_hz, b.rate_hz)
        return AudioEncoder(b)
    if isinstance(a, EcgEncoderConfig) and isinstance(b, EcgEncoderConfig):
        from sensors.ecg.encode import EcgEncoder

        _same(cfg, name, "sample rate (Hz)", a.rate_hz, b.rate_hz)
        return EcgEncoder(b)
    if isinstance(a, RadarEncoderConfig) and isinstance(b, RadarEncoderConfig):
        from sensors.radar.encode import RadarEncoder

        # The radar source is configured for the frames the old encoder expects.
        _same(cfg, name, "radar encoder settings", a, b)
        return RadarEncoder(b)
    if isinstance(a, DvsPreprocessConfig) and isinstance(b, DvsPreprocessConfig):
        from runtime.chips.dynapcnn import CompiledConv
        from sensors.dvs.frontend import DvsFrontEnd

        src = cfg.source
        assert isinstance(src, DvsFileSourceConfig | DvsUdpSourceConfig | DvsCameraSourceConfig)
        assert isinstance(old.compiled, CompiledConv) and isinstance(new.compiled, CompiledConv)
        _same(cfg, name, "input shape", old.compiled.input_shape, new.compiled.input_shape)
        return DvsFrontEnd(dvs_preprocess(src, new), new.compiled.input_shape)
    msg = f"model {name}: no encoder for its {new_mod} input"
    raise SwitchError(msg)


def _same(cfg: PipelineConfig, model: str, what: str, running: object, wanted: object) -> None:
    if running != wanted:
        msg = f"model {model} needs {what} {wanted}; pipeline {cfg.name}'s source delivers {running}"
        raise SwitchError(msg)
