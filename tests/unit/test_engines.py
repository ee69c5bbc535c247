"""Engines through the Runtime: shapes, channel layouts, dtypes, ranges, determinism, sizes,
the AdaIN identities, masks, caches, progress, cancellation and errors.

All models are random-weight files in the released layouts, installed as the model store lays
them out (tests/helpers/checkpoints.make_models_dir), and loaded by name like users do.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from backend.engines import get_engine
from stclient.registry import engine_names
from backend.engines.job import StylizeJob
from backend.networks.padding import crop, pad_to_multiple, padding_for, reflect_pad
from backend.networks import adain as adain_net
from backend.pixels import from_float_rgb, to_float_rgb
from backend.runtime import Runtime
from stclient.errors import (BAD_CHECKPOINT, BAD_IMAGE, BAD_REQUEST, MODEL_MISSING, UNKNOWN_MODEL,
                             Cancelled, StyleTransferError)
from tests.helpers import checkpoints as helpers

RNG = np.random.default_rng(7)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return helpers.make_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def rt(models_dir):
    return Runtime(device="cpu", models_dir=models_dir, threads=1)


def photo(height: int, width: int, channels: int = 3, dtype=np.uint8, seed: int = 0):
    """Smooth random pixels with some texture, in the given layout."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, channels, max(2, height // 6), max(2, width // 6), generator=gen)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear",
                                             align_corners=False)[0].permute(1, 2, 0).numpy()
    values = np.clip(smooth * 0.85 + RNG.random((height, width, channels)) * 0.15, 0, 1)
    if dtype == np.uint8:
        return np.round(values * 255).astype(np.uint8)
    if dtype == np.uint16:
        return np.round(values * 65535).astype(np.uint16)
    return values.astype(np.float32)


def adain(content, styles, **options) -> StylizeJob:
    return StylizeJob(engine="adain", content=content, styles=list(styles), options=options)


STYLE = photo(40, 56, seed=11)
STYLE2 = photo(48, 36, seed=12)


# ---------------------------------------------------------------- layouts, dtypes, sizes

@pytest.mark.parametrize("engine", ["adain", "cyclegan", "pix2pix"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_odd_sizes_and_channel_layouts_are_kept(rt, engine, channels):
    content = photo(77, 101, channels, seed=channels)
    job = StylizeJob(engine=engine, content=content, styles=[STYLE] if engine == "adain" else [])
    out = rt.stylize(job)
    assert out.shape == content.shape and out.dtype == np.uint8
    if channels in (2, 4):
        np.testing.assert_array_equal(out[..., -1], content[..., -1])   # alpha untouched
    colour = out[..., : 1 if channels <= 2 else 3]
    assert colour.std() > 2.0               # a real picture, not a constant
    assert colour.min() < 250 and colour.max() > 5


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_high_bit_depth_is_kept(rt, dtype):
    content = photo(40, 44, 4, dtype=dtype, seed=3)
    out = rt.stylize(StylizeJob(engine="cyclegan", content=content))
    assert out.dtype == dtype and out.shape == content.shape
    np.testing.assert_array_equal(out[..., 3], content[..., 3])
    if dtype == np.float32:
        assert 0.0 <= out.min() and out.max() <= 1.0
    else:  # 16-bit results use the full range, not 8-bit steps scaled up
        assert len(np.unique(out[..., :3])) > 300 and np.any(out[..., :3] % 257 != 0)


def test_grey_result_is_the_luma_of_the_colour_result(rt):
    grey = photo(32, 40, 1, seed=4)
    out_grey = rt.stylize(StylizeJob(engine="cyclegan", content=grey))
    out_rgb = rt.stylize(StylizeJob(engine="cyclegan", content=np.repeat(grey, 3, axis=2)))
    luma = np.round(out_rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114]))
    assert np.abs(out_grey[..., 0].astype(np.float32) - luma).max() <= 1.0


