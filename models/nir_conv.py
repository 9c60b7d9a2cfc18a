"""NIR graphs to and from ``ConvNet``: spiking conv networks for DynapCNN-style chips.

A conv graph must be one chain::

    Input -> Conv2d -> IF -> [SumPool2d] -> ... -> [Flatten -> Affine/Linear -> IF] -> Output

How NIR maps onto ``ConvNet`` (see ``models.convnet`` for the layer semantics):

* Conv2d: weight ``(F, C, ky, kx)``; int or pair stride and padding (``"valid"``, and
  ``"same"`` for stride 1 with odd kernels); dilation 1, groups 1, bias absent or zero (the
  chip has no bias without a leak clock).
* Flatten + Affine/Linear: a layer whose kernel is the whole ``(C, H, W)`` map, weight
  ``(n, C*H*W)`` reshaped to ``(n, C, H, W)`` in C order (PyTorch's flatten order). The
  Flatten's dims are not used: sinabs writes torch's ``start_dim=1``, which counts a batch
  dimension NIR shapes do not have, so any Flatten is read as "flatten the whole map".
* IF: ``r`` scales the incoming weights (chip weight = ``r * w``); it may differ between
  output channels but not within one. ``v_threshold`` is the layer's threshold and must be
  uniform (the chip has one threshold per layer). ``v_reset`` must be 0 or absent: the chip
  resets by *subtraction* (``v -= threshold``), which is what sinabs' IAF does and how it
  exports it (as IF with ``v_reset = 0``), although NIR's IF nominally resets to ``v_reset``.
  ``metadata["v_min"]`` is the state floor (``-inf`` when absent).
* SumPool2d: square, stride == kernel, no padding; pools the preceding layer's spikes
  (consecutive pools multiply).

Export writes exactly this form back (``r = 1``), so ``read_convnet(write_convnet(net))``
gives ``net`` again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import nir
import numpy as np

from models.convnet import F64, ConvLayer, ConvNet, Shape3
from models.network import ModelError
from models.nir_io import edge_lists, read_graph

SUPPORTED = "Input, Output, Conv2d, SumPool2d, IF, Flatten, Affine (zero bias), Linear"
CHAIN = "conv chips take one chain Input -> Conv2d -> IF -> [SumPool2d] -> ... -> Output"
_ALLOWED = (nir.Input, nir.Output, nir.Conv2d, nir.SumPool2d, nir.IF, nir.Flatten, nir.Affine, nir.Linear)
_CONV_ONLY = (nir.Conv2d, nir.SumPool2d, nir.IF, nir.Flatten)


def graph_is_conv(graph: nir.NIRGraph) -> bool:
    """True when the graph holds a node only conv networks use (Conv2d, IF, SumPool2d, Flatten)."""
    return any(isinstance(node, _CONV_ONLY) for node in graph.nodes.values())


def is_conv_graph(path: Path) -> bool:
    return graph_is_conv(read_graph(path, type_check=False))


def _fail(origin: str, name: str, problem: str) -> ModelError:
    return ModelError(f"{origin}: node {name!r}: {problem}")


def _pair(value: object, origin: str, name: str, what: str) -> tuple[int, int]:
    arr = np.asarray(value).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or not np.all(arr == np.round(arr)):
        raise _fail(origin, name, f"{what} {value!r} is not an int or a pair of ints")
    return int(arr[0]), int(arr[1])


def _ints(value: object) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(value).reshape(-1))


def _finite(arr: F64, origin: str, name: str, what: str) -> F64:
    if not np.isfinite(arr).all():
        raise _fail(origin, name, f"{what} contains NaN or Inf")
    return arr


def _zero_bias(bias: object, origin: str, name: str) -> None:
    if bias is not None and np.any(np.asarray(bias, dtype=np.float64) != 0):
        raise _fail(origin, name, "has a non-zero bias; the chip has no bias without a leak clock")


def _per_neuron(value: object, shape: Shape3, origin: str, name: str, what: str) -> F64:
    """``value`` as one number per neuron of ``shape``: a scalar, one per channel, or the full map
    (with any leading batch/time copies, as sinabs writes them, which must agree)."""
    given = np.asarray(value, dtype=np.float64)
    arr = given.reshape(-1)
    n = shape[0] * shape[1] * shape[2]
    if arr.size == 1:
        return np.full(shape, arr[0])
    if arr.size == shape[0]:
        return np.broadcast_to(arr[:, None, None], shape).copy()
    if arr.size == 0 or arr.size % n:
        raise _fail(origin, name, f"{what} has shape {given.shape}, the neurons are {shape}")
    copies = arr.reshape(-1, n)
    if not (copies == copies[0]).all():
        raise _fail(origin, name, f"{what} differs between its leading (batch) copies")
    first: F64 = copies[0].reshape(shape)
    return first


@dataclass(slots=True)
class _Synapse:
    name: str
    in_shape: Shape3
    weight: F64
    stride: tuple[int, int]
    padding: tuple[int, int]

    @property
    def out_shape(self) -> Shape3:
        _, h, w = self.in_shape
        f, _, ky, kx = self.weight.shape
        (sy, sx), (py, px) = self.stride, self.padding
        return int(f), (h + 2 * py - ky) // sy + 1, (w + 2 * px - kx) // sx + 1


@dataclass(slots=True)
class _Builder:
    """Walks the chain node by node, enforcing synapse -> IF -> [pool] order."""

    origin: str
    input_shape: Shape3
    shape: Shape3 = field(init=False)
    layers: list[ConvLayer] = field(default_factory=list)
    synapse: _Synapse | None = None
    flatten: str | None = None
    """Name of a Flatten waiting for its Affine/Linear."""

    def __post_init__(self) -> None:
        self.shape = self.input_shape

    def _expect_no_synapse(self, name: str, node: nir.NIRNode) -> None:
        if self.synapse is not None:
            problem = f"{type(node).__name__} follows {self.synapse.name!r} without an IF in between ({CHAIN})"
            raise _fail(self.origin, name, problem)

    def add(self, name: str, node: nir.NIRNode) -> None:
        if self.flatten is not None and not isinstance(node, nir.Affine | nir.Linear):
            problem = f"is followed by {type(node).__name__} {name!r}; a Flatten must be followed by Affine or Linear"
            raise _fail(self.origin, self.flatten, problem)
        if isinstance(node, nir.Conv2d):
            self._conv(name, node)
        elif isinstance(node, nir.Flatten):
            self._expect_no_synapse(name, node)
            self.flatten = name
        elif isinstance(node, nir.Affine | nir.Linear):
            self._dense(name, node)
        elif isinstance(node, nir.IF):
            self._spiking(name, node)
        elif isinstance(node, nir.SumPool2d):
            self._pool(name, node)
        else:
            raise _fail(self.origin, name, f"{type(node).__name__} inside the chain; {CHAIN}")

    def _conv(self, name: str, node: nir.Conv2d) -> None:
        self._expect_no_synapse(name, node)
        o, n = self.origin, name
        weight = _finite(np.asarray(node.weight, dtype=np.float64), o, n, "weight")
        if weight.ndim != 4:
            raise _fail(o, n, f"weight has shape {weight.shape}, expected (out, in, ky, kx)")
        if weight.shape[1] != self.shape[0]:
            raise _fail(o, n, f"weight {weight.shape} takes {weight.shape[1]} channels but receives {self.shape}")
        if node.input_shape is not None and _pair(node.input_shape, o, n, "input_shape") != self.shape[1:]:
            raise _fail(o, n, f"input_shape {_ints(node.input_shape)} but receives {self.shape}")
        if _pair(node.dilation, o, n, "dilation") != (1, 1) or int(np.asarray(node.groups)) != 1:
            raise _fail(o, n, f"dilation {node.dilation!r} / groups {node.groups!r}: the chip needs 1 and 1")
        _zero_bias(node.bias, o, n)
        stride = _pair(node.stride, o, n, "stride")
        syn = _Synapse(n, self.shape, weight, stride, self._padding(node.padding, weight, stride, n))
        if min(syn.out_shape[1:]) < 1:
            raise _fail(o, n, f"kernel {weight.shape[2:]} does not fit input {self.shape}")
        self.synapse = syn

    def _padding(self, padding: object, weight: F64, stride: tuple[int, int], name: str) -> tuple[int, int]:
        if isinstance(padding, bytes):
            padding = padding.decode()
        if isinstance(padding, str) and padding == "valid":
            return 0, 0
        ky, kx = int(weight.shape[2]), int(weight.shape[3])
        if isinstance(padding, str) and padding == "same":
            if stride != (1, 1) or ky % 2 == 0 or kx % 2 == 0:
                raise _fail(self.origin, name, "padding 'same' needs stride 1 and odd kernel sizes")
            return (ky - 1) // 2, (kx - 1) // 2
        return _pair(padding, self.origin, name, "padding")

    def _dense(self, name: str, node: nir.Affine | nir.Linear) -> None:
        self._expect_no_synapse(name, node)
        o, n = self.origin, name
        c, h, w = self.shape
        if self.flatten is None and h * w > 1:
            raise _fail(o, n, f"receives a {self.shape} map; put a Flatten before {type(node).__name__}")
        weight = _finite(np.asarray(node.weight, dtype=np.float64), o, n, "weight")
        if weight.ndim != 2 or weight.shape[1] != c * h * w:
            raise _fail(o, n, f"weight has shape {weight.shape}, expected (n, {c * h * w}) for input {self.shape}")
        if isinstance(node, nir.Affine):
            _zero_bias(node.bias, o, n)
        self.flatten = None
        kernel = weight.reshape(weight.shape[0], c, h, w)
        self.synapse = _Synapse(n, self.shape, kernel, (1, 1), (0, 0))

    def _spiking(self, name: str, node: nir.IF) -> None:
        o, syn = self.origin, self.synapse
        if syn is None:
            raise _fail(o, name, "IF needs a Conv2d, Affine or Linear right before it")
        shape = syn.out_shape
        r = _finite(_per_neuron(node.r, shape, o, name, "r"), o, name, "r")
        if not (r == r[:, :1, :1]).all():
            raise _fail(o, name, "r varies within an output channel; supported: one r per layer or per channel")
        thr = _per_neuron(node.v_threshold, shape, o, name, "v_threshold")
        if not (thr == thr.flat[0]).all():
            problem = f"v_threshold varies ({thr.min()}..{thr.max()}); the chip has one threshold per layer"
            raise _fail(o, name, problem)
        threshold = float(thr.flat[0])
        if not np.isfinite(threshold) or threshold <= 0:
            raise _fail(o, name, f"v_threshold {threshold} must be finite and > 0")
        if node.v_reset is not None and np.any(np.asarray(node.v_reset, dtype=np.float64) != 0):
            raise _fail(o, name, "v_reset must be 0: the chip resets by subtracting the threshold")
        v_min = float(np.asarray((node.metadata or {}).get("v_min", -np.inf), dtype=np.float64))
        if np.isnan(v_min):
            raise _fail(o, name, "metadata v_min is NaN")
        weight = syn.weight * r[:, 0, 0][:, None, None, None]
        layer = ConvLayer(syn.name, syn.in_shape, weight, syn.stride, syn.padding, threshold, v_min)
        self.layers.append(layer)
        self.synapse = None
        self.shape = layer.out_shape

    def _pool(self, name: str, node: nir.SumPool2d) -> None:
        o = self.origin
        self._expect_no_synapse(name, node)
        if not self.layers:
            raise _fail(o, name, "SumPool2d before the first IF; pool the input in the DVS front end instead")
        k = _pair(node.kernel_size, o, name, "kernel_size")
        stride = _pair(node.stride, o, name, "stride") if node.stride is not None else k
        pad = _pair(node.padding, o, name, "padding") if node.padding is not None else (0, 0)
        if k[0] != k[1] or stride != k or pad != (0, 0) or k[0] < 1:
            problem = f"kernel {k}, stride {stride}, padding {pad}: the chip pools square, stride = kernel, no padding"
            raise _fail(o, name, problem)
        layer = replace(self.layers[-1], pool=self.layers[-1].pool * k[0])
        if min(layer.out_shape[1:]) < 1:
            raise _fail(o, name, f"pooling {layer.conv_shape} by {layer.pool} leaves no neurons")
        self.layers[-1] = layer
        self.shape = layer.out_shape

    def finish(self, name: str, node: nir.NIRNode) -> ConvNet:
        if self.synapse is not None:
            raise _fail(self.origin, self.synapse.name, f"is not followed by an IF ({CHAIN})")
        if not self.layers:
            raise _fail(self.origin, name, f"the chain has no spiking layer ({CHAIN})")
        declared = node.output_type.get("output") if node.output_type else None
        size = self.shape[0] * self.shape[1] * self.shape[2]
        if declared is not None and np.asarray(declared).size and np.prod(declared) not in (0, size):
            raise _fail(self.origin, name, f"declares shape {_ints(declared)} but receives {self.shape}")
        return ConvNet(self.input_shape, tuple(self.layers))


def _chain(graph: nir.NIRGraph, origin: str) -> list[str]:
    """Node names from the Input to the Output; anything that is not one chain is an error."""
    nodes = graph.nodes
    for name, node in nodes.items():
        if not isinstance(node, _ALLOWED):
            raise _fail(origin, name, f"is {type(node).__name__}; supported for conv chips: {SUPPORTED}")
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        msg = f"{origin}: needs exactly one Input node, found {len(inputs)} ({CHAIN})"
        raise ModelError(msg)
    pred, succ = edge_lists(graph, origin)
    for name in nodes:
        for what, links in (("inputs", pred.get(name, [])), ("outputs", succ.get(name, []))):
            if len(links) > 1:
                raise _fail(origin, name, f"has {len(links)} {what} ({', '.join(links)}); {CHAIN}")
    order = [inputs[0]]
    while order[-1] in succ:
        nxt = succ[order[-1]][0]
        if nxt in order:
            raise _fail(origin, nxt, f"closes a cycle; {CHAIN}")
        order.append(nxt)
    last = nodes[order[-1]]
    if not isinstance(last, nir.Output):
        raise _fail(origin, order[-1], f"ends the chain but is {type(last).__name__}, not Output; {CHAIN}")
    stray = [k for k in nodes if k not in order]
    if stray:
        raise _fail(origin, stray[0], f"is not on the chain from {inputs[0]!r} to {order[-1]!r}; {CHAIN}")
    return order


def _input_shape(graph: nir.NIRGraph, chain: list[str], origin: str) -> Shape3:
    node = graph.nodes[chain[0]]
    declared = node.input_type.get("input") if node.input_type else None
    dims = tuple(int(d) for d in np.asarray(declared).reshape(-1)) if declared is not None else ()
    if len(dims) == 4 and dims[0] == 1:
        dims = dims[1:]
    if len(dims) == 3 and min(dims) > 0:
        return dims[0], dims[1], dims[2]
    first = graph.nodes[chain[1]] if len(chain) > 1 else None
    if isinstance(first, nir.Conv2d) and first.input_shape is not None:
        h, w = _pair(first.input_shape, origin, chain[1], "input_shape")
        return int(np.asarray(first.weight).shape[1]), h, w
    problem = f"shape {dims} is not (C, H, W) or (1, C, H, W), and no first Conv2d gives an input_shape"
    raise _fail(origin, chain[0], problem)


def graph_to_convnet(graph: nir.NIRGraph, origin: str = "graph") -> ConvNet:
    chain = _chain(graph, origin)
    builder = _Builder(origin, _input_shape(graph, chain, origin))
    for name in chain[1:-1]:
        builder.add(name, graph.nodes[name])
    return builder.finish(chain[-1], graph.nodes[chain[-1]])


def read_convnet(path: Path) -> ConvNet:
    # Unchecked: nir's type inference rejects the placeholder shapes sinabs writes.
    return graph_to_convnet(read_graph(path, type_check=False), origin=str(path))


def _dense_flags(net: ConvNet) -> list[bool]:
    """Layers written as Flatten + Affine: the kernel is the whole input map, and every later
    layer is dense too (a Conv2d cannot follow a flat IF without a reshape NIR lacks)."""
    flags = [False] * len(net.layers)
    later_dense = True
    for i in range(len(net.layers) - 1, -1, -1):
        layer = net.layers[i]
        whole = layer.kernel == layer.in_shape[1:] and layer.padding == (0, 0) and layer.stride == (1, 1)
        flags[i] = later_dense = later_dense and whole and layer.pool == 1
    return flags


def convnet_to_graph(net: ConvNet, metadata: dict[str, Any] | None = None) -> nir.NIRGraph:
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array(net.input_shape)})}
    edges: list[tuple[str, str]] = []
    prev, prev_shape = "input", tuple(net.input_shape)

    def link(name: str, node: nir.NIRNode) -> None:
        nonlocal prev
        if name in nodes:
            msg = f"layer names clash: node {name!r} would be written twice"
            raise ModelError(msg)
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    for layer, dense in zip(net.layers, _dense_flags(net), strict=True):
        n_out = int(layer.weight.shape[0])
        if dense:
            if len(prev_shape) == 3:
                link(f"{layer.name}_flatten", nir.Flatten(input_type={"input": np.array(layer.in_shape)}, start_dim=0))
            link(layer.name, nir.Affine(weight=layer.weight.reshape(n_out, -1), bias=np.zeros(n_out)))
            prev_shape = (n_out,)
        else:
            conv = nir.Conv2d(
                input_shape=layer.in_shape[1:],
                weight=layer.weight,
                stride=layer.stride,
                padding=layer.padding,
                dilation=1,
                groups=1,
                bias=np.zeros(n_out),
            )
            link(layer.name, conv)
            prev_shape = layer.conv_shape
        meta = {"v_min": layer.v_min} if np.isfinite(layer.v_min) else {}
        ones = np.ones(prev_shape)
        spk = nir.IF(r=ones, v_threshold=ones * layer.threshold, v_reset=np.zeros(prev_shape), metadata=meta)
        link(f"{layer.name}_if", spk)
        if layer.pool > 1:
            p = np.array([layer.pool, layer.pool])
            link(f"{layer.name}_pool", nir.SumPool2d(kernel_size=p, stride=p, padding=np.zeros(2, dtype=np.int64)))
            prev_shape = layer.out_shape
    link("output", nir.Output(output_type={"output": np.array(prev_shape)}))
    # type_check=True: nir's own shape inference double-checks what we write.
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(metadata or {}), type_check=True)


def write_convnet(net: ConvNet, path: Path, *, metadata: dict[str, Any] | None = None) -> None:
    """Write ``net`` as NIR; ``metadata`` (str/number/array values) is stored on the graph."""
    nir.write(str(path), convnet_to_graph(net, metadata))
