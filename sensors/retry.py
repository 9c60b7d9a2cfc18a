"""Live sources that come back: reopen a device with capped exponential backoff instead of dying.

A microphone unplugged, a serial adapter that re-enumerates, a UDP port still held by the
previous daemon, a camera that was never there at boot: on an edge device these are normal,
and the daemon must keep running and recover by itself. ``RetryingSource`` wraps a factory of
live sources. When the source fails (opening it or while reading), it closes it, ends the
stream that was open (an ``EndOfStream``, so the encoder, chip and readout start afresh),
waits ``min_s``, ``2 min_s``, ... up to ``max_s``, and opens a new one. The wait returns to
``min_s`` once a reopened source delivers data. A source that ends normally (stopped) ends
the wrapper too.

Failures are logged once per burst (the first, then only when the reason changes) and
counted: ``drops()["device_reopens"]``; the wrapped sources' own counters are summed over
every source it opened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sensors.blocks import EndOfStream, EventBlock, SampleBlock

log = logging.getLogger(__name__)

Item = SampleBlock | EventBlock | EndOfStream


def _t_end_us(item: SampleBlock | EventBlock) -> int:
    return item.t0_us + item.duration_us if isinstance(item, SampleBlock) else item.t_end_us


class RetryingSource:
    def __init__(
        self,
        make: Callable[[], Any],
        *,
        name: str,
        min_s: float = 0.5,
        max_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._make = make
        self.name = name
        self.min_s = min_s
        self.max_s = max_s
        self._sleep = sleep
        self.reopens = 0
        self._current: Any = None
        self._closed: Counter[str] = Counter()
        self._closed_blocks = 0
        self._closed_overflows = 0
        self._last_error = ""

    # The pipeline reads these on whatever source it has; they cover every source opened.
    @property
    def dropped_blocks(self) -> int:
        return self._closed_blocks + int(getattr(self._current, "dropped_blocks", 0))

    @property
    def overflows(self) -> int:
        return self._closed_overflows + int(getattr(self._current, "overflows", 0))

    def drops(self) -> dict[str, int]:
        total = Counter(self._closed)
        total.update(self._drops_of(self._current))
        return {**total, "device_reopens": self.reopens}

    @staticmethod
    def _drops_of(source: Any) -> dict[str, int]:
        drops = getattr(source, "drops", None)
        return {k: int(v) for k, v in drops().items()} if callable(drops) else {}

    def __aiter__(self) -> AsyncIterator[Item]:
        return self._run()

    async def _run(self) -> AsyncIterator[Item]:
        delay = self.min_s
        while True:
            stream: str | None = None
            t_end_us = 0
            try:
                self._current = self._make()
                start = getattr(self._current, "start", None)
                if start is not None:
                    await start()
                async for item in self._current:
                    if isinstance(item, EndOfStream):
                        stream = None
                    else:
                        stream, t_end_us = item.stream, _t_end_us(item)
                        delay = self.min_s  # it works again
                        self._last_error = ""
                    yield item
                return  # the source ended by itself (stopped): so does the wrapper
            except Exception as exc:  # any failure of a live device: reopen it, never die
                self._note(exc, delay)
            finally:
                await self._close_current()
            if stream is not None:
                yield EndOfStream(stream, t_end_us, time.monotonic_ns(), meta={"end": "device error"})
            self.reopens += 1
            await self._sleep(delay)
            delay = min(delay * 2, self.max_s)

    def _note(self, exc: Exception, delay_s: float) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if reason != self._last_error:
            log.warning(
                "%s: %s; reopening in %.1f s (and again with backoff up to %.0f s)",
                self.name,
                reason,
                delay_s,
                self.max_s,
            )
            self._last_error = reason
        else:
            log.debug("%s: still failing: %s", self.name, reason)

    async def _close_current(self) -> None:
        source, self._current = self._current, None
        if source is None:
            return
        self._closed.update(self._drops_of(source))
        self._closed_blocks += int(getattr(source, "dropped_blocks", 0))
        self._closed_overflows += int(getattr(source, "overflows", 0))
        close = getattr(source, "close", None)
        if close is not None:
            res = close()
            if asyncio.iscoroutine(res):
                await res

    async def close(self) -> None:
        """Close the device now (the pipeline calls this when it stops)."""
        await self._close_current()
