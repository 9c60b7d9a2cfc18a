"""``--workers 2 --mqtt``: every decision published, each worker's pipeline in file order with contiguous seq."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mqtt_helpers import Broker, Collector
from replay_util import fsdd_files

from runtime.cli import main
from runtime.contract import Classification

pytestmark = [pytest.mark.broker, pytest.mark.slow]


async def test_workers_publish_every_decision_in_file_order(mosquitto: Broker, data_dir: Path) -> None:
    files = fsdd_files(data_dir, 12)
    async with Collector(mosquitto.host, mosquitto.port, "spikewire/w/+/classification") as sub:
        code = await asyncio.to_thread(
            main,
            ["replay", *map(str, files), "--model", "kws-digits", "--workers", "2", "--mqtt", mosquitto.url,
             "--device", "w", "--json"],
        )  # fmt: skip
        assert code == 0
        await sub.wait_for(lambda ms: len(ms) >= len(files))
    by_pipeline: dict[str, list[Classification]] = {}
    for m in sub.messages:
        c = Classification.model_validate_json(m.payload)
        by_pipeline.setdefault(c.pipeline, []).append(c)
    assert sorted(by_pipeline) == ["replay-1", "replay-2"]
    for decisions in by_pipeline.values():
        assert [d.seq for d in decisions] == list(range(1, len(decisions) + 1))
    # Shards are contiguous runs of the files: shard 1's files, then shard 2's, give the file order.
    streams = [d.window.stream for d in by_pipeline["replay-1"] + by_pipeline["replay-2"]]
    assert streams == [str(f) for f in files]
