"""Configuration: one TOML file, validated by pydantic before anything starts.

Every model forbids unknown fields, so a typo is an error naming its path rather than a
silently ignored setting. Environment variables override the file with ``SPIKEWIRE_``
and ``__`` between levels (``SPIKEWIRE_MQTT__URL=mqtt://broker:1883``).
"""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sensors.address import parse_host_port
from sensors.dvs.preprocess_config import DvsPreprocessConfig
from sensors.ecg.file_config import EcgFileSourceConfig as EcgFileSourceConfig
from sensors.ecg.live_config import EcgSerialSourceConfig as EcgSerialSourceConfig
from sensors.ecg.live_config import EcgUdpSourceConfig as EcgUdpSourceConfig
from sensors.radar.file_config import RadarFileSourceConfig as RadarFileSourceConfig
from sensors.radar.live_config import RadarUdpSourceConfig as RadarUdpSourceConfig


class ConfigError(ValueError):
    """A configuration problem, already phrased for a person: path of the field and reason."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TlsConfig(_Model):
    ca_file: Path | None = Field(None, title="CA file", description="PEM bundle that signs the broker's certificate.")
    cert_file: Path | None = Field(
        None, title="Client certificate", description="PEM client certificate for mutual TLS."
    )
    key_file: Path | None = Field(None, title="Client key", description="PEM private key of the client certificate.")
    insecure: bool = Field(
        False,
        description=(
            "UNSAFE: skip hostname verification (the chain is still checked), so anyone holding a "
            "certificate from that CA can pose as the broker. Hostname checking is on by default; lab brokers only."
        ),
    )


class HomeAssistantConfig(_Model):
    enabled: bool = Field(False, description="Publish Home Assistant MQTT discovery configs (retained).")
    discovery_prefix: str = Field(
        "homeassistant", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$", description="HA's discovery prefix."
    )


class ControlConfig(_Model):
    enabled: bool = Field(
        True, description="Accept commands on <prefix>/<device>/<pipeline>/set and <prefix>/<device>/request."
    )
    models: list[Path] = Field(
        default_factory=list,
        description="Bundles besides the zoo that a 'model' command may switch to, named by their folder name.",
    )


class MqttConfig(_Model):
    url: str = Field(
        "mqtt://127.0.0.1:1883",
        title="Broker URL",
        description=(
            "mqtt://host[:port], mqtts://host[:port] (TLS, default port 8883), or MQTT over WebSockets "
            "ws://host[:port][/path] / wss://... (path default /mqtt)."
        ),
    )
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(None, description="Broker password (or SPIKEWIRE_MQTT__PASSWORD). Never logged.")
    password_file: Path | None = Field(
        None,
        title="Password file",
        description=(
            "File holding the broker password (e.g. a systemd LoadCredential path, "
            "$CREDENTIALS_DIRECTORY/mqtt-password), read at start; one trailing newline is stripped. "
            "Exclusive with password."
        ),
    )
    clean_session: bool = Field(
        True,
        description=(
            "False: a persistent session (MQTT 3.1.1 clean_session=0, MQTT 5 clean_start=0 with a session "
            "expiry), so the broker keeps the session's QoS 1 state across reconnects. Needs a fixed client_id."
        ),
    )
    session_expiry_s: int = Field(
        3600, ge=0, description="MQTT 5, persistent session: how long the broker keeps it after a disconnect."
    )
    message_expiry_s: int | None = Field(
        None,
        ge=1,
        description="MQTT 5: message expiry interval set on classifications (the broker discards them after it).",
    )
    prefix: str = Field("spikewire", description="Topic prefix: <prefix>/<device>/...")
    home_assistant: HomeAssistantConfig = Field(
        default_factory=lambda: HomeAssistantConfig(), title="Home Assistant discovery"
    )
    control: ControlConfig = Field(default_factory=lambda: ControlConfig(), title="Remote control")
    client_id: str | None = Field(None, description="MQTT client id; default spikewire-<device>.")
    protocol: Literal["3.1.1", "5"] = Field("5", description="MQTT protocol version.")
    keepalive_s: int = Field(30, ge=5, le=3600)
    qos_classification: Literal[0, 1, 2] = Field(1, description="QoS of classification messages.")
    tls: TlsConfig | None = Field(None, description="TLS settings; implied by mqtts://.")
    buffer_size: int = Field(
        10_000,
        ge=1,
        description="Messages kept while the broker is unreachable; beyond it the oldest is dropped and counted.",
    )
    reconnect_min_s: float = Field(0.5, gt=0, description="First reconnect delay; doubles up to the cap.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Cap of the reconnect delay.")
    overflow: Literal["drop_oldest", "drop_newest"] = Field(
        "drop_oldest", description="When the buffer (or spool) is full: which message is dropped (and counted)."
    )
    spool_dir: Path | None = Field(
        None,
        title="Spool directory",
        description=(
            "Keep queued messages in an append-only file here, so a restart during an outage loses nothing; "
            "None keeps them in memory only (buffer_size)."
        ),
    )
    spool_max_mb: float = Field(64.0, gt=0, description="Bound of the messages waiting in the spool, in MiB.")
    spool_fsync: Literal["always", "interval", "never"] = Field(
        "interval",
        description=(
            "always: fsync every record (survives power loss); interval: at most every spool_fsync_interval_ms; "
            "never: leave it to the OS (survives a crash of the daemon, not of the machine)."
        ),
    )
    spool_fsync_interval_ms: float = Field(200.0, gt=0, description="spool_fsync=interval: longest time unsynced.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("mqtt://", "mqtts://", "ws://", "wss://")):
            msg = f"must start with mqtt://, mqtts://, ws:// or wss://, got {v!r}"
            raise ValueError(msg)
        return v

    @field_validator("password_file")
    @classmethod
    def _one_password(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is not None and info.data.get("password") is not None:
            msg = "set either password or password_file, not both"
            raise ValueError(msg)
        return v


class AudioFileSourceConfig(_Model):
    kind: Literal["audio_file"] = "audio_file"
    paths: list[Path] = Field(min_length=1, description="WAV/FLAC files or folders of them (sorted).")
    speed: float | Literal["max"] = Field(1.0, description="Pacing: 1.0 is real time; 'max' is unpaced.")
    loop: bool = Field(False, description="Start again at the end (a daemon replaying a recording).")
    block_ms: float = Field(20.0, gt=0, le=10_000, description="Block length handed to the encoder.")
    channel: int | Literal["mix"] = Field("mix", description="Channel to use, or 'mix' for the mean.")


class MicrophoneSourceConfig(_Model):
    kind: Literal["microphone"] = "microphone"
    device: str | int | None = Field(None, description="PortAudio device name or index; None for the default input.")
    rate_hz: int | None = Field(
        None, description="Capture rate; None for the model's rate (resampled if the device refuses)."
    )
    block_ms: float = Field(20.0, gt=0, le=1000)
    queue_blocks: int = Field(50, ge=2, description="Blocks buffered between the device and the pipeline.")
    channel: int = Field(0, ge=0)


class DvsFileSourceConfig(_Model):
    kind: Literal["dvs_file"] = "dvs_file"
    paths: list[Path] = Field(
        min_length=1,
        description="Event recordings (EVT2/EVT3 .raw, .dat, AEDAT 2/3.1/4, N-MNIST .bin, .npy/.npz) or folders.",
    )
    format: Literal["auto", "evt2", "evt3", "dat", "nmnist_bin", "aedat2", "aedat31", "aedat4", "npy"] = Field(
        "auto", description="File format; auto detects it from the header."
    )
    sensor_size: tuple[int, int] | None = Field(
        None, description="(width, height) for files that do not say it (N-CARS .dat, .npy); overrides the header."
    )
    speed: float | Literal["max"] = Field(1.0, description="Pacing: 1.0 is real time; 'max' is unpaced.")
    loop: bool = Field(False, description="Start again at the end.")
    block_ms: float = Field(20.0, gt=0, le=10_000, description="Stream time per block handed to the chip.")
    preprocess: DvsPreprocessConfig | None = Field(
        None,
        title="DVS pre-processing",
        description="The chip's DVS front end (crop, pool, mirror, filters); default: the model's own settings.",
    )


class DvsUdpSourceConfig(_Model):
    kind: Literal["dvs_udp"] = "dvs_udp"
    listen: str = Field(
        "127.0.0.1:7777",
        title="Listen address",
        description="host:port to receive 'SWEV' event datagrams on (0.0.0.0 for all interfaces).",
    )
    block_ms: float = Field(20.0, gt=0, le=1000, description="Stream time per block handed to the chip.")
    queue_blocks: int = Field(64, ge=2, description="Blocks buffered; beyond it the oldest is dropped and counted.")
    idle_flush_ms: float = Field(
        100.0, gt=0, description="With no datagram for this long, stream time advances with the wall clock."
    )
    preprocess: DvsPreprocessConfig | None = Field(
        None, title="DVS pre-processing", description="The chip's DVS front end; default: the model's own settings."
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        parse_host_port(v, min_port=0)
        return v


class DvsCameraSourceConfig(_Model):
    kind: Literal["dvs_camera"] = "dvs_camera"
    camera: str | None = Field(
        None,
        title="Camera",
        description="Serial number or name (DVXplorer_DXA00093) of a USB camera on this host; None: the first found.",
    )
    network: str | None = Field(
        None,
        title="Network stream",
        description="host:port of a dv-processing / DV network event stream on another host (instead of a camera).",
    )
    block_ms: float = Field(20.0, gt=0, le=1000, description="Stream time per block handed to the chip.")
    queue_blocks: int = Field(64, ge=2, description="Blocks buffered; beyond it the oldest is dropped and counted.")
    preprocess: DvsPreprocessConfig | None = Field(
        None, title="DVS pre-processing", description="The chip's DVS front end; default: the model's own settings."
    )

    @field_validator("network")
    @classmethod
    def _one_input(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        if info.data.get("camera") is not None:
            msg = f"set either camera ({info.data['camera']!r}) or network ({v!r}), not both"
            raise ValueError(msg)
        parse_host_port(v)
        return v


SourceConfig = Annotated[
    AudioFileSourceConfig
    | MicrophoneSourceConfig
    | DvsFileSourceConfig
    | DvsUdpSourceConfig
    | DvsCameraSourceConfig
    | EcgFileSourceConfig
    | EcgSerialSourceConfig
    | EcgUdpSourceConfig
    | RadarFileSourceConfig
    | RadarUdpSourceConfig,
    Field(discriminator="kind"),
]


class ReadoutConfig(_Model):
    mode: Literal["stream", "utterance", "window", "auto", "beat"] = Field(
        "utterance",
        description=(
            "stream: one decision per stream (per file). utterance: one per burst of input "
            "activity. window: one per fixed window. auto: stream for short files, utterance "
            "once a stream is longer than max_utterance_ms. beat: one per onset of input activity "
            "(an ECG beat), over beat_window_ms. Default: the model's readout.mode, else utterance."
        ),
    )
    window_ms: float = Field(1000.0, gt=0, description="Window length for mode=window.")
    hop_ms: float = Field(500.0, gt=0, description="Hop between windows for mode=window.")
    min_confidence: float = Field(0.0, ge=0, le=1, description="Decisions below this score are counted, not published.")
    activity_threshold: float = Field(
        0.02,
        ge=0,
        le=1,
        description="utterance: input spikes per channel per ms that count as activity (speech ~0.06).",
    )
    silence_ms: float = Field(150.0, gt=0, description="utterance: quiet time that closes an utterance.")
    min_utterance_ms: float = Field(120.0, ge=0, description="utterance: shorter bursts are ignored (counted).")
    max_utterance_ms: float = Field(2500.0, gt=0, description="utterance: longer bursts are cut into decisions.")
    beat_window_ms: float = Field(200.0, gt=0, description="beat: window read out after each onset.")
    refractory_ms: float = Field(250.0, gt=0, description="beat: shortest time from one onset to the next.")
    batch_ms: float | None = Field(
        None,
        gt=0,
        description=(
            "Chip results are read out in batches of this much stream time whatever the source's block size "
            "(onsets and windows at this resolution); default: one batch per source block."
        ),
    )


class PipelineConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="Used in topics: <prefix>/<device>/<name>/...")
    source: SourceConfig
    model: str = Field(description="Bundle name from the zoo (e.g. kws-digits) or a path to a bundle.")
    chip: str | None = Field(None, description="Chip profile name or TOML path; default: the model's target.")
    mismatch: bool | None = Field(None, description="Analog mismatch on/off; default: the profile's.")
    seed: int = Field(0, description="Seed of the frozen mismatch draw.")
    strict: bool = Field(False, description="Treat soft chip limits (model size) as errors.")
    readout: ReadoutConfig = Field(default_factory=lambda: ReadoutConfig())
    telemetry_interval_s: float = Field(5.0, gt=0)
    queue_blocks: int = Field(64, ge=1, description="Bound of the queues between stages.")


class JsonlConfig(_Model):
    path: Path = Field(description="Append decisions and telemetry here, one JSON object per line.")


class HttpConfig(_Model):
    listen: str = Field(
        "127.0.0.1:9100",
        title="Listen address",
        description="host:port of the HTTP server with /health and Prometheus /metrics (0.0.0.0: all interfaces).",
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        parse_host_port(v)
        return v


class LoggingConfig(_Model):
    format: Literal["text", "json"] = Field(
        "text", description="text: one readable line per record; json: one JSON object per line (for log shippers)."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        extra="forbid", env_prefix="SPIKEWIRE_", env_nested_delimiter="__", nested_model_default_partial_update=True
    )

    device: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9_.-]+$")
    pipelines: list[PipelineConfig] = Field(default_factory=list)
    mqtt: MqttConfig | None = Field(None, description="Broker; None means no MQTT sink.")
    jsonl: JsonlConfig | None = None
    stdout: bool = Field(True, description="Print decisions on the terminal.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    logging: LoggingConfig = Field(default_factory=lambda: LoggingConfig(), description="Log output.")
    http: HttpConfig | None = Field(None, description="Optional /health and /metrics endpoint; None: off.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file: a container sets secrets without editing it.
        return env_settings, init_settings


def format_validation_error(exc: ValidationError, origin: str) -> str:
    lines = [f"{origin}: {exc.error_count()} problem(s)"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {path}: {err['msg']}")
    return "\n".join(lines)


def load_settings(path: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read and validate a TOML config; ``ConfigError`` names the file, field and reason."""
    data: dict[str, Any] = {}
    origin = "built-in defaults"
    if path is not None:
        origin = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            msg = f"{path}: config file not found"
            raise ConfigError(msg) from exc
        except tomllib.TOMLDecodeError as exc:
            msg = f"{path}: not valid TOML: {exc}"
            raise ConfigError(msg) from exc
        except UnicodeDecodeError as exc:  # TOML is UTF-8; a Latin-1 or damaged file failed bare (fuzz suite)
            msg = f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); TOML files must be UTF-8"
            raise ConfigError(msg) from exc
        except OSError as exc:  # a directory, no permission...
            msg = f"{path}: cannot read config file: {exc.strerror or exc}"
            raise ConfigError(msg) from exc
    data.update(overrides or {})
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin)) from exc