def test_color_output_gives_a_grey_image_the_colour_result(rt):
    grey = photo(32, 40, 1, seed=4)
    coloured = rt.stylize(StylizeJob(engine="cyclegan", content=grey,
                                     options={"color_output": True}))
    out_rgb = rt.stylize(StylizeJob(engine="cyclegan", content=np.repeat(grey, 3, axis=2)))
    np.testing.assert_array_equal(coloured, out_rgb)
    with_alpha = np.concatenate([grey, photo(32, 40, 1, seed=9)], axis=2)
    out = rt.stylize(StylizeJob(engine="cyclegan", content=with_alpha,
                                options={"color_output": True}))
    assert out.shape == (32, 40, 4)
    np.testing.assert_array_equal(out[..., 3], with_alpha[..., 1])


def test_rounding_not_truncation():
    rgb = np.full((2, 2, 3), 254.6 / 255, np.float32)       # 254.6 -> 255 (truncation: 254)
    like = np.zeros((2, 2, 3), np.uint8)
    assert from_float_rgb(rgb, like, None)[0, 0, 0] == 255
    rgb_back, alpha = to_float_rgb(np.zeros((2, 2, 2), np.uint16))
    assert rgb_back.shape == (2, 2, 3) and alpha.shape == (2, 2, 1)


@pytest.mark.parametrize("engine", ["adain", "cyclegan", "pix2pix"])
def test_deterministic(rt, engine):
    content = photo(36, 30, seed=5)
    styles = [STYLE] if engine == "adain" else []
    first = rt.stylize(StylizeJob(engine=engine, content=content, styles=styles))
    second = rt.stylize(StylizeJob(engine=engine, content=content.copy(), styles=styles))
    np.testing.assert_array_equal(first, second)


def test_tiny_images_work(rt):
    for shape in ((1, 1, 3), (3, 2, 3), (9, 5, 4)):
        content = photo(*shape[:2], shape[2], seed=6)
        for engine in ("adain", "cyclegan", "pix2pix"):
            styles = [photo(3, 4, seed=1)] if engine == "adain" else []
            out = rt.stylize(StylizeJob(engine=engine, content=content, styles=styles))
            assert out.shape == content.shape


def test_working_size_keeps_the_output_size(rt):
    content = photo(64, 48, seed=8)
    full = rt.stylize(StylizeJob(engine="cyclegan", content=content))
    small = rt.stylize(StylizeJob(engine="cyclegan", content=content,
                                  options={"working_size": 32}))
    assert small.shape == full.shape
    assert not np.array_equal(small, full)
    again = rt.stylize(adain(content, [STYLE], working_size=24, style_size=20))
    assert again.shape == content.shape


# ---------------------------------------------------------------- AdaIN identities

def float_content(height=48, width=40, seed=9):
    return photo(height, width, dtype=np.float32, seed=seed)


def test_alpha_zero_reproduces_decode_of_encode(rt):
    content = float_content()
    out = rt.stylize(adain(content, [STYLE], alpha=0.0))
    model = rt.load_model("adain").model
    with torch.inference_mode():
        x = torch.from_numpy(content).permute(2, 0, 1)[None]
        expected = model.decoder(model.encoder.encode(x)).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out, expected)


def test_weights_one_zero_equal_the_single_style(rt):
    content = float_content()
    single = rt.stylize(adain(content, [STYLE]))
    blended = rt.stylize(adain(content, [STYLE, STYLE2], style_weights=[1.0, 0.0]))
    np.testing.assert_array_equal(blended, single)
    scaled = rt.stylize(adain(content, [STYLE, STYLE2], style_weights=[3.0, 0.0]))
    np.testing.assert_array_equal(scaled, single)          # weights are normalised
    mixed = rt.stylize(adain(content, [STYLE, STYLE2], style_weights=[0.5, 0.5]))
    assert np.abs(mixed - single).max() > 1e-3


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_all_ones_mask_equals_style_one_alone(rt, mode):
    content = float_content()
    single = rt.stylize(adain(content, [STYLE]))
    ones = np.ones(content.shape[:2], np.float32)
    masked = rt.stylize(StylizeJob(engine="adain", content=content, styles=[STYLE, STYLE2],
                                   mask=ones, options={"mask_mode": mode}))
    np.testing.assert_array_equal(masked, single)
    zeros = StylizeJob(engine="adain", content=content, styles=[STYLE, STYLE2],
                       mask=np.zeros(content.shape[:2], np.uint8), options={"mask_mode": mode})
    np.testing.assert_array_equal(rt.stylize(zeros), rt.stylize(adain(content, [STYLE2])))


