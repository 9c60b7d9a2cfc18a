"""NIR import/export: exact round trip, and clear errors naming the node."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
from model_util import small_network

from models.network import ModelError
from models.nir_io import graph_to_network, network_to_graph, read_network, write_network


def test_round_trip_is_exact(tmp_path: Path) -> None:
    net = small_network()
    write_network(net, tmp_path / "m.nir")
    back = read_network(tmp_path / "m.nir")
    assert back.n_inputs == net.n_inputs and back.output == net.output
    assert [p.name for p in back.populations] == [p.name for p in net.populations]
    back_proj = {p.name: p for p in back.projections}
    assert set(back_proj) == {p.name for p in net.projections}
    for a in net.projections:
        b = back_proj[a.name]
        assert (a.source, a.target) == (b.source, b.target)
        np.testing.assert_allclose(a.weight, b.weight, rtol=1e-12)
    assert not back.population("out").spiking and back.population("hidden").spiking


def test_nir_weight_is_jump_times_tau_syn() -> None:
    graph = network_to_graph(small_network())
    jump = small_network().projections[0].weight
    np.testing.assert_allclose(graph.nodes["fc_in"].weight, jump * 5e-3)


def _graph_with(name: str, node: nir.NIRNode) -> nir.NIRGraph:
    # type_check off: a broken file is exactly what nir's own checks would not let us build.
    g = network_to_graph(small_network())
    nodes = dict(g.nodes)
    nodes[name] = node
    return nir.NIRGraph(nodes=nodes, edges=g.edges, type_check=False)


def test_unsupported_node_is_named() -> None:
    n = 6
    lif = nir.LIF(tau=np.full(n, 0.02), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n))
    with pytest.raises(
        ModelError,
        match=r"node 'hidden' is LIF; supported: Input, Output, Affine \(zero bias\), Linear, CubaLIF, CubaLI",
    ):
        graph_to_network(_graph_with("hidden", lif))


def test_shape_mismatch_is_named() -> None:
    with pytest.raises(
        ModelError, match=r"node 'fc_in' weight has shape \(7, 4\), expected \(6, 4\) \(input -> hidden\)"
    ):
        graph_to_network(_graph_with("fc_in", nir.Linear(weight=np.ones((7, 4)))))


def test_bias_and_nan_are_refused() -> None:
    with pytest.raises(ModelError, match="node 'fc_in' has a bias"):
        graph_to_network(_graph_with("fc_in", nir.Affine(weight=np.ones((6, 4)), bias=np.ones(6))))
    w = np.ones((6, 4))
    w[0, 0] = np.nan
    with pytest.raises(ModelError, match="node 'fc_in' weight contains NaN"):
        graph_to_network(_graph_with("fc_in", nir.Linear(weight=w)))


def test_broken_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.nir"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 50)
    with pytest.raises(ModelError, match=r"broken\.nir: not a readable NIR file"):
        read_network(bad)
    with pytest.raises(ModelError, match=r"missing\.nir: model file not found"):
        read_network(tmp_path / "missing.nir")
