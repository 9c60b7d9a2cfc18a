"""Torch pieces the chip-in-the-loop recipes share (needs the ``train`` extra; torch is imported on use).

* ``spike``: the Heaviside spike with the SuperSpike surrogate gradient ``1 / (1 + 10 |x|)^2``;
* ``fake_quant``: weights rounded to the chip's signed ``bits`` with the max-abs scale that
  ``runtime.chips.compile`` uses, straight-through in the backward pass.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _spike_function() -> Any:
    import torch

    class Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):  # type: ignore[no-untyped-def]
            ctx.save_for_backward(x)
            return (x >= 0).to(x.dtype)

        @staticmethod
        def backward(ctx, grad):  # type: ignore[no-untyped-def]
            (x,) = ctx.saved_tensors
            return grad / (1 + 10 * x.abs()) ** 2  # SuperSpike surrogate

    return Spike


def spike(x: Any) -> Any:
    """1.0 where ``x >= 0`` (a membrane above threshold), with a surrogate gradient."""
    return _spike_function().apply(x)


def fake_quant(w: Any, bits: int) -> Any:
    """``w`` on the chip's ``bits``-bit signed grid (per-tensor max-abs scale), straight-through."""
    import torch

    levels = 2 ** (bits - 1) - 1
    scale = w.detach().abs().max() / levels
    return w + (torch.round(w / scale) * scale - w).detach()
