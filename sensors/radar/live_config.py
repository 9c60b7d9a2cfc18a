"""Configuration of the live radar source (SWRD frames over UDP) and the factory that builds it.

Importable without numba or h5py: the source module is imported only when the factory runs.
The integrator calls ``radar_udp_source(cfg)`` (wrapped in ``sensors.retry.RetryingSource`` so
a port still held at boot is retried); the geometry comes with every datagram, so nothing
about the radar is configured here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

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
    from sensors.radar.udp import RadarUdpSource

DEFAULT_PORT = 7790


class RadarUdpSourceConfig(UdpListenConfig):
    kind: Literal["radar_udp"] = "radar_udp"
    listen: str = listen_field(DEFAULT_PORT, "SWRD radar datagrams", "sensors/radar/udp.py")
    frames_per_block: int = Field(
        1,
        ge=1,
        le=4096,
        title="Frames per block",
        description="Frames handed on together; more means fewer, larger blocks and more latency.",
    )
    queue_blocks: QueueBlocks = DEFAULT_QUEUE_BLOCKS
    max_gap_ms: float = max_gap_field(
        "A jump in frame time or a silence longer than this ends the stream; the next frame starts a new one."
    )
    idle_flush_ms: float = idle_flush_field("frames")
    max_frame_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1,
        title="Largest frame",
        description="Datagrams announcing a larger frame (sweeps x channels x points x sample size) are rejected.",
    )


def radar_udp_source(cfg: RadarUdpSourceConfig) -> RadarUdpSource:
    """The UDP radar source ``cfg`` describes (not yet listening: iterating or ``start()`` binds it)."""
    from sensors.radar.udp import RadarUdpSource

    host, port = parse_host_port(cfg.listen, min_port=0)
    return RadarUdpSource(
        host,
        port,
        frames_per_block=cfg.frames_per_block,
        queue_blocks=cfg.queue_blocks,
        max_gap_ms=cfg.max_gap_ms,
        idle_flush_ms=cfg.idle_flush_ms,
        max_frame_bytes=cfg.max_frame_bytes,
    )
