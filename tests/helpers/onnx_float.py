"""Reference runs of the shipped Magenta ONNX graphs with onnxruntime: as shipped (int8; any
size with `free_dims`), and as a float graph made from them here, independently of the
converter: every weight DequantizeLinear replaced by a float initializer, every activation
Quantize/DequantizeLinear removed (its consumers read the float tensor), any input size.

`same_upper=True` additionally replaces the fixed pads of the stride-2 convolutions (which the
exporter computed for 256x256: one pixel bottom/right) by ONNX's SAME_UPPER, i.e. TensorFlow's
"SAME", so the predictor graph can be compared at odd sizes too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from tests.helpers.stl_wheel import onnxruntime_module

_QDQ = ("QuantizeLinear", "DequantizeLinear")


def _dequantized(node: onnx.NodeProto, init: dict[str, np.ndarray]) -> np.ndarray:
    q = init[node.input[0]].astype(np.float64)
    scale = init[node.input[1]].astype(np.float64)
    zero = init[node.input[2]].astype(np.float64) if len(node.input) > 2 else 0 * scale
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and q.ndim > 1:
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((q - zero) * scale).astype(np.float32)


def float_graph(data: bytes, same_upper: bool = False) -> onnx.ModelProto:
    """The Q/DQ-free float version of an int8 graph (see the module docstring)."""
    model = onnx.load_from_string(data)
    graph = model.graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    rename: dict[str, str] = {}
    weights: list[onnx.TensorProto] = []
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in init:
            weights.append(numpy_helper.from_array(_dequantized(node, init), node.output[0]))
        elif node.op_type in _QDQ:
            rename[node.output[0]] = node.input[0]
        else:
            kept.append(node)

    def resolve(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    for node in kept:
        for index, name in enumerate(node.input):
            node.input[index] = resolve(name)
        if same_upper and node.op_type == "Conv" and any(
                a.name == "strides" and list(a.ints) != [1, 1] for a in node.attribute):
            pads = [a for a in node.attribute if a.name == "pads"]
            for attribute in pads:
                node.attribute.remove(attribute)
            node.attribute.append(helper.make_attribute("auto_pad", "SAME_UPPER"))
    for output in graph.output:            # graph outputs keep their names
        source = resolve(output.name)
        if source != output.name:
            kept.append(helper.make_node("Identity", [source], [output.name]))
    used = {name for node in kept for name in node.input}
    floats = [t for t in weights if t.name in used]
    others = [t for t in graph.initializer if t.name in used]     # pads, shapes, clip bounds
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(floats + others)
    free_dims(model)
    onnx.checker.check_model(model)
    return model


def free_dims(model: onnx.ModelProto) -> onnx.ModelProto:
    """Inputs and outputs of any size (the graphs declare 256 or 384 px), in place."""
    graph = model.graph
    del graph.value_info[:]
    for value in list(graph.input) + list(graph.output):
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            dim.dim_param = f"{value.name.replace('/', '_')}_{index}"
    return model


def session(model: onnx.ModelProto | bytes, threads: int = 2) -> Any:
    """An onnxruntime InferenceSession on the CPU (fails, or skips offline, without it)."""
    ort = onnxruntime_module()
    data = model if isinstance(model, bytes) else model.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _nhwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32)


def run_predictor(sess: Any, image: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W in [0, 1] (one image at a time, as the graph's reshapes want) -> [N, 100]."""
    name = sess.get_inputs()[0].name
    rows = [sess.run(None, {name: _nhwc(image[i:i + 1])})[0].reshape(1, -1)
            for i in range(image.shape[0])]
    return torch.from_numpy(np.concatenate(rows))


def run_transformer(sess: Any, content: torch.Tensor,
                    embedding: torch.Tensor) -> torch.Tensor:
    """Content 1 x 3 x H x W, embedding [1, 100] -> 1 x 3 x H' x W'."""
    image, style = (i.name for i in sess.get_inputs())
    out = sess.run(None, {image: _nhwc(content),
                          style: embedding.reshape(1, 1, 1, -1).numpy().astype(np.float32)})[0]
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
