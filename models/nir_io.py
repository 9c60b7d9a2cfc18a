"""NIR graphs to and from ``Network``.

Supported nodes: Input, Output, Affine (zero bias), Linear, CubaLIF, CubaLI. Anything else
is a ``ModelError`` naming the node and what is supported. NIR's CubaLIF is continuous::

    tau_syn dI/dt = -I + w_in * x(t)       x = sum of w * delta(t - t_k)
    tau_mem dv/dt = (v_leak - v) + r * I

A spike through NIR weight ``w`` makes ``I`` jump by ``w_in * w / tau_syn``; that jump is the
``Network`` weight. Export does the inverse, so a round trip is exact.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from models.network import F64, ModelError, Network, Population, Projection

SUPPORTED = "Input, Output, Affine (zero bias), Linear, CubaLIF, CubaLI"


def _vec(value: object, size: int, node: str, field: str) -> F64:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.full(size, float(arr[0]))
    if arr.size != size:
        msg = f"node {node!r}: {field} has {arr.size} values, the population has {size} neurons"
        raise ModelError(msg)
    if np.isnan(arr).any():
        msg = f"node {node!r}: {field} contains NaN"
        raise ModelError(msg)
    return arr


def _population(name: str, node: nir.NIRNode) -> tuple[Population, F64]:
    size = int(np.asarray(node.tau_mem).size)
    tau_syn = _vec(node.tau_syn, size, name, "tau_syn")
    tau_mem = _vec(node.tau_mem, size, name, "tau_mem")
    if (tau_syn <= 0).any() or (tau_mem <= 0).any():
        msg = f"node {name!r}: time constants must be > 0 s"
        raise ModelError(msg)
    if isinstance(node, nir.CubaLIF):
        thr = _vec(node.v_threshold, size, name, "v_threshold")
        reset = _vec(node.v_reset if node.v_reset is not None else 0.0, size, name, "v_reset")
    else:
        thr = np.full(size, np.inf)
        reset = np.zeros(size)
    pop = Population(
        name=name,
        size=size,
        tau_syn_s=tau_syn,
        tau_mem_s=tau_mem,
        r=_vec(node.r, size, name, "r"),
        v_leak=_vec(node.v_leak, size, name, "v_leak"),
        v_threshold=thr,
        v_reset=reset,
    )
    return pop, _vec(node.w_in, size, name, "w_in")


def graph_to_network(graph: nir.NIRGraph, origin: str = "graph") -> Network:
    nodes = graph.nodes
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        msg = f"{origin}: needs exactly one Input and one Output node, found {len(inputs)} and {len(outputs)}"
        raise ModelError(msg)
    pops: dict[str, Population] = {}
    w_in: dict[str, F64] = {}
    for name, node in nodes.items():
        if isinstance(node, nir.CubaLIF | nir.CubaLI):
            pops[name], w_in[name] = _population(name, node)
        elif not isinstance(node, nir.Input | nir.Output | nir.Affine | nir.Linear):
            msg = f"{origin}: node {name!r} is {type(node).__name__}; supported: {SUPPORTED}"
            raise ModelError(msg)
    n_inputs = int(np.prod(nodes[inputs[0]].input_type["input"]))
    src_of, dst_of = edge_lists(graph, origin)

    projections: list[Projection] = []
    for name, node in nodes.items():
        if not isinstance(node, nir.Affine | nir.Linear):
            continue
        srcs, dsts = src_of.get(name, []), dst_of.get(name, [])
        if len(srcs) != 1 or len(dsts) != 1:
            msg = f"{origin}: node {name!r} needs one input and one output edge, has {len(srcs)} and {len(dsts)}"
            raise ModelError(msg)
        src, dst = srcs[0], dsts[0]
        src = "input" if src == inputs[0] else src
        if src != "input" and src not in pops:
            msg = f"{origin}: node {name!r} is fed by {src!r}, which is not a neuron population or the Input"
            raise ModelError(msg)
        if dst not in pops:
            msg = f"{origin}: node {name!r} feeds {dst!r}, which is not a neuron population"
            raise ModelError(msg)
        if isinstance(node, nir.Affine) and np.any(np.asarray(node.bias) != 0):
            msg = f"{origin}: node {name!r} has a bias; the crossbar has no bias currents (use Linear)"
            raise ModelError(msg)
        weight = np.asarray(node.weight, dtype=np.float64)
        want = (pops[dst].size, n_inputs if src == "input" else pops[src].size)
        if weight.shape != want:
            msg = f"{origin}: node {name!r} weight has shape {weight.shape}, expected {want} ({src} -> {dst})"
            raise ModelError(msg)
        if not np.isfinite(weight).all():
            msg = f"{origin}: node {name!r} weight contains NaN or Inf"
            raise ModelError(msg)
        jump = weight * (w_in[dst] / pops[dst].tau_syn_s)[:, None]
        projections.append(Projection(name=name, source=src, target=dst, weight=jump))

    out_src = src_of.get(outputs[0], [])
    if len(out_src) != 1 or out_src[0] not in pops:
        msg = f"{origin}: the Output node must be fed by exactly one neuron population, got {out_src}"
        raise ModelError(msg)
    # Keep populations in graph order; the output population last so it maps to the top neurons.
    order = [p for p in pops if p != out_src[0]] + [out_src[0]]
    return Network(
        n_inputs=n_inputs,
        populations=tuple(pops[p] for p in order),
        projections=tuple(projections),
        output=out_src[0],
    )


def read_graph(path: Path, *, type_check: bool = True) -> nir.NIRGraph:
    """Read a NIR file; ``type_check=False`` skips nir's type inference (it rejects sinabs' placeholder shapes)."""
    try:
        graph = nir.read(str(path), type_check=False)
    except FileNotFoundError as exc:
        msg = f"{path}: model file not found"
        raise ModelError(msg) from exc
    except Exception as exc:  # h5py and nir raise many types for a broken file
        msg = f"{path}: not a readable NIR file ({type(exc).__name__}: {exc})"
        raise ModelError(msg) from exc
    if type_check:
        check_graph_types(graph, path)
    return graph


def check_graph_types(graph: nir.NIRGraph, path: Path) -> None:
    """What ``nir.read(type_check=True)`` does after reading, with our error."""
    try:
        graph.infer_types()
        graph.check_types()
    except Exception as exc:  # nir raises several types for inconsistent shapes
        msg = f"{path}: not a readable NIR file ({type(exc).__name__}: {exc})"
        raise ModelError(msg) from exc


def edge_lists(graph: nir.NIRGraph, origin: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``(sources, targets)`` of every node; an edge naming an unknown node is an error."""
    src_of: dict[str, list[str]] = {}
    dst_of: dict[str, list[str]] = {}
    for a, b in graph.edges:
        if a not in graph.nodes or b not in graph.nodes:
            msg = f"{origin}: edge {a!r} -> {b!r} names a node that does not exist"
            raise ModelError(msg)
        dst_of.setdefault(a, []).append(b)
        src_of.setdefault(b, []).append(a)
    return src_of, dst_of


def read_network(path: Path) -> Network:
    return graph_to_network(read_graph(path), origin=str(path))


def network_to_graph(net: Network) -> nir.NIRGraph:
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type={"input": np.array([net.n_inputs])}),
        "output": nir.Output(output_type={"output": np.array([net.population(net.output).size])}),
    }
    for pop in net.populations:
        common = {"tau_syn": pop.tau_syn_s, "tau_mem": pop.tau_mem_s, "r": pop.r, "v_leak": pop.v_leak}
        if pop.spiking:
            nodes[pop.name] = nir.CubaLIF(**common, v_threshold=pop.v_threshold, v_reset=pop.v_reset)
        else:
            nodes[pop.name] = nir.CubaLI(**common)
    edges: list[tuple[str, str]] = []
    for proj in net.projections:
        tau_syn = net.population(proj.target).tau_syn_s
        nodes[proj.name] = nir.Linear(weight=proj.weight * tau_syn[:, None])
        edges += [(proj.source, proj.name), (proj.name, proj.target)]
    edges.append((net.output, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


def write_network(net: Network, path: Path) -> None:
    nir.write(str(path), network_to_graph(net))
