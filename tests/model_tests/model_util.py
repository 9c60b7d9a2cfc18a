"""A small network for model tests."""

from __future__ import annotations

import numpy as np

from models.network import Network, Population, Projection


def small_network() -> Network:
    rng = np.random.default_rng(0)

    def pop(name: str, n: int, thr: float) -> Population:
        return Population(
            name, n, np.full(n, 5e-3), np.full(n, 20e-3), np.ones(n), np.zeros(n), np.full(n, thr), np.zeros(n)
        )

    return Network(
        4,
        (pop("hidden", 6, 1.0), pop("out", 3, np.inf)),
        (
            Projection("fc_in", "input", "hidden", rng.normal(size=(6, 4))),
            Projection("fc_rec", "hidden", "hidden", rng.normal(size=(6, 6))),
            Projection("fc_out", "hidden", "out", rng.normal(size=(3, 6))),
        ),
        "out",
    )
