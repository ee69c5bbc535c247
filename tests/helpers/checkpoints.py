"""Random-weight checkpoints in the released file layouts, for every test suite.

The key lists and shapes are written out here from the released files' facts, independently of
backend/networks, so loading these files through the user code path checks our modules' layout.
Weights are scaled so that the networks give non-constant, unsaturated images:
- AdaIN: He-normal convs (activations keep their scale through VGG), decoder output ~0.5 ± 0.2;
- CycleGAN / pix2pix: N(0, 0.02) convs as the reference's initialisation, BatchNorm gamma N(1, 0.02);
  pix2pix running statistics are calibrated on a smooth random image so that 'running' mode is
  plausible too.

API:
    make_adain_files(directory, seed=0) -> (vgg_path, decoder_path)
    make_cyclegan_file(path, n_blocks=9, seed=0, with_running_stats=False) -> path
    make_pix2pix_file(path, arch="unet_256", seed=0, with_num_batches_tracked=True) -> path
    make_models_dir(directory) -> directory
Files are generated once (cached in the temp folder across runs) and copied, so calls are cheap.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch

from tests.helpers import reference_forward as ref

VGG_CONV_SHAPES: "OrderedDict[int, tuple[int, int, int]]" = OrderedDict([
    (0, (3, 3, 1)), (2, (64, 3, 3)), (5, (64, 64, 3)), (9, (128, 64, 3)), (12, (128, 128, 3)),
    (16, (256, 128, 3)), (19, (256, 256, 3)), (22, (256, 256, 3)), (25, (256, 256, 3)),
    (29, (512, 256, 3)), (32, (512, 512, 3)), (35, (512, 512, 3)), (38, (512, 512, 3)),
    (42, (512, 512, 3)), (45, (512, 512, 3)), (48, (512, 512, 3)), (51, (512, 512, 3)),
])
DECODER_CONV_SHAPES: "OrderedDict[int, tuple[int, int]]" = OrderedDict([
    (1, (256, 512)), (5, (256, 256)), (8, (256, 256)), (11, (256, 256)), (14, (128, 256)),
    (18, (128, 128)), (21, (64, 128)), (25, (64, 64)), (28, (3, 64)),
])
UNET_DOWNS = {"unet_256": 8, "unet_128": 7}

_CACHE_DIR: Path | None = None


def _cache_dir() -> Path:
    """Generated files are kept between test runs in a folder named after this file's content
    (any change to the generators starts a fresh folder), so only the first run pays."""
    global _CACHE_DIR
    if _CACHE_DIR is None:
        version = hashlib.sha256(Path(__file__).read_bytes()
                                 + Path(ref.__file__).read_bytes()).hexdigest()[:12]
        _CACHE_DIR = Path(tempfile.gettempdir()) / f"st-test-ckpt-{os.getuid()}-{version}"
        _CACHE_DIR.mkdir(parents=True, exist_ok=True)
    return _CACHE_DIR


def _cached(name: str, make) -> Path:
    """Generate `name` once per process (make(path)) and return the cached path."""
    path = _cache_dir() / name
    if not path.exists():
        tmp = path.with_name(f"{name}.{os.getpid()}.part")  # parallel runs never share a temp
        make(tmp)
        os.replace(tmp, path)
    return path


def _copy_to(source: Path, destination: str | os.PathLike) -> str:
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)
    return str(destination)


def _normal(gen: torch.Generator, shape, std: float, mean: float = 0.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * std + mean


# ---------------------------------------------------------------- AdaIN

def _adain_state_dicts(seed: int) -> tuple[OrderedDict, OrderedDict]:
    gen = torch.Generator().manual_seed(seed)
    vgg: OrderedDict = OrderedDict()
    for index, (c_out, c_in, k) in VGG_CONV_SHAPES.items():
        if index == 0:  # colour conv: RGB -> BGR, minus a mean, like the released one (scaled)
            weight = torch.zeros(3, 3, 1, 1)
            for out_c, in_c in enumerate((2, 1, 0)):
                weight[out_c, in_c] = 1.0
            weight += _normal(gen, (3, 3, 1, 1), 0.05)
            vgg["0.weight"], vgg["0.bias"] = weight, _normal(gen, (3,), 0.02, -0.45)
            continue
        fan_in = c_in * k * k
        vgg[f"{index}.weight"] = _normal(gen, (c_out, c_in, k, k), math.sqrt(2.0 / fan_in))
        vgg[f"{index}.bias"] = _normal(gen, (c_out,), 0.01)
    decoder: OrderedDict = OrderedDict()
    for index, (c_out, c_in) in DECODER_CONV_SHAPES.items():
        fan_in = c_in * 9
        last = index == 28
        std = math.sqrt(2.0 / fan_in) * (0.15 if last else 1.0)
        decoder[f"{index}.weight"] = _normal(gen, (c_out, c_in, 3, 3), std)
        decoder[f"{index}.bias"] = (torch.full((c_out,), 0.5) + _normal(gen, (c_out,), 0.02)
                                    if last else _normal(gen, (c_out,), 0.01))
    return vgg, decoder


def make_adain_files(directory: str | os.PathLike, seed: int = 0) -> tuple[str, str]:
    """vgg_normalised.pth and decoder.pth (random weights) in `directory`."""
    def make_pair(kind: str):
        def make(path: Path) -> None:
            vgg, decoder = _adain_state_dicts(seed)
            torch.save(vgg if kind == "vgg" else decoder, path)
        return make

    vgg_src = _cached(f"adain_vgg_{seed}.pth", make_pair("vgg"))
    dec_src = _cached(f"adain_decoder_{seed}.pth", make_pair("decoder"))
    directory = Path(directory)
    return (_copy_to(vgg_src, directory / "vgg_normalised.pth"),
            _copy_to(dec_src, directory / "decoder.pth"))


# ---------------------------------------------------------------- CycleGAN

def cyclegan_state_dict(n_blocks: int = 9, seed: int = 0,
                        with_running_stats: bool = False) -> OrderedDict:
    gen = torch.Generator().manual_seed(seed)
    sd: OrderedDict = OrderedDict()

    def conv(prefix: str, c_out: int, c_in: int, k: int, transposed: bool = False) -> None:
        shape = (c_in, c_out, k, k) if transposed else (c_out, c_in, k, k)
        sd[prefix + ".weight"] = _normal(gen, shape, 0.02)
        sd[prefix + ".bias"] = _normal(gen, (c_out,), 0.02)

    def norm_stats(prefix: str, channels: int) -> None:  # what 2018-era files carry
        if with_running_stats:
            sd[prefix + ".running_mean"] = torch.zeros(channels)
            sd[prefix + ".running_var"] = torch.ones(channels)
            sd[prefix + ".num_batches_tracked"] = torch.tensor(0, dtype=torch.long)

    conv("model.1", 64, 3, 7); norm_stats("model.2", 64)
    conv("model.4", 128, 64, 3); norm_stats("model.5", 128)
    conv("model.7", 256, 128, 3); norm_stats("model.8", 256)
    for block in range(10, 10 + n_blocks):
        p = f"model.{block}.conv_block"
        conv(p + ".1", 256, 256, 3); norm_stats(p + ".2", 256)
        conv(p + ".5", 256, 256, 3); norm_stats(p + ".6", 256)
    up = 10 + n_blocks
    conv(f"model.{up}", 128, 256, 3, transposed=True); norm_stats(f"model.{up + 1}", 128)
    conv(f"model.{up + 3}", 64, 128, 3, transposed=True); norm_stats(f"model.{up + 4}", 64)
    conv(f"model.{up + 7}", 3, 64, 7)
    return sd


def make_cyclegan_file(path: str | os.PathLike, n_blocks: int = 9, seed: int = 0,
                       with_running_stats: bool = False) -> str:
    name = f"cyclegan_{n_blocks}_{seed}_{int(with_running_stats)}.pth"
    source = _cached(name, lambda p: torch.save(
        cyclegan_state_dict(n_blocks, seed, with_running_stats), p))
    return _copy_to(source, path)


# ---------------------------------------------------------------- pix2pix

def pix2pix_state_dict(arch: str = "unet_256", seed: int = 0,
                       with_num_batches_tracked: bool = True) -> OrderedDict:
    downs = UNET_DOWNS[arch]
    gen = torch.Generator().manual_seed(seed)
    sd: OrderedDict = OrderedDict()

    def conv(key: str, shape) -> None:
        sd[key] = _normal(gen, shape, 0.02)

    def bn(prefix: str, channels: int) -> None:
        sd[prefix + ".weight"] = _normal(gen, (channels,), 0.02, 1.0)
        sd[prefix + ".bias"] = _normal(gen, (channels,), 0.02)
        sd[prefix + ".running_mean"] = torch.zeros(channels)
        sd[prefix + ".running_var"] = torch.ones(channels)
        if with_num_batches_tracked:
            sd[prefix + ".num_batches_tracked"] = torch.tensor(0, dtype=torch.long)

    # (outer, inner) channels per level, outermost first
    levels = [(3, 64), (64, 128), (128, 256), (256, 512)] + [(512, 512)] * (downs - 4)

    def block(depth: int, prefix: str) -> None:
        outer, inner = levels[depth]
        m = prefix + ".model"
        if depth == 0:
            conv(f"{m}.0.weight", (inner, outer, 4, 4))
            block(1, f"{m}.1")
            conv(f"{m}.3.weight", (inner * 2, outer, 4, 4))
            sd[f"{m}.3.bias"] = _normal(gen, (outer,), 0.02)
        elif depth == downs - 1:
            conv(f"{m}.1.weight", (inner, outer, 4, 4))
            conv(f"{m}.3.weight", (inner, outer, 4, 4))
            bn(f"{m}.4", outer)
        else:
            conv(f"{m}.1.weight", (inner, outer, 4, 4))
            bn(f"{m}.2", inner)
            block(depth + 1, f"{m}.3")
            conv(f"{m}.5.weight", (inner * 2, outer, 4, 4))
            bn(f"{m}.6", outer)

    block(0, "model")
    _calibrate_running_stats(sd, downs, seed)
    return sd


def _calibrate_running_stats(sd: OrderedDict, downs: int, seed: int) -> None:
    """Running stats = the batch statistics of one smooth random image (as training would give)."""
    gen = torch.Generator().manual_seed(seed + 1)
    side = 2 ** downs
    coarse = torch.rand(1, 3, 8, 8, generator=gen) * 2 - 1
    image = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear",
                                            align_corners=False)
    inputs: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        ref.unet_forward(sd, image, downs, image_stats=True, bn_inputs=inputs)
    for prefix, value in inputs.items():
        flat = value.transpose(0, 1).reshape(value.shape[1], -1)
        sd[prefix + ".running_mean"] = flat.mean(dim=1)
        sd[prefix + ".running_var"] = flat.var(dim=1, unbiased=True)


def make_pix2pix_file(path: str | os.PathLike, arch: str = "unet_256", seed: int = 0,
                      with_num_batches_tracked: bool = True) -> str:
    name = f"pix2pix_{arch}_{seed}_{int(with_num_batches_tracked)}.pth"
    source = _cached(name, lambda p: torch.save(
        pix2pix_state_dict(arch, seed, with_num_batches_tracked), p))
    return _copy_to(source, path)


# ---------------------------------------------------------------- a models dir

def make_models_dir(directory: str | os.PathLike) -> str:
    """Installed test models as the model store lays them out (<dir>/<name>/<file>):
    adain (vgg + decoder), style_monet (cyclegan resnet_9blocks), pix2pix_facades_label2photo
    (unet_256), all random weights."""
    directory = Path(directory)
    make_adain_files(directory / "adain")
    make_cyclegan_file(directory / "style_monet" / "style_monet.pth")
    make_pix2pix_file(directory / "pix2pix_facades_label2photo"
                      / "pix2pix_facades_label2photo.pth")
    return str(directory)
