"""Live sources reopen with capped exponential backoff; every reopen and every inner drop is counted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from sensors.blocks import EndOfStream, InputError, SampleBlock
from sensors.retry import RetryingSource


def _block(stream: str, n0: int) -> SampleBlock:
    return SampleBlock(stream, n0 * 1000, 1000.0, np.zeros((10, 1), np.float32), 0, n0)


class _Flaky:
    """A device: fails to open, or delivers ``n`` blocks and then fails (``fail``) or ends."""

    def __init__(self, plan: str, name: str) -> None:
        self.plan, self.name = plan, name
        self.closed = False

    async def start(self) -> None:
        if self.plan == "absent":
            msg = f"{self.name}: no such device"
            raise InputError(msg)

    def drops(self) -> dict[str, int]:
        return {"lost_samples": 3}

    @property
    def dropped_blocks(self) -> int:
        return 1

    def close(self) -> None:
        self.closed = True

    def __aiter__(self) -> AsyncIterator[SampleBlock]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[SampleBlock]:
        yield _block(self.name, 0)
        yield _block(self.name, 10)
        if self.plan == "fails":
            msg = f"{self.name}: device disappeared"
            raise OSError(msg)


async def test_reopens_with_backoff_and_ends_the_broken_stream() -> None:
    plans = iter(["absent", "absent", "fails", "absent", "ends"])
    made: list[_Flaky] = []
    waits: list[float] = []

    def make() -> _Flaky:
        made.append(_Flaky(next(plans), f"dev{len(made)}"))
        return made[-1]

    async def sleep(s: float) -> None:
        waits.append(s)

    src = RetryingSource(make, name="dev", min_s=0.5, max_s=1.5, sleep=sleep)
    items = [item async for item in src]
    # Two failed opens (0.5, 1.0), then data resets the backoff: the failure after it waits 0.5
    # again, the next failed open 1.0, and the source that ends normally ends the wrapper.
    assert waits == [0.5, 1.0, 0.5, 1.0]
    kinds = [(type(i).__name__, i.stream) for i in items]
    assert kinds == [
        ("SampleBlock", "dev2"),
        ("SampleBlock", "dev2"),
        ("EndOfStream", "dev2"),
        ("SampleBlock", "dev4"),
        ("SampleBlock", "dev4"),
    ]
    eos = items[2]
    assert isinstance(eos, EndOfStream) and eos.t_end_us == 20_000 and eos.meta == {"end": "device error"}
    assert all(d.closed for d in made)
    assert src.reopens == 4
    assert src.drops() == {"lost_samples": 15, "device_reopens": 4}  # 5 sources x 3, summed over all
    assert src.dropped_blocks == 5


async def test_close_closes_the_device() -> None:
    dev = _Flaky("ends", "dev")
    src = RetryingSource(lambda: dev, name="dev")
    it = src.__aiter__()
    await it.__anext__()
    await src.close()
    assert dev.closed
