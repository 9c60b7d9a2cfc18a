"""Helpers shared by the tests of the live ECG sources (serial, UDP)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable
from typing import TypeAlias

from sensors.blocks import EndOfStream, SampleBlock

Item: TypeAlias = SampleBlock | EndOfStream


async def collect(src: AsyncIterable[Item], done: Callable[[list[Item]], bool], timeout_s: float = 5.0) -> list[Item]:
    """What ``src`` yields until ``done(items)`` holds; a ``TimeoutError`` after ``timeout_s``."""
    items: list[Item] = []
    async with asyncio.timeout(timeout_s):
        async for item in src:
            items.append(item)
            if done(items):
                break
    return items
