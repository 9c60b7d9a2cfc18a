"""Plain numpy, time-stepped reference of the crossbar equations (for tests only).

It steps every tick, densely, with no quiescence skipping, and adds crossbar rows in the
same order as the kernel (recurrent rows of the previous tick in neuron order, then input
events in time order) so that float32 results can be compared closely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runtime.chips.crossbar_kernel import P_ALPHA, P_BETA, P_GAIN, P_LEAK, P_RESET, P_REST, P_THETA


@dataclass(frozen=True)
class ReferenceResult:
    spike_t_us: npt.NDArray[np.int64]
    spike_n: npt.NDArray[np.int64]
    v: npt.NDArray[np.float32]
    """Membrane of every neuron after every tick, shape (ticks, N)."""


def run_reference(
    ev_t_us: npt.NDArray[np.int64],
    ev_ch: npt.NDArray[np.int32],
    t_end_us: int,
    W: npt.NDArray[np.float32],
    P: npt.NDArray[np.float32],
    n_in: int,
    tick_us: int,
) -> ReferenceResult:
    n = P.shape[1]
    n_ticks = t_end_us // tick_us
    i = np.zeros(n, np.float32)
    v = P[P_REST].copy()
    a = np.zeros(n, np.float32)
    v_trace = np.zeros((n_ticks, n), np.float32)
    out_t: list[int] = []
    out_n: list[int] = []
    tick_of = ev_t_us // tick_us
    e = 0
    for k in range(n_ticks):
        while e < len(ev_t_us) and tick_of[e] == k:
            a += W[ev_ch[e]]
            e += 1
        i = P[P_ALPHA] * i + a
        v = P[P_BETA] * v + P[P_GAIN] * i + P[P_LEAK]
        spiked = np.flatnonzero(v >= P[P_THETA])
        v[spiked] = P[P_RESET][spiked]
        v_trace[k] = v
        a = np.zeros(n, np.float32)
        for m in spiked:
            a += W[n_in + m]
            out_t.append((k + 1) * tick_us)
            out_n.append(int(m))
    return ReferenceResult(np.array(out_t, np.int64), np.array(out_n, np.int64), v_trace)
