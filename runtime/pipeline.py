"""One pipeline: source -> encoder -> chip -> readout -> sinks, plus telemetry.

Stages are asyncio tasks joined by bounded queues. Encoding and the chip kernel are pure
CPU work (numba, GIL released) and run in the pipeline's own worker thread, so the event
loop stays free for sources, sinks and other pipelines. Encoder and chip share one
executor call per group of blocks: a thread hop per block would cost more than the work
at ``--speed max``.

Stopping: ``stop()`` cancels the source; every downstream stage drains what is queued,
the readout decides what it has, and ``run()`` returns. Nothing queued is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np

from runtime import __version__
from runtime.chips.base import Chip, ChipResult
from runtime.contract import Classification, Status, Window, utc_now
from runtime.contract import PipelineInfo as StatusPipeline
from runtime.readout import Decision, Readout
from runtime.sinks.base import Sink
from runtime.telemetry import TelemetryRecorder
from sensors.blocks import EndOfStream, EventBlock, SampleBlock, SpikeBatch, batch_ends
from sensors.radar.frames import RadarBlock

log = logging.getLogger(__name__)

_MAX_GROUP = 32


class Encoder(Protocol):
    # ``block`` is the source's kind (SampleBlock for audio and ECG, EventBlock for event cameras,
    # RadarBlock for radar);
    # build.py pairs each source with its encoder, so the type is checked there.
    def encode(self, block: Any) -> SpikeBatch: ...
    def reset(self) -> None: ...


Item = SampleBlock | EventBlock | RadarBlock | EndOfStream


def split_batch(batch: SpikeBatch, step_us: int) -> list[SpikeBatch]:
    """``batch`` cut at the multiples of ``step_us`` in stream time (the readout's resolution,
    ``sensors.blocks.batch_ends``): a replay in large blocks and a live stream in small ones give
    the chip and the readout the same batches.
    """
    edges = batch_ends(batch.t_start_us, batch.t_end_us, step_us)[:-1]
    if not edges:
        return [batch]
    cuts = np.searchsorted(batch.t_us, edges).tolist()
    starts = [batch.t_start_us, *edges]
    ends = [*edges, batch.t_end_us]
    lo = [0, *cuts]
    hi = [*cuts, len(batch.t_us)]
    return [
        SpikeBatch(batch.stream, batch.t_us[a:b], batch.ch[a:b], batch.n_channels, t0, t1, batch.captured_ns)
        for a, b, t0, t1 in zip(lo, hi, starts, ends, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class PipelineInfo:
    name: str
    device: str
    model: str
    """'name@version'."""
    chip: str
    labels: Sequence[str]
    source: str


OnDecision = Callable[[Decision, Classification | None], None]


@dataclass(frozen=True, slots=True)
class ModelSwitch:
    """A model compiled for this pipeline's chip and source (``runtime.switch``), for ``switch_model``."""

    info: PipelineInfo
    encoder: Encoder
    chip: Chip
    readout: Readout
    batch_us: int | None


Computed = tuple[str, ChipResult, int] | EndOfStream | ModelSwitch | None
"""What the worker hands the readout: (stream, chip result, captured_ns), an end of stream, a model
switch the worker has applied, or the end."""


@dataclass(frozen=True, slots=True)
class LastDecision:
    label: str
    score: float
    at: datetime


