"""A bounded queue that drops its oldest item when full, for live sources."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """Bounded queue on the loop thread: when full, the oldest block is dropped and counted.

    What a live source uses between its device (a driver thread, a socket) and the pipeline:
    a device cannot be made to wait, so it is the old blocks that go, never the new ones.
    """

    def __init__(self, max_blocks: int) -> None:
        if max_blocks < 1:
            msg = f"queue needs room for at least one block, got {max_blocks}"
            raise ValueError(msg)
        self._items: deque[T] = deque()
        self._max = max_blocks
        self._closed = False
        self._wakeup = asyncio.Event()
        self.dropped_blocks = 0

    def __len__(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def get_nowait(self) -> T:
        """The oldest item; ``IndexError`` when empty."""
        return self._items.popleft()

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> None:
        """Loop thread only (other threads reach it through ``call_soon_threadsafe``)."""
        if self._closed:
            return
        if len(self._items) >= self._max:
            self._items.popleft()
            self.dropped_blocks += 1
        self._items.append(item)
        self._wakeup.set()

    def close(self) -> None:
        """No more blocks; ``get`` returns what is left, then None."""
        self._closed = True
        self._wakeup.set()

    async def get(self) -> T | None:
        while not self._items:
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._items.popleft()
