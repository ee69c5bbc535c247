"""Our networks load the released checkpoint layouts as they are and give the reference's pixels.

The reference forward passes (tests/helpers/reference_forward.py) are independent functional
re-implementations working on the state-dict tensors; the checkpoints are random-weight files in
the released layouts (tests/helpers/checkpoints.py), loaded through the users' code path.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from backend.engines.job import StylizeJob
from backend.networks import checkpoints as ckpt
from backend.runtime import Runtime
from stclient.errors import BAD_CHECKPOINT, MODEL_MISSING, StyleTransferError
from tests.helpers import checkpoints as helpers
from tests.helpers import reference_forward as ref


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    vgg, decoder = helpers.make_adain_files(root / "adain")
    return {
        "vgg": vgg, "decoder": decoder,
        "resnet_9blocks": helpers.make_cyclegan_file(root / "r9.pth", n_blocks=9),
        "resnet_6blocks": helpers.make_cyclegan_file(root / "r6.pth", n_blocks=6, seed=1),
        "resnet_2018": helpers.make_cyclegan_file(root / "r2018.pth", with_running_stats=True),
        "unet_256": helpers.make_pix2pix_file(root / "u256.pth", "unet_256"),
        "unet_128": helpers.make_pix2pix_file(root / "u128.pth", "unet_128", seed=2,
                                              with_num_batches_tracked=False),
    }


@pytest.fixture(scope="module")
def sds(files):
    """The files' state dicts, read once (read-only in the tests that use them)."""
    return {name: ckpt.load_state_dict(path) for name, path in files.items()}


@pytest.fixture(scope="module", params=["fast", "plain"])
def runtime(request):
    """Both paths must match the reference: the default (fast: Winograd 3x3 convolutions on the
    CPU when the native kernels are built) and the plain networks as loaded."""
    return Runtime(device="cpu", threads=1,    # tiny images: one thread is fastest, and robust
                   fast=request.param == "fast")  # on a busy machine


def tolerance(runtime: Runtime) -> float:
    """Largest difference from the reference pass (pixels 0..1). The plain networks run the same
    operators in the same order: 1e-5. The fast path's Winograd convolutions sum the same
    products in another order (measured up to 1.3e-5 after 9 residual blocks): 5e-5, which is
    0.013 of an 8-bit level; a wrong tap or weight moves pixels by more than 1e-2."""
    return 5e-5 if runtime.fast else 1e-5


def image(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random float32 RGB image (0..1), like a photo more than like noise."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 8), max(2, width // 8), generator=gen)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear",
                                             align_corners=False)
    detail = torch.rand(1, 3, height, width, generator=gen) * 0.2
    return ((smooth * 0.8 + detail)[0].permute(1, 2, 0)).numpy().astype(np.float32)


def tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1)[None]


def pixels_of(t: torch.Tensor) -> np.ndarray:
    return t[0].clamp(0, 1).permute(1, 2, 0).numpy()


# ---------------------------------------------------------------- layouts

@pytest.mark.parametrize("name,engine,role", [
    ("vgg", "adain", "vgg"), ("decoder", "adain", "decoder"),
    ("resnet_9blocks", "cyclegan", "generator"), ("resnet_6blocks", "cyclegan", "generator"),
    ("resnet_2018", "cyclegan", "generator"),
    ("unet_256", "pix2pix", "generator"), ("unet_128", "pix2pix", "generator")])
def test_released_layouts_load_strictly_with_identical_keys(files, name, engine, role):
    arch, module = ckpt.load_network(engine, role, files[name])
    expected_arch = {"vgg": "vgg_normalised", "decoder": "adain_decoder",
                     "resnet_2018": "resnet_9blocks"}.get(name, name)
    assert arch == expected_arch
    raw = torch.load(files[name], weights_only=True)
    weights = {k: v for k, v in raw.items()
               if not (name == "resnet_2018" and k.rsplit(".", 1)[1] in
                       ("running_mean", "running_var", "num_batches_tracked"))
               and not k.endswith("num_batches_tracked")}
    ours = module.state_dict()
    assert list(ours) == list(weights)                     # same keys, same order
    for key, value in weights.items():
        assert ours[key].shape == value.shape, key
        assert torch.equal(ours[key], value), key         # the values were really loaded


