"""The DVS front end of a pipeline: pre-processing fitted to each stream's sensor size.

A replay may mix recordings from several cameras; each stream's events go through a
``DvsEncoder`` made for its sensor. Whatever the sensor, the pre-processed map must be
the model's input shape: ``check_sensor`` says so when a file opens (before any of its
events are read), naming the file, the shapes and what to change.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sensors.blocks import EventBlock, InputError, SpikeBatch
from sensors.dvs.preprocess import DvsEncoder, DvsPreprocessConfig, output_shape

Shape3 = tuple[int, int, int]


def check_sensor(cfg: DvsPreprocessConfig, input_shape: Shape3, path: Path | str, width: int, height: int) -> None:
    """Raise ``InputError`` unless a ``width`` x ``height`` sensor pre-processes to ``input_shape``."""
    try:
        shape = output_shape(cfg, width, height)
    except ValueError as exc:
        msg = f"{path}: sensor {width}x{height}: {exc}"
        raise InputError(msg) from exc
    if tuple(shape) != tuple(input_shape):
        c, h, w = input_shape
        msg = (
            f"{path}: a {width}x{height} sensor with this pre-processing (polarity {cfg.polarity}, roi {cfg.roi}, "
            f"pool {cfg.pool}) gives {shape[0]}x{shape[1]}x{shape[2]} (channels x height x width) but the model "
            f"takes {c}x{h}x{w}; set the source's preprocess roi/pool/polarity to fit"
        )
        raise InputError(msg)


class DvsFrontEnd:
    """Encoder of the pipeline for event sources (``runtime.pipeline.Encoder``)."""

    def __init__(self, cfg: DvsPreprocessConfig, input_shape: Shape3) -> None:
        self.cfg = cfg
        self.input_shape = input_shape
        self._enc: DvsEncoder | None = None
        self._size: tuple[int, int] | None = None
        self._past: Counter[str] = Counter()
        """Drops counted by encoders of earlier sensor sizes."""

    def encode(self, block: EventBlock) -> SpikeBatch:
        if self._enc is None or self._size != (block.width, block.height):
            self._switch(block)
        assert self._enc is not None
        return self._enc.encode(block)

    def _switch(self, block: EventBlock) -> None:
        check_sensor(self.cfg, self.input_shape, block.stream, block.width, block.height)
        if self._enc is not None:
            self._past.update(self._enc.drops())
        try:
            self._enc = DvsEncoder(self.cfg, block.width, block.height)
        except ValueError as exc:  # e.g. a hot pixel outside this sensor
            msg = f"{block.stream}: sensor {block.width}x{block.height}: {exc}"
            raise InputError(msg) from exc
        self._size = (block.width, block.height)

    def reset(self) -> None:
        if self._enc is not None:
            self._enc.reset()

    def drops(self) -> dict[str, int]:
        total = Counter(self._past)
        if self._enc is not None:
            total.update(self._enc.drops())
        return dict(total)
