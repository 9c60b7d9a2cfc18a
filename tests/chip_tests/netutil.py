"""Small random networks for chip tests."""

from __future__ import annotations

import numpy as np

from models.network import Network, Population, Projection
from sensors.blocks import SpikeBatch


def population(
    name: str, n: int, *, spiking: bool = True, tau_syn_s: float = 5e-3, tau_mem_s: float = 20e-3
) -> Population:
    def full(v: float) -> np.ndarray:
        return np.full(n, v)

    return Population(
        name, n, full(tau_syn_s), full(tau_mem_s), full(1.0), full(0.0), full(1.0 if spiking else np.inf), full(0.0)
    )


def random_network(
    seed: int,
    n_in: int = 16,
    hidden: int = 40,
    n_out: int = 5,
    *,
    spiking_out: bool = False,
    rec_scale: float = 0.1,
    out_scale: float = 0.4,
) -> Network:
    rng = np.random.default_rng(seed)
    return Network(
        n_inputs=n_in,
        populations=(population("hidden", hidden), population("out", n_out, spiking=spiking_out)),
        projections=(
            Projection("fc_in", "input", "hidden", rng.normal(0.0, 0.6, (hidden, n_in))),
            Projection("fc_rec", "hidden", "hidden", rng.normal(0.0, rec_scale, (hidden, hidden))),
            Projection("fc_out", "hidden", "out", rng.normal(0.0, out_scale, (n_out, hidden))),
        ),
        output="out",
    )


def poisson(seed: int, n_in: int, t_end_us: int, n_events: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_end_us, n_events)).astype(np.int64)
    return t, rng.integers(0, n_in, n_events).astype(np.int32)


def split(t: np.ndarray, ch: np.ndarray, n_in: int, edges: list[int]) -> list[SpikeBatch]:
    idx = np.searchsorted(t, edges)
    return [
        SpikeBatch("test", t[idx[k] : idx[k + 1]], ch[idx[k] : idx[k + 1]], n_in, edges[k], edges[k + 1], 0)
        for k in range(len(edges) - 1)
    ]
