"""A chip-independent spiking convolutional network: a chain of conv -> IAF -> sum-pool layers.

This is what an event-camera model bundle loads into and what the ``dynapcnn`` chip
compiles from. Each layer is one DynapCNN-style core's worth of work::

    v[n] += sum over input events e: W[n, e]              (conv, no bias)
    s[n]  = floor(v[n] / theta)  if v[n] >= theta else 0  (several spikes per step allowed)
    v[n] -= s[n] * theta                                  (reset by subtraction)
    v[n]  = max(v[n], v_min)                              (state floor)
    out   = sum-pool(s, pool)                             (pool x pool, stride pool)

IAF neurons do not leak. Weights and thresholds are floats here (the trained network);
the chip compiler quantises them. A dense (Linear/Affine) layer is a conv whose kernel is
the whole input map, so it outputs ``(n, 1, 1)``. Shapes are ``(channels, height, width)``;
weights are ``(out_channels, in_channels, ky, kx)`` like NIR's and PyTorch's Conv2d.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.network import ModelError

F64 = npt.NDArray[np.float64]
Shape3 = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class ConvLayer:
    name: str
    in_shape: Shape3
    """(channels, height, width) of the events this layer receives."""
    weight: F64
    """(out_channels, in_channels, ky, kx)."""
    stride: tuple[int, int]
    padding: tuple[int, int]
    threshold: float
    """IAF spike threshold, in the units of ``weight``."""
    v_min: float
    """State floor, in the units of ``weight`` (``-inf``: only the chip's own floor)."""
    pool: int = 1
    """Sum-pool size (and stride) applied to this layer's output spikes; 1 = none."""

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    @property
    def conv_shape(self) -> Shape3:
        """Shape of the IAF neuron map (before pooling)."""
        _, h, w = self.in_shape
        (ky, kx), (sy, sx), (py, px) = self.kernel, self.stride, self.padding
        return int(self.weight.shape[0]), (h + 2 * py - ky) // sy + 1, (w + 2 * px - kx) // sx + 1

    @property
    def out_shape(self) -> Shape3:
        """Shape of the events this layer sends on (after pooling)."""
        f, oy, ox = self.conv_shape
        return f, oy // self.pool, ox // self.pool


@dataclass(frozen=True, slots=True)
class ConvNet:
    input_shape: Shape3
    """(channels, height, width) of the input events: polarity channels x sensor map."""
    layers: tuple[ConvLayer, ...]

    def __post_init__(self) -> None:
        if not self.layers:
            msg = "a ConvNet needs at least one layer"
            raise ModelError(msg)
        shape = self.input_shape
        for layer in self.layers:
            if layer.in_shape != shape:
                msg = f"layer {layer.name}: takes input {layer.in_shape} but receives {shape}"
                raise ModelError(msg)
            if layer.weight.ndim != 4 or layer.weight.shape[1] != shape[0]:
                msg = f"layer {layer.name}: weight shape {layer.weight.shape} does not take {shape[0]} input channels"
                raise ModelError(msg)
            if min(layer.conv_shape[1:]) < 1:
                msg = f"layer {layer.name}: kernel {layer.kernel} does not fit input {layer.in_shape}"
                raise ModelError(msg)
            shape = layer.out_shape

    @property
    def n_outputs(self) -> int:
        """Classes read out: the last layer's output channels (its map must be 1x1)."""
        return self.layers[-1].out_shape[0]

    @property
    def n_inputs(self) -> int:
        c, h, w = self.input_shape
        return c * h * w