def test_one_style_with_a_mask_keeps_the_content_outside(rt):
    content = float_content()
    outside = StylizeJob(engine="adain", content=content, styles=[STYLE],
                         mask=np.zeros(content.shape[:2], bool))
    np.testing.assert_array_equal(rt.stylize(outside), rt.stylize(adain(content, [STYLE],
                                                                        alpha=0.0)))


def test_half_mask_blends_regions(rt):
    content = float_content(48, 64)
    mask = np.zeros((48, 64), np.float32)
    mask[:, :32] = 1.0
    job = StylizeJob(engine="adain", content=content, styles=[STYLE, STYLE2], mask=mask)
    out = rt.stylize(job)
    one, two = rt.stylize(adain(content, [STYLE])), rt.stylize(adain(content, [STYLE2]))
    # far from the border each side looks like its own style
    assert np.abs(out[:, :8] - one[:, :8]).mean() < np.abs(out[:, :8] - two[:, :8]).mean()
    assert np.abs(out[:, -8:] - two[:, -8:]).mean() < np.abs(out[:, -8:] - one[:, -8:]).mean()
    soft = mask.copy()
    soft[:, 24:40] = 0.5
    assert not np.array_equal(rt.stylize(StylizeJob(engine="adain", content=content,
                                                    styles=[STYLE, STYLE2], mask=soft)), out)


def test_colour_preservation_keeps_content_colours(rt):
    content = np.clip(float_content() * 0.5 + 0.25, 0, 1)
    style = STYLE.copy()
    style[..., 1:] //= 4                      # a strongly red style
    plain = rt.stylize(adain(content, [style]))
    reference = rt.stylize(adain(content, [style], preserve_color=True))
    luminance = rt.stylize(adain(content, [style], preserve_color=True,
                                 color_method="luminance"))
    content_mean = content.reshape(-1, 3).mean(0)
    for kept in (reference, luminance):
        kept_f = kept.reshape(-1, 3).mean(0)
        plain_f = plain.reshape(-1, 3).mean(0)
        assert np.abs(kept_f - content_mean).sum() < np.abs(plain_f - content_mean).sum()
    # luminance-only transfer: the chroma is the content's wherever nothing was clipped
    to_yiq = lambda a: adain_net.rgb_to_yiq(torch.from_numpy(a).permute(2, 0, 1)[None])[0]  # noqa
    unclipped = (luminance > 0.01).all(-1) & (luminance < 0.99).all(-1)
    chroma_diff = (to_yiq(luminance)[1:] - to_yiq(content)[1:]).abs()[:, unclipped]
    assert chroma_diff.max() < 2e-3


def test_alpha_blends_between_content_and_style(rt):
    content = float_content()
    outs = [rt.stylize(adain(content, [STYLE], alpha=a)) for a in (0.0, 0.5, 1.0)]
    assert np.abs(outs[1] - outs[0]).mean() < np.abs(outs[2] - outs[0]).mean()


# ---------------------------------------------------------------- pix2pix modes

def test_pix2pix_seed_and_norm_modes(rt):
    content = photo(40, 40, seed=10)
    run = lambda **o: rt.stylize(StylizeJob(engine="pix2pix", content=content,  # noqa: E731
                                            options=o))
    deterministic = run()
    np.testing.assert_array_equal(run(seed=-1), deterministic)
    seeded = run(seed=3)
    np.testing.assert_array_equal(run(seed=3), seeded)
    assert not np.array_equal(seeded, deterministic)
    assert not np.array_equal(run(seed=4), seeded)
    assert not np.array_equal(run(norm="running"), deterministic)
    np.testing.assert_array_equal(run(), deterministic)   # nothing was left changed
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    run(seed=5)
    assert torch.equal(torch.rand(3), before)              # the global RNG is left alone


