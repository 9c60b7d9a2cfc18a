"""NIR import/export of conv networks: exact round trips, sinabs-style graphs, errors naming the node."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest

from models.bundle import load_bundle
from models.convnet import ConvLayer, ConvNet
from models.network import ModelError, Network
from models.nir_conv import SUPPORTED, convnet_to_graph, graph_to_convnet, read_convnet, write_convnet
from models.nir_io import write_network

RNG = np.random.default_rng(7)


def conv_net() -> ConvNet:
    """conv+pool, strided conv, a conv whose kernel is the whole map (dense) and a dense layer."""
    rng = np.random.default_rng(1)
    c1 = ConvLayer("c1", (2, 16, 16), rng.normal(size=(4, 2, 3, 3)), (1, 1), (1, 1), 1.5, -2.0, pool=2)
    c2 = ConvLayer("c2", c1.out_shape, rng.normal(size=(6, 4, 3, 3)), (2, 2), (0, 0), 2.0, -np.inf, pool=1)
    fc1 = ConvLayer("fc1", c2.out_shape, rng.normal(size=(5, *c2.out_shape)), (1, 1), (0, 0), 1.0, -np.inf)
    fc2 = ConvLayer("fc2", fc1.out_shape, rng.normal(size=(3, 5, 1, 1)), (1, 1), (0, 0), 0.5, -1.0)
    return ConvNet((2, 16, 16), (c1, c2, fc1, fc2))


def assert_same(a: ConvNet, b: ConvNet) -> None:
    assert a.input_shape == b.input_shape
    assert len(a.layers) == len(b.layers)
    for x, y in zip(a.layers, b.layers, strict=True):
        assert (x.name, x.in_shape, x.stride, x.padding, x.pool) == (y.name, y.in_shape, y.stride, y.padding, y.pool)
        assert x.threshold == y.threshold and x.v_min == y.v_min
        np.testing.assert_array_equal(x.weight, y.weight)


def test_round_trip_is_exact_and_dense_layers_stay_dense(tmp_path: Path) -> None:
    net = conv_net()
    write_convnet(net, tmp_path / "m.nir", metadata={"source": "test"})
    assert_same(read_convnet(tmp_path / "m.nir"), net)
    graph = nir.read(str(tmp_path / "m.nir"))  # nir's own type check accepts what we write
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds["c1"] == "Conv2d" and kinds["c1_pool"] == "SumPool2d" and kinds["c2"] == "Conv2d"
    assert kinds["fc1_flatten"] == "Flatten" and kinds["fc1"] == "Affine" and kinds["fc2"] == "Affine"
    assert "c2_pool" not in kinds
    assert graph.metadata["source"] == "test"
    np.testing.assert_array_equal(graph.nodes["fc1"].weight, net.layers[2].weight.reshape(5, -1))
    assert graph.nodes["c1_if"].metadata["v_min"] == -2.0 and "v_min" not in graph.nodes["c2_if"].metadata


def test_full_kernel_before_a_conv_is_written_as_conv(tmp_path: Path) -> None:
    a = ConvLayer("a", (1, 4, 4), RNG.normal(size=(3, 1, 4, 4)), (1, 1), (0, 0), 1.0, -np.inf)
    b = ConvLayer("b", (3, 1, 1), RNG.normal(size=(2, 3, 1, 1)), (1, 1), (1, 1), 1.0, -np.inf)
    net = ConvNet((1, 4, 4), (a, b))
    assert isinstance(convnet_to_graph(net).nodes["a"], nir.Conv2d)
    write_convnet(net, tmp_path / "m.nir")
    assert_same(read_convnet(tmp_path / "m.nir"), net)


def test_name_clash_is_refused() -> None:
    layer = ConvLayer("output", (1, 2, 2), np.ones((2, 1, 2, 2)), (1, 1), (0, 0), 1.0, -np.inf)
    with pytest.raises(ModelError, match="node 'output' would be written twice"):
        convnet_to_graph(ConvNet((1, 2, 2), (layer,)))


# A graph as sinabs' to_nir writes a Sequential(Conv2d, IAF, SumPool2d, Conv2d, IAF, Flatten, Linear, IAF):
# zero biases, IF parameters shaped like v_mem (with a batch dim), no v_reset,
# Flatten with torch's start_dim=1 and a placeholder input_type.
W1 = RNG.normal(size=(4, 2, 3, 3))
W2 = RNG.normal(size=(6, 4, 3, 3))
W3 = RNG.normal(size=(3, 24))
R1 = np.array([1.0, 2.0, 0.5, 3.0])


def sinabs_nodes(**replace: nir.NIRNode) -> dict[str, nir.NIRNode]:
    def iaf(shape: tuple[int, ...], thr: float, r: Any = None) -> nir.IF:
        return nir.IF(r=np.ones(shape) if r is None else r, v_threshold=np.full(shape, thr))

    def conv(w: np.ndarray, pad: int, hw: tuple[int, int]) -> nir.Conv2d:
        return nir.Conv2d(hw, w, (1, 1), (pad, pad), (1, 1), 1, np.zeros(w.shape[0]))

    r1 = np.broadcast_to(R1[None, :, None, None], (1, 4, 8, 8)).copy()
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 2, 8, 8])}),
        "0": conv(W1, 1, (8, 8)),
        "1": iaf((1, 4, 8, 8), 1.5, r1),
        "2": nir.SumPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)),
        "3": conv(W2, 0, (4, 4)),
        "4": iaf((1, 6, 2, 2), 2.0),
        "5": nir.Flatten(input_type={"input": np.array([0, 0, 0, 0])}, start_dim=1, end_dim=-1),
        "6": nir.Affine(W3, np.zeros(3)),
        "7": iaf((1, 3), 1.0),
        "output": nir.Output(output_type={"output": np.array([1, 3])}),
    }
    nodes.update(replace)
    return nodes


def chain(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]] | None = None) -> nir.NIRGraph:
    names = list(nodes)
    edges = list(pairwise(names)) if edges is None else edges
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_sinabs_style_graph_imports(tmp_path: Path) -> None:
    nodes = sinabs_nodes()
    nodes["1"].metadata = {"v_min": -3.0}
    nir.write(str(tmp_path / "s.nir"), chain(nodes))
    net = read_convnet(tmp_path / "s.nir")
    expected = ConvNet(
        (2, 8, 8),
        (
            ConvLayer("0", (2, 8, 8), W1 * R1[:, None, None, None], (1, 1), (1, 1), 1.5, -3.0, pool=2),
            ConvLayer("3", (4, 4, 4), W2, (1, 1), (0, 0), 2.0, -np.inf),
            ConvLayer("6", (6, 2, 2), W3.reshape(3, 6, 2, 2), (1, 1), (0, 0), 1.0, -np.inf),
        ),
    )
    assert_same(net, expected)
    assert net.n_outputs == 3


def test_linear_padding_strings_and_input_shape_from_first_conv() -> None:
    first = nir.Conv2d((8, 8), W1, 1, "same", 1, 1, np.zeros(4))
    second = nir.Conv2d(None, W2, 1, "valid", 1, 1, None)  # shape left to the chain, bias absent
    replace = {"0": first, "3": second, "6": nir.Linear(W3)}
    nodes = sinabs_nodes(input=nir.Input(input_type={"input": np.array([128])}), **replace)
    net = graph_to_convnet(chain(nodes))
    assert net.layers[1].in_shape == (4, 4, 4) and net.layers[1].padding == (0, 0)
    assert net.input_shape == (2, 8, 8) and net.layers[0].padding == (1, 1)
    np.testing.assert_array_equal(net.layers[2].weight, W3.reshape(3, 6, 2, 2))


@pytest.mark.parametrize(
    ("name", "node", "pattern"),
    [
        ("1", nir.LIF(np.ones(4), np.ones(4), np.zeros(4), np.ones(4)), "is LIF"),
        ("1", nir.CubaLIF(np.ones(4), np.ones(4), np.ones(4), np.zeros(4), np.ones(4)), "is CubaLIF"),
        ("2", nir.AvgPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])), "is AvgPool2d"),
        ("1", nir.Threshold(np.ones(4)), "is Threshold"),
    ],
)
def test_unsupported_node_is_named_with_what_is_supported(name: str, node: nir.NIRNode, pattern: str) -> None:
    with pytest.raises(ModelError, match=rf"node '{name}': {pattern}; supported for conv chips: ") as info:
        graph_to_convnet(chain(sinabs_nodes(**{name: node})))
    assert SUPPORTED in str(info.value)
    assert SUPPORTED == "Input, Output, Conv2d, SumPool2d, IF, Flatten, Affine (zero bias), Linear"


def test_branches_merges_cycles_and_strays_are_named() -> None:
    nodes = sinabs_nodes()
    names = list(nodes)
    straight = list(pairwise(names))
    with pytest.raises(ModelError, match=r"node '1': has 2 outputs \(2, 4\)"):
        graph_to_convnet(chain(nodes, [*straight, ("1", "4")]))
    with pytest.raises(ModelError, match=r"node '3': has 2 inputs \(2, x\)"):
        graph_to_convnet(chain({**nodes, "x": nodes["0"]}, [*straight, ("x", "3")]))
    with pytest.raises(ModelError, match=r"node '4': is not on the chain"):
        graph_to_convnet(chain(nodes, [e for e in straight if "4" not in e] + [("3", "5")]))
    inner_output = {**nodes, "out2": nir.Output(output_type={"output": np.array([3])})}
    with pytest.raises(ModelError, match=r"node 'output': Output inside the chain"):
        graph_to_convnet(chain(inner_output))
    with pytest.raises(ModelError, match=r"node '5': ends the chain but is Flatten"):
        graph_to_convnet(chain({k: v for k, v in nodes.items() if k in names[:7]}))


def test_cycles_are_named() -> None:
    nodes = sinabs_nodes()
    keep = {k: nodes[k] for k in ("input", "0", "1")}
    with pytest.raises(ModelError, match=r"node 'input': closes a cycle"):
        graph_to_convnet(chain(keep, [("input", "0"), ("0", "1"), ("1", "input")]))
    loop = [("input", "0"), ("0", "1"), ("1", "2"), ("2", "0")]  # back into the chain: '0' has two inputs
    with pytest.raises(ModelError, match=r"node '0': has 2 inputs \(input, 2\)"):
        graph_to_convnet(chain({k: nodes[k] for k in ("input", "0", "1", "2")}, loop))


def conv_with(**kw: Any) -> nir.Conv2d:
    args: dict[str, Any] = {"input_shape": None, "weight": W1, "stride": 1, "padding": 1, "dilation": 1}
    args |= {"groups": 1, "bias": np.zeros(4)} | kw
    return nir.Conv2d(**args)


@pytest.mark.parametrize(
    ("name", "node", "pattern"),
    [
        ("0", conv_with(bias=np.ones(4)), "non-zero bias"),
        ("6", nir.Affine(W3, np.ones(3)), "non-zero bias"),
        ("0", conv_with(dilation=2), "dilation"),
        ("0", conv_with(groups=2), "groups"),
        ("0", conv_with(weight=RNG.normal(size=(4, 3, 3, 3))), r"takes 3 channels but receives \(2, 8, 8\)"),
        ("0", conv_with(input_shape=(9, 8)), r"input_shape \(9, 8\) but receives \(2, 8, 8\)"),
        ("0", conv_with(padding="same", stride=2), "padding 'same' needs stride 1"),
        ("6", nir.Affine(np.ones((3, 25)), np.zeros(3)), r"weight has shape \(3, 25\), expected \(n, 24\)"),
        ("6", nir.Affine(np.full((3, 24), np.nan), np.zeros(3)), "weight contains NaN"),
        ("0", conv_with(weight=np.where(W1 > 0, np.nan, W1)), "weight contains NaN"),
        ("2", nir.SumPool2d(np.array([2, 1]), np.array([2, 1]), np.array([0, 0])), r"kernel \(2, 1\)"),
        ("2", nir.SumPool2d(np.array([2, 2]), np.array([1, 1]), np.array([0, 0])), r"stride \(1, 1\)"),
        ("2", nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([1, 1])), r"padding \(1, 1\)"),
        ("4", nir.IF(np.ones((6, 2, 2)), np.arange(24.0).reshape(6, 2, 2) + 1), "one threshold per layer"),
        ("4", nir.IF(np.arange(24.0).reshape(6, 2, 2), np.ones((6, 2, 2))), "r varies within an output channel"),
        ("4", nir.IF(np.ones(6), np.ones(6), np.ones(6)), "v_reset must be 0"),
        ("4", nir.IF(np.ones(5), np.ones(5)), r"r has shape \(5,\), the neurons are \(6, 2, 2\)"),
        ("4", nir.IF(np.ones(1), np.zeros(1)), "v_threshold 0.0 must be finite and > 0"),
        ("output", nir.Output(output_type={"output": np.array([4])}), r"declares shape \(4,\) but receives"),
    ],
)
def test_bad_node_is_named(name: str, node: nir.NIRNode, pattern: str) -> None:
    with pytest.raises(ModelError, match=rf"node '{name}': .*{pattern}"):
        graph_to_convnet(chain(sinabs_nodes(**{name: node})))


def test_order_errors_are_named() -> None:
    nodes = sinabs_nodes()
    no_if = {k: v for k, v in nodes.items() if k != "4"}
    with pytest.raises(ModelError, match=r"node '5': Flatten follows '3' without an IF"):
        graph_to_convnet(chain(no_if))
    last_no_if = {k: v for k, v in nodes.items() if k != "7"}
    with pytest.raises(ModelError, match=r"node '6': is not followed by an IF"):
        graph_to_convnet(chain(last_no_if))
    pool_first = {"input": nodes["input"], "p": nodes["2"], **{k: nodes[k] for k in ("0", "1", "output")}}
    with pytest.raises(ModelError, match=r"node 'p': SumPool2d before the first IF"):
        graph_to_convnet(chain(pool_first))
    if_first = {"input": nodes["input"], "i": nodes["1"], "output": nodes["output"]}
    with pytest.raises(ModelError, match=r"node 'i': IF needs a Conv2d, Affine or Linear"):
        graph_to_convnet(chain(if_first))
    flat_conv = sinabs_nodes(**{"6": nir.Conv2d(None, np.ones((3, 6, 2, 2)), 1, 0, 1, 1, np.zeros(3))})
    with pytest.raises(ModelError, match=r"node '5': is followed by Conv2d '6'; a Flatten must be followed by Aff"):
        graph_to_convnet(chain(flat_conv))
    dense_no_flatten = {k: v for k, v in nodes.items() if k != "5"}
    with pytest.raises(ModelError, match=r"node '6': receives a \(6, 2, 2\) map; put a Flatten"):
        graph_to_convnet(chain(dense_no_flatten))


def test_missing_and_broken_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"missing\.nir: model file not found"):
        read_convnet(tmp_path / "missing.nir")
    (tmp_path / "broken.nir").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 50)
    with pytest.raises(ModelError, match=r"broken\.nir: not a readable NIR file"):
        read_convnet(tmp_path / "broken.nir")


def write_bundle(root: Path, modality: str, labels: int) -> Path:
    root.mkdir()
    names = ", ".join(f'"{i}"' for i in range(labels))
    root.joinpath("manifest.toml").write_text(
        f'labels = [{names}]\n[model]\nname = "t"\nversion = "1"\nmodality = "{modality}"\n'
        f'target_chip = "dynapcnn"\n[encoder]\n[readout]\nkind = "spike_count"\n',
        encoding="utf-8",
    )
    return root


def test_bundle_loads_a_convnet_and_checks_labels(tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "conv", "dvs", 3)
    write_convnet(conv_net(), root / "model.nir")
    bundle = load_bundle(str(root))
    assert isinstance(bundle.network, ConvNet)
    assert_same(bundle.network, conv_net())
    bad = write_bundle(tmp_path / "bad", "audio", 4)  # a conv graph is a ConvNet whatever the modality
    write_convnet(conv_net(), bad / "model.nir")
    with pytest.raises(ModelError, match="the last layer has 3 output channels but the manifest lists 4 labels"):
        load_bundle(str(bad))


def test_bundle_keeps_dense_graphs_and_refuses_them_for_dvs(tmp_path: Path) -> None:
    from model_util import small_network

    root = write_bundle(tmp_path / "dense", "audio", 3)
    write_network(small_network(), root / "model.nir")
    assert isinstance(load_bundle(str(root)).network, Network)
    dvs = write_bundle(tmp_path / "dvs", "dvs", 3)
    write_network(small_network(), dvs / "model.nir")
    with pytest.raises(ModelError, match=r"node '(hidden|out)': is CubaLI"):
        load_bundle(str(dvs))


def test_bundle_refuses_a_map_output(tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "map", "dvs", 4)
    layer = ConvLayer("c", (1, 4, 4), np.ones((4, 1, 3, 3)), (1, 1), (0, 0), 1.0, -np.inf)
    write_convnet(ConvNet((1, 4, 4), (layer,)), root / "model.nir")
    with pytest.raises(ModelError, match=r"outputs a \(4, 2, 2\) map; a classifier's must be \(classes, 1, 1\)"):
        load_bundle(str(root))
