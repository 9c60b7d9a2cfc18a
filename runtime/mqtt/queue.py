"""The sink's outgoing queue: messages in publish order, in memory or on disk.

The sink publishes ``head()``, and only after the broker acknowledged it calls
``pop_head()``. Bounds and the overflow policy are the sink's business: it asks
``fits`` and, for drop-oldest, ``drop_oldest``. ``MemoryQueue`` is bounded by a message
count; ``runtime.mqtt.spool.SpoolQueue`` by bytes on disk and survives a restart.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    pipeline: str = ""
    """Pipeline name, sent as an MQTT 5 user property."""
    schema: str = ""
    """Payload schema (``spikewire.classification/1``), sent as an MQTT 5 user property."""


class MessageQueue(Protocol):
    persistent: bool
    """True if what is left at close is kept for the next start (not dropped)."""

    def __len__(self) -> int: ...

    def head(self) -> Message | None: ...

    def pop_head(self) -> None:
        """The head was delivered (or refused for good): remove it."""

    def fits(self, message: Message) -> bool: ...

    def drop_oldest(self, *, keep_head: bool) -> bool:
        """Remove the oldest message (the second if ``keep_head``); False if there is none."""

    def append(self, message: Message) -> None: ...

    def discard_all(self) -> int:
        """Forget everything queued (memory only); returns how many were lost."""

    def close(self) -> None: ...


class MemoryQueue:
    """At most ``capacity`` messages in memory."""

    persistent = False

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Message] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def head(self) -> Message | None:
        return self._items[0] if self._items else None

    def pop_head(self) -> None:
        self._items.popleft()

    def fits(self, message: Message) -> bool:
        return len(self._items) < self.capacity

    def drop_oldest(self, *, keep_head: bool) -> bool:
        index = 1 if keep_head else 0
        if len(self._items) <= index:
            return False
        del self._items[index]
        return True

    def append(self, message: Message) -> None:
        self._items.append(message)

    def discard_all(self) -> int:
        count = len(self._items)
        self._items.clear()
        return count

    def close(self) -> None:
        return None