# ---------------------------------------------------------------- caches

def test_style_features_are_computed_once_per_style(models_dir):
    rt = Runtime(device="cpu", models_dir=models_dir, threads=1)
    content = photo(32, 32, seed=13)
    rt.stylize(adain(content, [STYLE]))
    assert rt.stats["style_encodes"] == 1
    rt.stylize(adain(photo(24, 40, seed=14), [STYLE.copy()], alpha=0.5))
    assert rt.stats["style_encodes"] == 1 and rt.stats["style_cache_hits"] == 1
    rt.stylize(adain(content, [STYLE], style_size=24))      # another size: another encode
    assert rt.stats["style_encodes"] == 2
    rt.stylize(adain(content, [STYLE2]))
    assert rt.stats["style_encodes"] == 3
    assert rt.stats["model_loads"] == 1 and rt.stats["model_cache_hits"] == 3
    status = rt.status()
    assert status["device"] == "cpu" and status["models"][0]["name"] == "adain"
    assert status["style_cache_entries"] == 3


def test_model_cache_reloads_changed_files_and_respects_the_budget(models_dir, tmp_path):
    rt = Runtime(device="cpu", models_dir=models_dir, threads=1, memory_budget=100 * 2**20)
    content = photo(16, 16, seed=15)
    path = helpers.make_cyclegan_file(tmp_path / "g.pth", n_blocks=6, seed=3)
    job = StylizeJob(engine="cyclegan", content=content, checkpoints={"generator": path})
    first = rt.stylize(job)
    helpers.make_cyclegan_file(tmp_path / "g.pth", n_blocks=6, seed=4)   # replaced on disk
    os.utime(path, ns=(1, 1))
    second = rt.stylize(job)
    assert rt.stats["model_loads"] == 2 and not np.array_equal(first, second)
    assert len(rt.status()["models"]) == 1                  # the stale entry was dropped
    rt.stylize(StylizeJob(engine="cyclegan", content=content))   # style_monet: 45 MB
    rt.stylize(StylizeJob(engine="adain", content=content, styles=[STYLE]))   # 28 MB
    rt.stylize(StylizeJob(engine="pix2pix", content=content))     # 218 MB > budget
    names = [m["name"] for m in rt.status()["models"]]
    assert names == ["pix2pix_facades_label2photo"]          # the LRU ones were evicted
    assert rt.stats["model_evictions"] >= 3


# ---------------------------------------------------------------- progress and cancellation

def test_progress_is_reported_and_ends_at_one(rt):
    seen: list[tuple[float, str]] = []
    rt.stylize(adain(photo(32, 32, seed=16), [STYLE]), progress=lambda f, t: seen.append((f, t)))
    fractions = [f for f, _ in seen]
    assert len(seen) > 10 and fractions[-1] == 1.0
    assert fractions == sorted(fractions) and all(0.0 <= f <= 1.0 for f in fractions)
    assert any("decod" in text for _, text in seen)


@pytest.mark.parametrize("engine", ["adain", "cyclegan", "pix2pix"])
def test_cancellation_between_stages(rt, engine):
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    job = StylizeJob(engine=engine, content=photo(32, 32, seed=17),
                     styles=[STYLE] if engine == "adain" else [])
    with pytest.raises(Cancelled):
        rt.stylize(job, cancelled=cancelled)
    assert rt.stylize(job).shape == (32, 32, 3)   # the runtime is still usable


def test_cancelled_before_start(rt):
    with pytest.raises(Cancelled):
        rt.stylize(StylizeJob(engine="cyclegan", content=photo(8, 8)), cancelled=lambda: True)


# ---------------------------------------------------------------- errors

