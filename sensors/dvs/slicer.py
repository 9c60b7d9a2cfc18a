"""Cutting a stream of address events into blocks of fixed stream time.

Blocks cover ``[k * block, (k + 1) * block)`` whatever the event rate, so readout windows
and pacing are in sensor time. Each stream is rebased so its first event is at time 0.

Timestamps that are not monotonic are repaired, never dropped: events within an added
chunk are stably sorted (counted in ``reordered``), and an event older than a block
already sent is moved to the current block's start (counted in ``late``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from sensors.blocks import EVENT_DTYPE

_EMPTY = np.empty(0, EVENT_DTYPE)


class EventSlicer:
    """Cuts one file's rebased, repaired events into consecutive blocks of ``block_us``."""

    def __init__(self, block_us: int) -> None:
        self.block_us = block_us
        self.t0_us: int | None = None
        self.sent_until_us = 0
        self._pending: npt.NDArray[np.void] = _EMPTY
        self.reordered = 0
        self.late = 0

    def add(self, chunk: npt.NDArray[np.void]) -> None:
        if not len(chunk):
            return
        if not chunk.flags.writeable:
            chunk = chunk.copy()  # a memory-mapped .npy: rebase a copy, never the file
        t = chunk["t"]
        if self.t0_us is None:
            self.t0_us = int(t[0])
        t -= self.t0_us  # the chunk is the reader's fresh array: rebase in place
        late = t < self.sent_until_us
        if late.any():
            self.late += int(late.sum())
            t[late] = self.sent_until_us
        if len(t) > 1 and bool((t[1:] < t[:-1]).any()):
            order = np.argsort(t, kind="stable")
            self.reordered += int((order != np.arange(len(order))).sum())
            chunk = chunk[order]
        if len(self._pending) and chunk["t"][0] < self._pending["t"][-1]:
            merged = np.concatenate((self._pending, chunk))
            order = np.argsort(merged["t"], kind="stable")
            self.reordered += int((order != np.arange(len(order))).sum())
            self._pending = merged[order]
        else:
            self._pending = np.concatenate((self._pending, chunk)) if len(self._pending) else chunk

    def blocks(self, final: bool) -> Iterator[tuple[npt.NDArray[np.void], int, int]]:
        """Complete blocks ``(events, t_start_us, t_end_us)``; with ``final`` also the last one."""
        t = self._pending["t"]
        # Only the time up to the newest event is complete: later chunks may add to it.
        limit = (int(t[-1]) + 1 if len(t) else self.sent_until_us) if final else (int(t[-1]) if len(t) else 0)
        while True:
            start = self.sent_until_us
            end = start + self.block_us
            if end > limit:
                if final and limit > start:
                    end = limit
                else:
                    return
            yield self.take_until(end), start, end

    def blocks_until(self, t_us: int) -> Iterator[tuple[npt.NDArray[np.void], int, int]]:
        """Every whole block that ends by ``t_us``, events or none (a live source whose device is quiet)."""
        while self.sent_until_us + self.block_us <= t_us:
            start = self.sent_until_us
            yield self.take_until(start + self.block_us), start, start + self.block_us

    def take_until(self, end_us: int) -> npt.NDArray[np.void]:
        """Events before ``end_us``; the stream is complete up to it from now on."""
        cut = int(np.searchsorted(self._pending["t"], end_us, side="left"))
        events, self._pending = self._pending[:cut], self._pending[cut:]
        self.sent_until_us = end_us
        return events