def test_adain_layout_counts(files):
    _, vgg = ckpt.load_network("adain", "vgg", files["vgg"])
    _, decoder = ckpt.load_network("adain", "decoder", files["decoder"])
    assert len(vgg) == 53 and len(decoder) == 29


def test_2018_file_really_has_running_stats(files):
    raw = torch.load(files["resnet_2018"], weights_only=True)
    assert "model.2.running_mean" in raw and "model.10.conv_block.6.num_batches_tracked" in raw
    assert "model.2.running_mean" not in ckpt.load_state_dict(files["resnet_2018"])


def test_metadata_entry_and_module_prefix_are_ignored(files, tmp_path):
    sd = ckpt.load_state_dict(files["resnet_6blocks"])
    wrapped = OrderedDict(("module." + k, v) for k, v in sd.items())
    wrapped["_metadata"] = {"": {"version": 1}}
    torch.save(wrapped, tmp_path / "wrapped.pth")
    arch, module = ckpt.load_network("cyclegan", "generator", tmp_path / "wrapped.pth")
    assert arch == "resnet_6blocks" and torch.equal(module.model[1].weight, sd["model.1.weight"])


def test_identify_and_dropout_variant(files):
    sd = ckpt.load_state_dict(files["resnet_6blocks"])
    assert ckpt.identify(sd) == ("cyclegan", "generator", "resnet_6blocks")
    # a ResNet generator trained with dropout has its second conv at index 6
    renamed = OrderedDict((k.replace("conv_block.5.", "conv_block.6."), v) for k, v in sd.items())
    assert ckpt.detect_architecture("cyclegan", "generator", renamed) == "resnet_6blocks_dropout"
    assert ckpt.identify(ckpt.load_state_dict(files["unet_128"]))[2] == "unet_128"


# ---------------------------------------------------------------- bad checkpoints

def expect_bad(fragment: str, fn, *args, code: str = BAD_CHECKPOINT) -> str:
    with pytest.raises(StyleTransferError) as caught:
        fn(*args)
    assert caught.value.code == code, caught.value.message
    assert fragment.lower() in caught.value.message.lower(), caught.value.message
    return caught.value.message


def test_wrong_keys_give_a_message_saying_what_was_expected(files, tmp_path):
    message = expect_bad("expected", ckpt.load_network, "pix2pix", "generator",
                         files["resnet_9blocks"])
    assert "unet_256" in message and "unet_128" in message
    sd = ckpt.load_state_dict(files["resnet_9blocks"])
    del sd["model.26.bias"]
    sd["model.26.extra"] = torch.zeros(3)
    torch.save(sd, tmp_path / "broken.pth")
    message = expect_bad("missing", ckpt.load_network, "cyclegan", "generator",
                         tmp_path / "broken.pth")
    assert "model.26.bias" in message and "model.26.extra" in message
    sd = ckpt.load_state_dict(files["decoder"])
    sd["28.weight"] = torch.zeros(4, 64, 3, 3)
    torch.save(sd, tmp_path / "shape.pth")
    assert "[4, 64, 3, 3]" in expect_bad("wrong shape", ckpt.load_network, "adain", "decoder",
                                         tmp_path / "shape.pth")