class Pipeline:
    def __init__(
        self,
        info: PipelineInfo,
        source: AsyncIterator[Item],
        encoder: Encoder,
        chip: Chip,
        readout: Readout,
        sinks: Sequence[Sink],
        *,
        telemetry_interval_s: float = 5.0,
        queue_blocks: int = 64,
        on_decision: OnDecision | None = None,
        batch_us: int | None = None,
    ) -> None:
        self.info = info
        self.source = source
        self.encoder = encoder
        self.chip = chip
        self.readout = readout
        self.sinks = list(sinks)
        self.telemetry = TelemetryRecorder(info.device, info.name, chip.latency_us / 1000)
        self.telemetry_interval_s = telemetry_interval_s
        self.on_decision = on_decision
        self.batch_us = batch_us
        # A chip may do the cutting itself in one kernel call (``run_split``, same results as
        # running each piece); per-piece Python calls cost more than 20 ms of a small network.
        self._chip_run_split: Callable[[SpikeBatch, int], list[ChipResult]] | None = getattr(chip, "run_split", None)
        self._q_in: asyncio.Queue[Item | None] = asyncio.Queue(queue_blocks)
        self._q_out: asyncio.Queue[list[Computed]] = asyncio.Queue(queue_blocks)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"chip-{info.name}")
        self._producer: asyncio.Task[None] | None = None
        self._seq = 0
        self._stream = ""
        self._source_error: Exception | None = None
        # Control (runtime.mqtt.control): read and changed from the event loop only.
        self.paused = False
        """Decisions are still made (sources keep running, live buffers do not overflow) but not
        published; telemetry counts them as ``paused``."""
        self.last: LastDecision | None = None
        self.on_state_change: list[Callable[[], None]] = []
        """Called after a published decision, pause/resume, threshold or model change."""
        self._pending_switch: ModelSwitch | None = None
        self._switched: asyncio.Future[None] | None = None
        self._running = False

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until the source ends or ``stop()``; raises the first stage error."""
        self._running = True
        self._producer = asyncio.create_task(self._produce(), name=f"{self.info.name}-source")
        stages = [
            self._producer,
            asyncio.create_task(self._compute(), name=f"{self.info.name}-compute"),
            asyncio.create_task(self._decide(), name=f"{self.info.name}-decide"),
        ]
        telemetry = asyncio.create_task(self._telemetry_loop(), name=f"{self.info.name}-telemetry")
        try:
            await asyncio.gather(*stages)
            if self._source_error is not None:
                raise self._source_error
        except BaseException:
            # One stage failed (bad input, a bug): the others would wait forever on their
            # queues, so stop them too, then report the failure.
            for task in stages:
                task.cancel()
            await asyncio.gather(*stages, return_exceptions=True)
            raise
        finally:
            telemetry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await telemetry
            self._emit_telemetry()  # the last partial interval is reported too
            self._executor.shutdown(wait=False)
            self._running = False
            if self._switched is not None and not self._switched.done():
                self._switched.set_exception(RuntimeError("the pipeline stopped before the model switch"))

    def stop(self) -> None:
        if self._producer is not None:
            self._producer.cancel()

    # -- control -----------------------------------------------------------------------

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._state_changed()

    @property
    def min_confidence(self) -> float:
        return self.readout.s.min_confidence

    def set_min_confidence(self, value: float) -> None:
        """Takes effect from the next decision (the readout reads it when it decides)."""
        if not 0.0 <= value <= 1.0:
            msg = f"min_confidence must be within [0, 1], got {value}"
            raise ValueError(msg)
        self.readout.s = dataclasses.replace(self.readout.s, min_confidence=value)
        self._state_changed()

    async def switch_model(self, switch: ModelSwitch) -> None:
        """Run ``switch`` from the next input block on, with a fresh chip.

        The worker thread swaps encoder and chip between two blocks (never under a running
        kernel); the readout then decides what the old model had accumulated, under the old
        model's name, and the new readout takes over. Returns once the swap is done.
        """
        if self._switched is not None and not self._switched.done():
            msg = "a model switch is already in progress"
            raise RuntimeError(msg)
        if not self._running:
            self._apply_switch(switch)
            self._finish_switch(switch)
            return
        self._switched = asyncio.get_running_loop().create_future()
        self._pending_switch = switch
        await self._switched

    def _apply_switch(self, switch: ModelSwitch) -> None:
        self.encoder, self.chip, self.batch_us = switch.encoder, switch.chip, switch.batch_us
        self._chip_run_split = getattr(switch.chip, "run_split", None)

    def _finish_switch(self, switch: ModelSwitch) -> None:
        # The live threshold (set by a user) outlives the model; the old readout's pending
        # window is decided under the old model's name before the new one takes over.
        for d in self.readout.end_of_stream(self._stream, None):
            self._publish(d)
        threshold = self.readout.s.min_confidence
        self.readout = switch.readout
        self.readout.s = dataclasses.replace(self.readout.s, min_confidence=threshold)
        self.info = switch.info
        self.telemetry.chip_latency_ms = switch.chip.latency_us / 1000
        if self._switched is not None and not self._switched.done():
            self._switched.set_result(None)
        self._state_changed()

    def _state_changed(self) -> None:
        for callback in self.on_state_change:
            callback()

    # -- stages ------------------------------------------------------------------------

    async def _produce(self) -> None:
        try:
            start = getattr(self.source, "start", None)
            if start is not None:
                await start()  # live devices open here, inside the pipeline's lifetime
            async for item in self.source:
                await self._q_in.put(item)
        except asyncio.CancelledError:
            pass  # stop(): end of input, downstream drains
        except Exception as exc:
            # Bad input ends the input, not the work already queued: what came before it is
            # still decided and published, then run() raises this error.
            self._source_error = exc
        finally:
            close = getattr(self.source, "close", None)
            if close is not None:
                res = close()
                if asyncio.iscoroutine(res):
                    await res
            await self._q_in.put(None)

    async def _compute(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = [await self._q_in.get()]
            # Take what is already queued: one thread hop for many blocks at --speed max.
            while len(group) < _MAX_GROUP and not self._q_in.empty() and group[-1] is not None:
                group.append(self._q_in.get_nowait())
            # One queue item per group, not per result: at --speed max a queue hop costs more
            # than a chip batch.
            await self._q_out.put(await loop.run_in_executor(self._executor, self._process, group))
            if group[-1] is None:
                return

    def _process(self, group: list[Item | None]) -> list[Computed]:
        """Worker thread: encode and run the chip for a group of items, in order."""
        out: list[Computed] = []
        for item in group:
            switch = self._pending_switch
            if switch is not None:
                # Cleared only here: the event loop sets the next one after this one finished.
                self._pending_switch = None
                self._apply_switch(switch)
                out.append(switch)
            if isinstance(item, SampleBlock | EventBlock | RadarBlock):
                batch = self.encoder.encode(item)
                if self.batch_us is None:
                    out.append((item.stream, self.chip.run(batch), item.captured_ns))
                else:
                    out += [(item.stream, r, item.captured_ns) for r in self._run_split(batch, self.batch_us)]
            else:
                # End of a stream (or of all input): fresh state for whatever comes next.
                self.encoder.reset()
                self.chip.reset()
                out.append(item)
        return out

    def _run_split(self, batch: SpikeBatch, step_us: int) -> list[ChipResult]:
        if self._chip_run_split is not None:
            return self._chip_run_split(batch, step_us)
        return [self.chip.run(b) for b in split_batch(batch, step_us)]

    async def _decide(self) -> None:
        while True:
            for item in await self._q_out.get():
                if item is None:
                    for d in self.readout.end_of_stream(self._stream, None):
                        self._publish(d)
                    return
                if isinstance(item, EndOfStream):
                    for d in self.readout.end_of_stream(item.stream, item.label):
                        self._publish(d)
                    continue
                if isinstance(item, ModelSwitch):
                    self._finish_switch(item)
                    continue
                stream, result, captured_ns = item
                self._stream = stream
                self.telemetry.add_chip(result.stats)
                for d in self.readout.push(stream, result, captured_ns):
                    self._publish(d)

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.telemetry_interval_s)
            self._emit_telemetry()

    # -- output ------------------------------------------------------------------------

    def _publish(self, d: Decision) -> None:
        now_ns = time.monotonic_ns()
        host_ms = (now_ns - d.captured_ns) / 1e6 if d.captured_ns else 0.0
        paused = self.paused and not d.gated
        self.telemetry.add_decision(d.gated, None if d.gated or paused else host_ms, paused=paused)
        payload: Classification | None = None
        if not d.gated and not paused:
            self._seq += 1
            labels = self.info.labels
            now = utc_now()
            payload = Classification(
                device=self.info.device,
                pipeline=self.info.name,
                seq=self._seq,
                timestamp=now,
                label=labels[d.label_index],
                score=min(1.0, max(0.0, d.score)),
                scores={lab: float(s) for lab, s in zip(labels, d.scores, strict=True)},
                window=Window(stream=d.stream, start_us=d.start_us, end_us=d.end_us),
                captured_at=now - timedelta(milliseconds=host_ms),
                model=self.info.model,
                chip=self.info.chip,
                chip_latency_ms=self.chip.latency_us / 1000,
                host_latency_ms=host_ms,
                energy_uj=d.energy_uj,
                truth=d.truth,
            )
            for sink in self.sinks:
                sink.offer(payload)
            self.last = LastDecision(payload.label, payload.score, now)
            self._state_changed()
        if self.on_decision is not None:
            self.on_decision(d, payload)

    def queue_depths(self) -> dict[str, int]:
        depths = {"source_to_chip": self._q_in.qsize(), "chip_to_readout": self._q_out.qsize()}
        for sink in self.sinks:
            depths[f"sink_{sink.name}"] = sink.stats().queued
        return depths

    def drops(self) -> dict[str, int]:
        drops = {
            "source_blocks": int(getattr(self.source, "dropped_blocks", 0)),
            "device_overflows": int(getattr(self.source, "overflows", 0)),
            "readout_short_bursts": self.readout.ignored_bursts,
        }
        # Sources and encoders that filter or repair events say so by reason (DVS noise
        # filter, refractory, ROI, out-of-order repairs): counted, never silent.
        for prefix, stage in (("source", self.source), ("encoder", self.encoder)):
            more = getattr(stage, "drops", None)
            if callable(more):
                drops.update({f"{prefix}_{k}": int(v) for k, v in more().items()})
        for sink in self.sinks:
            drops[f"sink_{sink.name}"] = sink.stats().dropped
        return drops

    def _emit_telemetry(self) -> None:
        snap = self.telemetry.snapshot(self.queue_depths(), self.drops())
        for sink in self.sinks:
            sink.offer(snap)


def status_payload(device: str, pipelines: Sequence[Pipeline]) -> Status:
    """The retained status message for a set of pipelines."""
    return Status(
        device=device,
        version=__version__,
        started_at=utc_now(),
        pipelines=[
            StatusPipeline(
                name=p.info.name, source=p.info.source, model=p.info.model, chip=p.info.chip, labels=list(p.info.labels)
            )
            for p in pipelines
        ],
    )
