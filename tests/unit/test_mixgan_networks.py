"""MIXGAN networks: shapes at several sizes, receptive fields, checkpoint round trips."""

from __future__ import annotations

import pytest
import torch

from backend.networks.mixgan import (LatentDiscriminator, MixGAN, MixganConfig, MixtureDecoder,
                                     PatchDiscriminator, check_size, detect_arch, load_model,
                                     read_checkpoint, receptive_field, save_model)
from tests.helpers.mixgan import one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()

TINY = dict(width=4, latent=8, n_res=1)


def test_paper_architecture_shapes() -> None:
    config = MixganConfig(arch="paper", size=64, **TINY)
    model = MixGAN(config).eval()
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    z = model.encoder(x)
    assert z.shape == (2, 8)
    reconstruction, mixture = model(x)
    assert reconstruction.shape == (2, 1, 64, 64)
    assert mixture.shape == (2, 3, 64, 64)
    assert mixture.abs().max() <= 1.0
    assert LatentDiscriminator(config)(z).shape == (2, 1)


def test_paper_architecture_matches_the_paper_widths() -> None:
    model = MixGAN(MixganConfig(arch="paper", size=64, width=32, latent=2048, n_res=6))
    assert model.encoder.to_latent.weight.shape == (2048, 256 * 4 * 4)
    assert model.content_decoder.from_latent.weight.shape == (256 * 4 * 4, 2048)
    # Gm reads Gc's last features + its output: 33 channels in the authors' code
    assert model.mixture_decoder.expand[1].weight.shape[1] == 33
    assert len(model.content_decoder.res) == 6


@pytest.mark.parametrize("height,width", [(32, 32), (32, 48), (80, 64), (64, 112)])
def test_conv_architecture_takes_any_multiple_of_16(height: int, width: int) -> None:
    config = MixganConfig(arch="conv", size=32, **TINY)
    model = MixGAN(config).eval()
    x = torch.rand(1, 1, height, width) * 2 - 1
    with torch.no_grad():
        z = model.encoder(x)
        assert z.shape == (1, 8, height // 16, width // 16)
        assert z.shape[1:] == config.latent_shape(height, width)
        reconstruction, mixture = model(x)
        assert LatentDiscriminator(config)(z).shape == (1, 1, height // 16, width // 16)
    assert reconstruction.shape == (1, 1, height, width)
    assert mixture.shape == (1, 3, height, width)


def test_sizes_the_networks_cannot_take_are_refused() -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        check_size(MixganConfig(arch="conv", size=32, **TINY), 40, 32)
    with pytest.raises(ValueError, match="at least 32"):
        check_size(MixganConfig(arch="conv", size=32, **TINY), 16, 64)
    with pytest.raises(ValueError, match="64x64 images only"):
        MixGAN(MixganConfig(arch="paper", size=64, **TINY))(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError):
        MixganConfig(arch="paper", size=60)
    with pytest.raises(ValueError):
        MixganConfig(arch="dense")


def test_style_discriminator_sees_only_small_patches() -> None:
    assert receptive_field(PatchDiscriminator()) == 8
    # Gm is shallow: it recolours what Gc drew but cannot redraw the shape
    assert receptive_field(MixtureDecoder(MixganConfig(**TINY))) <= 9
    assert PatchDiscriminator(8)(torch.zeros(2, 3, 32, 32)).shape == (2, 1, 16, 16)


@pytest.mark.parametrize("arch,size", [("paper", 64), ("conv", 32)])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, arch: str, size: int) -> None:
    torch.manual_seed(3)
    model = MixGAN(MixganConfig(arch=arch, size=size, **TINY)).eval()
    path = save_model(model, tmp_path / "m.pth")
    # a plain weights-only load works: meta is plain values, the rest tensors
    raw = torch.load(path, weights_only=True)
    assert raw["meta"]["arch"] == arch and raw["meta"]["format"] == "mixgan"
    assert detect_arch(read_checkpoint(path)) == arch
    loaded = load_model(path)
    assert loaded.config == model.config
    x = torch.rand(2, 1, size, size) * 2 - 1
    z = torch.randn(2, *model.config.latent_shape())
    with torch.no_grad():
        for a, b in zip(model(x) + model.decode(z), loaded(x) + loaded.decode(z)):
            assert torch.equal(a, b)


def test_bad_checkpoints_are_reported(tmp_path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="meta"):
        read_checkpoint(path)
    model = MixGAN(MixganConfig(arch="conv", size=32, **TINY))
    good = save_model(model, tmp_path / "good.pth")
    data = torch.load(good, weights_only=True)
    data["meta"]["width"] = 8   # says one width, holds another
    torch.save(data, tmp_path / "lies.pth")
    with pytest.raises(ValueError, match="shape|missing"):
        load_model(tmp_path / "lies.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        read_checkpoint(tmp_path / "junk.pth")