def test_unreadable_and_unsafe_files_are_refused(tmp_path):
    expect_bad("not found", ckpt.load_state_dict, tmp_path / "nope.pth", code=MODEL_MISSING)
    (tmp_path / "empty.pth").write_bytes(b"")
    expect_bad("empty", ckpt.load_state_dict, tmp_path / "empty.pth")
    (tmp_path / "text.pth").write_text("hello")
    expect_bad("", ckpt.load_state_dict, tmp_path / "text.pth")

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"x": Evil()}, handle)
    expect_bad("", ckpt.load_state_dict, tmp_path / "evil.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    expect_bad("not a state dict", ckpt.load_state_dict, tmp_path / "list.pth")


def test_nan_weights_are_refused(files, tmp_path):
    sd = ckpt.load_state_dict(files["resnet_6blocks"])
    sd["model.1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(sd, tmp_path / "nan.pth")
    expect_bad("nan", ckpt.load_network, "cyclegan", "generator", tmp_path / "nan.pth")


def test_declared_arch_must_match(files):
    expect_bad("declared", ckpt.load_network, "cyclegan", "generator", files["resnet_6blocks"],
               "resnet_9blocks")


# ---------------------------------------------------------------- AdaIN fidelity

def adain_job(content, styles, **options) -> StylizeJob:
    return StylizeJob(engine="adain", content=content, styles=styles, options=options,
                      checkpoints={})


@pytest.mark.parametrize("alpha", [1.0, 0.6])
def test_adain_equals_reference_on_multiple_of_8_sizes(files, sds, runtime, alpha):
    content, style = image(64, 48, 1), image(40, 56, 2)
    job = adain_job(content, [style], alpha=alpha)
    job.checkpoints = {"vgg": files["vgg"], "decoder": files["decoder"]}
    ours = runtime.stylize(job)
    vgg, dec = sds["vgg"], sds["decoder"]
    with torch.no_grad():
        expected = pixels_of(ref.adain_style_transfer(vgg, dec, tensor(content), tensor(style),
                                                      alpha))
    assert ours.shape == (64, 48, 3) and ours.dtype == np.float32
    assert np.abs(ours - expected).max() < tolerance(runtime)
    assert expected.std() > 0.02   # a real image, not a constant


def test_adain_interpolation_equals_reference(files, sds, runtime):
    content = image(48, 40, 3)
    styles = [image(32, 32, 4), image(32, 32, 5)]
    job = adain_job(content, styles, style_weights=[0.25, 0.75])
    job.checkpoints = {"vgg": files["vgg"], "decoder": files["decoder"]}
    ours = runtime.stylize(job)
    vgg, dec = sds["vgg"], sds["decoder"]
    with torch.no_grad():
        expected = pixels_of(ref.adain_style_transfer(
            vgg, dec, tensor(content).expand(2, -1, -1, -1),
            torch.cat([tensor(s) for s in styles]), 1.0, [0.25, 0.75]))
    assert np.abs(ours - expected).max() < tolerance(runtime)


def test_adain_colour_preservation_equals_reference(files, sds, runtime):
    content, style = image(40, 48, 6), image(48, 40, 7)
    style[..., 0] *= 0.3      # a style with quite different colours
    job = adain_job(content, [style], preserve_color=True)
    job.checkpoints = {"vgg": files["vgg"], "decoder": files["decoder"]}
    ours = runtime.stylize(job)
    vgg, dec = sds["vgg"], sds["decoder"]
    with torch.no_grad():
        recoloured = ref.coral(tensor(style)[0], tensor(content)[0])[None]
        expected = pixels_of(ref.adain_style_transfer(vgg, dec, tensor(content), recoloured))
    assert np.abs(ours - expected).max() < 2e-3   # we do the 3x3 algebra in float64


# ---------------------------------------------------------------- CycleGAN / pix2pix fidelity

@pytest.mark.parametrize("name,blocks", [("resnet_9blocks", 9), ("resnet_6blocks", 6),
                                         ("resnet_2018", 9)])
def test_cyclegan_equals_reference(files, sds, runtime, name, blocks):
    content = image(40, 52, 8)
    ours = runtime.stylize(StylizeJob(engine="cyclegan", content=content,
                                      checkpoints={"generator": files[name]}))
    sd = sds[name]
    with torch.no_grad():
        expected = pixels_of((ref.resnet_forward(sd, tensor(content) * 2 - 1, blocks) + 1) / 2)
    assert np.abs(ours - expected).max() < tolerance(runtime)
    assert expected.std() > 0.02


@pytest.mark.parametrize("name,side,downs", [("unet_256", 256, 8), ("unet_128", 128, 7)])
@pytest.mark.parametrize("norm", ["image", "running"])
def test_pix2pix_equals_reference(files, sds, runtime, name, side, downs, norm):
    content = image(side, side, 9)
    raw_before = sds[name]
    job = StylizeJob(engine="pix2pix", content=content, options={"norm": norm},
                     checkpoints={"generator": files[name]})
    ours = runtime.stylize(job)
    with torch.no_grad():
        expected = pixels_of((ref.unet_forward(raw_before, tensor(content) * 2 - 1, downs,
                                               image_stats=norm == "image") + 1) / 2)
    assert np.abs(ours - expected).max() < tolerance(runtime)
    assert expected.std() > 0.01
    # the loaded model's running statistics are untouched by either mode
    loaded = runtime.load_model("pix2pix", checkpoints={"generator": files[name]}).model
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, raw_before[key]), key
