"""Values that flow between pipeline stages.

Timestamps come in two kinds and are never mixed:

* ``t_us`` / ``t0_us``: *stream time* in integer microseconds since the start of the
  stream (the first sample of a file or the first block from a device). It is exact:
  sample ``n`` of a stream at ``rate_hz`` is at ``n * 1_000_000 // rate_hz``.
* ``captured_ns``: host ``time.monotonic_ns()`` when the block entered the process
  (read from a file, or delivered by the device callback). Host latency is measured
  from it to the moment a decision is published.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


class InputError(ValueError):
    """Bad input data: names the file (or device) and what is wrong with it."""


@dataclass(frozen=True, slots=True)
class SampleBlock:
    """A block of uniformly sampled data, shape ``(n_samples, n_channels)``, float32."""

    stream: str
    """Identifier of the stream (file path or device name)."""
    t0_us: int
    """Stream time of the first sample."""
    rate_hz: float
    data: npt.NDArray[np.float32]
    captured_ns: int
    first_sample: int = 0
    """Index of the first sample in the stream; ``t0_us`` is derived from it."""

    def __post_init__(self) -> None:
        if self.data.ndim != 2:
            msg = f"{self.stream}: SampleBlock data must be 2-D (samples, channels), got {self.data.shape}"
            raise ValueError(msg)

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])

    @property
    def duration_us(self) -> int:
        return round(self.n_samples * 1e6 / self.rate_hz)


EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "?")])
"""Canonical address-event record: ``t`` µs, ``x``/``y`` pixel, ``p`` polarity (True = ON)."""


@dataclass(frozen=True, slots=True)
class EventBlock:
    """Address events (``EVENT_DTYPE``, sorted by ``t``) from an event camera or file.

    ``events["t"]`` is stream time. The block covers ``[t_start_us, t_end_us)``: no later
    block of the stream holds an event before ``t_end_us``.
    """

    stream: str
    events: npt.NDArray[np.void]
    width: int
    height: int
    t_start_us: int
    t_end_us: int
    captured_ns: int

    def __len__(self) -> int:
        return int(self.events.shape[0])


@dataclass(frozen=True, slots=True)
class SpikeBatch:
    """Spike events sorted by time: int64 ``t_us`` and int32 channel ids ``ch``.

    ``t_end_us`` is the stream time up to which the batch is complete: no later batch of
    the same stream holds an event before it. Chips advance their clock to it even when
    the batch is empty, so silence costs time but no events.
    """

    stream: str
    t_us: npt.NDArray[np.int64]
    ch: npt.NDArray[np.int32]
    n_channels: int
    t_start_us: int
    t_end_us: int
    captured_ns: int

    def __post_init__(self) -> None:
        if self.t_us.shape != self.ch.shape or self.t_us.ndim != 1:
            msg = f"{self.stream}: t_us {self.t_us.shape} and ch {self.ch.shape} must be equal 1-D arrays"
            raise ValueError(msg)

    def __len__(self) -> int:
        return int(self.t_us.shape[0])


def batch_ends(t_start_us: int, t_end_us: int, step_us: int) -> list[int]:
    """Where a batch over ``[t_start_us, t_end_us)`` is cut for a readout resolution of ``step_us``:
    the multiples of ``step_us`` strictly inside it, then ``t_end_us``.

    Boundaries are absolute (``k * step_us``), so the pieces are the same whatever the source's
    block size. ``runtime.pipeline.split_batch`` and chips that cut batches themselves both use it.
    """
    first = (t_start_us // step_us + 1) * step_us
    return [*range(first, t_end_us, step_us), t_end_us]


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """Marks the end of one stream (one file in a replay, or a device that stopped).

    Stages flush and reset their state when they see it: a segmented dataset gives one
    decision per file, and state never leaks from one file into the next.
    """

    stream: str
    t_end_us: int
    captured_ns: int
    label: str | None = None
    """Ground-truth label of the stream when a labels file names one."""
    meta: dict[str, str] = field(default_factory=dict)
