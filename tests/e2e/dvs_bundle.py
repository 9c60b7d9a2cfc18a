"""A small conv bundle for the dynapcnn end-to-end tests (random weights, 2x34x34 input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.convnet import ConvLayer, ConvNet
from models.nir_conv import write_convnet

MANIFEST = """labels = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]

[model]
name = "dvs-test"
version = "0.0.1"
modality = "dvs"
target_chip = "dynapcnn"

[encoder]
polarity = "both"
pool = 1

[readout]
kind = "spike_count"
temperature = 2.0
"""


def make_bundle(root: Path, seed: int = 0) -> Path:
    """conv 2->8 3x3 stride 2 -> IAF -> pool 2 -> dense 8x8x8 -> 10 IAF, thresholds low enough to fire."""
    rng = np.random.default_rng(seed)
    l1 = ConvLayer("conv1", (2, 34, 34), rng.normal(0.3, 0.5, (8, 2, 3, 3)), (2, 2), (1, 1), 1.0, -2.0, pool=2)
    c, h, w = l1.out_shape
    l2 = ConvLayer("fc", (c, h, w), rng.normal(0.05, 0.3, (10, c, h, w)), (1, 1), (0, 0), 1.0, -2.0)
    root.mkdir(parents=True, exist_ok=True)
    write_convnet(ConvNet((2, 34, 34), (l1, l2)), root / "model.nir")
    (root / "manifest.toml").write_text(MANIFEST, encoding="utf-8")
    return root