def expect(code: str, fragment: str, rt, job) -> None:
    with pytest.raises(StyleTransferError) as caught:
        rt.stylize(job)
    assert caught.value.code == code, caught.value.message
    assert fragment.lower() in caught.value.message.lower(), caught.value.message


def test_bad_jobs_get_clear_errors(rt, tmp_path):
    content = photo(16, 16)
    expect(BAD_REQUEST, "style", rt, StylizeJob(engine="adain", content=content))
    expect(BAD_REQUEST, "unknown option", rt, adain(content, [STYLE], strength=2))
    expect(BAD_REQUEST, "at most", rt, adain(content, [STYLE], alpha=1.5))
    expect(BAD_REQUEST, "one weight per style", rt,
           adain(content, [STYLE, STYLE2], style_weights=[1.0, 2.0, 3.0]))
    expect(BAD_REQUEST, "same size", rt, StylizeJob(engine="adain", content=content,
                                                    styles=[STYLE], mask=np.ones((8, 8))))
    expect(BAD_REQUEST, "at most two", rt, StylizeJob(
        engine="adain", content=content, styles=[STYLE] * 3, mask=np.ones((16, 16))))
    expect(BAD_REQUEST, "no style", rt, StylizeJob(engine="cyclegan", content=content,
                                                   styles=[STYLE]))
    expect(BAD_REQUEST, "unknown engine", rt, StylizeJob(engine="deepdream", content=content))
    expect(BAD_REQUEST, "not cyclegan", rt, StylizeJob(engine="cyclegan", content=content,
                                                       model="adain"))
    expect(UNKNOWN_MODEL, "unknown model", rt, StylizeJob(engine="cyclegan", content=content,
                                                          model="no_such_model"))
    expect(MODEL_MISSING, "not found", rt, StylizeJob(
        engine="cyclegan", content=content, checkpoints={"generator": str(tmp_path / "x.pth")}))
    expect(BAD_REQUEST, "roles", rt, StylizeJob(engine="cyclegan", content=content,
                                                checkpoints={"vgg": "a.pth"}))
    expect(BAD_IMAGE, "shape", rt, StylizeJob(engine="cyclegan",
                                                content=np.zeros((4, 4, 5), np.uint8)))
    wrong = helpers.make_pix2pix_file(tmp_path / "u.pth", "unet_128")
    expect(BAD_CHECKPOINT, "expected", rt, StylizeJob(engine="cyclegan", content=content,
                                                      checkpoints={"generator": wrong}))


def test_user_decoder_with_the_installed_vgg(rt, tmp_path):
    _, decoder = helpers.make_adain_files(tmp_path, seed=5)
    content = float_content()
    own = rt.stylize(StylizeJob(engine="adain", content=content, styles=[STYLE],
                                checkpoints={"decoder": decoder}))
    assert own.shape == content.shape
    assert not np.array_equal(own, rt.stylize(adain(content, [STYLE])))


# ---------------------------------------------------------------- padding helpers

def test_reflect_padding_mirror_tiles_small_images():
    row = torch.arange(3.0).reshape(1, 1, 1, 3)              # [0 1 2]
    padded = reflect_pad(row, padding_for(1, 3, 1, minimum=11))
    assert padded.shape[-1] == 11 and padded.shape[-2] == 11
    values = padded[0, 0, 0].tolist()
    assert values == [0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2]       # mirrored, repeatedly
    assert torch.all(padded[0, 0] == padded[0, 0, :1])       # a 1 px side is replicated
    image = torch.rand(1, 3, 101, 77)
    padded, padding = pad_to_multiple(image, 256)
    assert padded.shape[-2:] == (256, 256)
    assert torch.equal(crop(padded, padding), image)
    same, none = pad_to_multiple(torch.rand(1, 3, 64, 48), 8)
    assert none.is_zero and same.shape[-2:] == (64, 48)


def test_engine_registry():
    assert set(engine_names()) >= {"adain", "cyclegan", "pix2pix"}
    assert get_engine("adain").roles == ("vgg", "decoder")
    assert get_engine("pix2pix") is get_engine("pix2pix")
