"""Configuration of the live ECG sources (serial port, UDP) and the factories that build them.

The integrator only calls ``ecg_serial_source(cfg, model_rate_hz=...)`` or
``ecg_udp_source(cfg, model_rate_hz=...)``: when the model's encoder wants another rate than
the device's, the source resamples (``sensors.audio.resample.StreamingResampler``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sensors.address import parse_host_port
from sensors.udp_config import (
    DEFAULT_QUEUE_BLOCKS,
    QueueBlocks,
    UdpListenConfig,
    idle_flush_field,
    listen_field,
    max_gap_field,
)

if TYPE_CHECKING:
    from sensors.ecg.serial import SerialEcgSource
    from sensors.ecg.udp import UdpEcgSource


class _LiveEcgConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: int = Field(1, ge=1, le=64, title="Channels", description="Values per sample time the device sends.")
    lead: int = Field(
        0, ge=0, title="Lead", description="Index (0-based) of the channel fed to the model; must be < channels."
    )
    rate_hz: float = Field(
        360.0, gt=0, le=100_000, title="Device rate", description="Sampling rate of the device in Hz."
    )
    block_ms: float = Field(
        20.0,
        gt=0,
        le=10_000,
        title="Block length",
        description="Samples are handed on in blocks of this length; beat readouts find onsets at this resolution.",
    )
    queue_blocks: QueueBlocks = DEFAULT_QUEUE_BLOCKS
    max_gap_ms: float = max_gap_field(
        "Missing samples up to this long are filled with the last value (and counted); a longer gap or "
        "silence ends the stream and the next sample starts a new one."
    )

    @model_validator(mode="after")
    def _lead_exists(self) -> _LiveEcgConfig:
        if self.lead >= self.channels:
            msg = f"lead {self.lead} does not exist: the device sends {self.channels} channel(s) (index 0..)"
            raise ValueError(msg)
        return self


class EcgSerialSourceConfig(_LiveEcgConfig):
    kind: Literal["ecg_serial"] = "ecg_serial"
    port: str = Field(
        ..., min_length=1, title="Serial port", description="Device path, e.g. /dev/ttyUSB0, /dev/ttyACM0, COM3."
    )
    baud: int = Field(115_200, gt=0, title="Baud rate", description="Line speed (ignored by USB CDC devices).")
    protocol: Literal["text", "int16"] = Field(
        "text",
        title="Protocol",
        description=(
            "text: one line per sample time, values separated by commas or spaces. int16: binary frames "
            "0xA5 0x5A, u16 sequence, channels x int16 little-endian. See sensors/ecg/serial.py."
        ),
    )
    scale_mv: float = Field(
        1.0, title="Scale", description="Millivolts per unit: value_mv = (value - offset) * scale_mv (1 if mV sent)."
    )
    offset: float = Field(0.0, title="Offset", description="Subtracted before scaling, e.g. 2048 for a 12-bit ADC.")

    @field_validator("scale_mv")
    @classmethod
    def _scale_nonzero(cls, v: float) -> float:
        if v == 0 or v != v:
            msg = f"scale_mv must be a non-zero number, got {v}"
            raise ValueError(msg)
        return v


class EcgUdpSourceConfig(_LiveEcgConfig, UdpListenConfig):
    kind: Literal["ecg_udp"] = "ecg_udp"
    listen: str = listen_field(7780, "SWEC datagrams", "sensors/ecg/udp.py")
    idle_flush_ms: float = idle_flush_field("samples")


def ecg_serial_source(cfg: EcgSerialSourceConfig, *, model_rate_hz: float | None = None) -> SerialEcgSource:
    """The serial source ``cfg`` describes, at ``model_rate_hz`` (default: the device rate)."""
    from sensors.ecg.serial import SerialEcgSource

    return SerialEcgSource(
        cfg.port,
        baud=cfg.baud,
        protocol=cfg.protocol,
        channels=cfg.channels,
        rate_hz=cfg.rate_hz,
        lead=cfg.lead,
        scale_mv=cfg.scale_mv,
        offset=cfg.offset,
        block_ms=cfg.block_ms,
        queue_blocks=cfg.queue_blocks,
        max_gap_ms=cfg.max_gap_ms,
        model_rate_hz=model_rate_hz,
    )


def ecg_udp_source(cfg: EcgUdpSourceConfig, *, model_rate_hz: float | None = None) -> UdpEcgSource:
    """The UDP source ``cfg`` describes, at ``model_rate_hz`` (default: the device rate)."""
    from sensors.ecg.udp import UdpEcgSource

    host, port = parse_host_port(cfg.listen, min_port=0)
    return UdpEcgSource(
        host,
        port,
        channels=cfg.channels,
        rate_hz=cfg.rate_hz,
        lead=cfg.lead,
        block_ms=cfg.block_ms,
        queue_blocks=cfg.queue_blocks,
        max_gap_ms=cfg.max_gap_ms,
        idle_flush_ms=cfg.idle_flush_ms,
        model_rate_hz=model_rate_hz,
    )
