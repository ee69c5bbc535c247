"""MIXGAN networks (Hao, Yu, Zheng, IJCAI 2018): content from one domain, style from another.

Two architectures share the same parts and differ only in how the latent code is shaped:

- ``paper``: the 64x64 design of the paper. The encoder ends in a fully connected layer to a latent
  vector z; the content decoder starts with a fully connected layer back to 4x4 feature maps.
- ``conv``: fully convolutional. The encoder ends in a 1x1 convolution to a latent *map* (one
  vector per 16x16 block of the input) and the decoder starts with a 1x1 convolution, so any input
  whose sides are multiples of 16 works. The latent discriminator judges every location's vector
  on its own, so each location is pushed toward the prior.

Prior: a standard Gaussian N(0, I) (what the paper states; the authors' code used a uniform
prior). The encoder's last layer is linear, so its output can match an unbounded Gaussian, and
sampling needs no clipping.

Pieces: Encoder E (grey image -> z), ContentDecoder Gc (z -> grey image, plus its last feature
maps), MixtureDecoder Gm (Gc's features + Gc's output -> RGB image), LatentDiscriminator Dz and
PatchDiscriminator Dp (small receptive field: local colour and texture, not shape).

Checkpoints record their architecture in a ``meta`` dict of plain values, so a file is rebuilt
with ``torch.load(..., weights_only=True)`` and nothing else.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stclient.errors import BAD_CHECKPOINT, StyleTransferError

ARCHS = ("paper", "conv")
PRIORS = ("gaussian",)
FORMAT = "mixgan"
FORMAT_VERSION = 1
DOWNSCALE = 16  # four stride-2 convolutions
MIN_SIDE = 2 * DOWNSCALE  # instance norm at the bottom needs more than one location


@dataclass(frozen=True)
class MixganConfig:
    """Everything needed to rebuild the networks; stored in every checkpoint's ``meta``."""

    arch: str = "conv"
    width: int = 32          # channels of the first conv; the paper's code uses 32
    latent: int = 2048       # paper: length of z; conv: channels of the latent map
    n_res: int = 6           # residual blocks in the content decoder
    size: int = 64           # training size (the only size for `paper`)
    prior: str = "gaussian"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown MIXGAN architecture {self.arch!r}; choose {ARCHS}")
        if self.prior not in PRIORS:
            raise ValueError(f"unknown prior {self.prior!r}; choose {PRIORS}")
        if self.size % DOWNSCALE or self.size < MIN_SIDE:
            raise ValueError(f"size must be a multiple of {DOWNSCALE} and at least {MIN_SIDE}, "
                             f"not {self.size}")
        if min(self.width, self.latent) < 1 or self.n_res < 0:
            raise ValueError("width and latent must be positive and n_res non-negative")

    @property
    def channels(self) -> tuple[int, int, int, int, int]:
        """Encoder widths: conv 7x7, then the four stride-2 convs (paper: 32, 64, 128, 128, 256)."""
        w = self.width
        return (w, 2 * w, 4 * w, 4 * w, 8 * w)

    @property
    def bottom(self) -> int:
        """Side of the 4x4 (paper) feature maps at the bottom of the encoder."""
        return self.size // DOWNSCALE

    def latent_shape(self, height: int | None = None, width: int | None = None) -> tuple[int, ...]:
        """Shape of one latent code (without batch) for an image of the given size."""
        if self.arch == "paper":
            return (self.latent,)
        height = self.size if height is None else height
        width = height if width is None else width
        check_size(self, height, width)
        return (self.latent, height // DOWNSCALE, width // DOWNSCALE)

    def to_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION}
        meta.update(asdict(self))
        return meta

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "MixganConfig":
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("not a MIXGAN checkpoint (its meta has no format 'mixgan')")
        if int(meta.get("version", 0)) > FORMAT_VERSION:
            raise ValueError(f"MIXGAN checkpoint version {meta.get('version')} is newer than "
                             f"this program understands ({FORMAT_VERSION})")
        names = {f.name for f in fields(cls)}
        values = {k: _plain(v) for k, v in meta.items() if k in names}
        return cls(**values)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, torch.Tensor) else value


def check_size(config: MixganConfig, height: int, width: int) -> None:
    if config.arch == "paper":
        if (height, width) != (config.size, config.size):
            raise ValueError(f"the 'paper' MIXGAN takes {config.size}x{config.size} images only, "
                             f"not {width}x{height}")
    elif height % DOWNSCALE or width % DOWNSCALE or min(height, width) < MIN_SIDE:
        raise ValueError(f"the 'conv' MIXGAN takes sides that are multiples of {DOWNSCALE} and "
                         f"at least {MIN_SIDE}, not {width}x{height}")


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2)


def _up(cin: int, cout: int) -> nn.ConvTranspose2d:
    """Stride-2 'deconv' that exactly doubles the side (3x3, padding 1, output_padding 1)."""
    return nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)


def _norm_relu(channels: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(channels, affine=True), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), *_norm_relu(channels),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """E: grey image in [-1, 1] -> latent code (vector for `paper`, map for `conv`)."""

    def __init__(self, config: MixganConfig) -> None:
        super().__init__()
        c = config.channels
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(1, c[0], 7), *_norm_relu(c[0])]
        for cin, cout in zip(c[:-1], c[1:]):
            layers += [_conv(cin, cout, 3, stride=2), *_norm_relu(cout)]
        self.features = nn.Sequential(*layers)
        self.arch = config.arch
        if config.arch == "paper":
            self.to_latent: nn.Module = nn.Linear(c[-1] * config.bottom ** 2, config.latent)
        else:
            self.to_latent = nn.Conv2d(c[-1], config.latent, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        if self.arch == "paper":
            h = h.flatten(1)
        return self.to_latent(h)


class ContentDecoder(nn.Module):
    """Gc: latent code -> grey image (tanh) and the feature maps Gm builds on."""

    def __init__(self, config: MixganConfig) -> None:
        super().__init__()
        c = config.channels
        self.arch = config.arch
        self.bottom_channels = c[4]
        self.bottom = config.bottom
        if config.arch == "paper":
            self.from_latent: nn.Module = nn.Linear(config.latent, c[4] * config.bottom ** 2)
        else:
            self.from_latent = nn.Conv2d(config.latent, c[4], 1)
        self.up_low = nn.Sequential(_up(c[4], c[3]), *_norm_relu(c[3]),
                                    _up(c[3], c[2]), *_norm_relu(c[2]))
        self.res = nn.Sequential(*[ResidualBlock(c[2]) for _ in range(config.n_res)])
        self.up_high = nn.Sequential(_up(c[2], c[1]), *_norm_relu(c[1]),
                                     _up(c[1], c[0]), *_norm_relu(c[0]))
        self.to_image = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(c[0], 1, 7), nn.Tanh())
        self.feature_channels = c[0]

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.from_latent(z)
        if self.arch == "paper":
            h = h.view(-1, self.bottom_channels, self.bottom, self.bottom)
        h = torch.relu(h)
        features = self.up_high(self.res(self.up_low(h)))
        return self.to_image(features), features


class MixtureDecoder(nn.Module):
    """Gm: Gc's last features and output (width + 1 channels) -> RGB image (tanh).

    Deliberately shallow (receptive field 9 px): it can recolour and texture what Gc drew but
    has no room to redraw the shape, which is what keeps the content.
    """

    def __init__(self, config: MixganConfig) -> None:
        super().__init__()
        cin = config.channels[0] + 1
        mid = 2 * config.channels[0]
        self.expand = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(cin, mid, 3), *_norm_relu(mid))
        self.to_rgb = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(mid + cin, 3, 7), nn.Tanh())

    def forward(self, features: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        x = torch.cat([features, content], dim=1)
        return self.to_rgb(torch.cat([self.expand(x), x], dim=1))


class LatentDiscriminator(nn.Module):
    """Dz: prior sample vs encoder output. For `conv` it is a per-location (1x1 conv) MLP."""

    def __init__(self, config: MixganConfig, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(64, min(512, 2 * config.latent))
        if config.arch == "paper":
            def layer(cin: int, cout: int) -> nn.Module:
                return nn.Linear(cin, cout)
        else:
            def layer(cin: int, cout: int) -> nn.Module:
                return nn.Conv2d(cin, cout, 1)
        self.net = nn.Sequential(layer(config.latent, hidden), nn.LeakyReLU(0.2, inplace=True),
                                 layer(hidden, hidden), nn.LeakyReLU(0.2, inplace=True),
                                 layer(hidden, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class PatchDiscriminator(nn.Module):
    """Dp: scores every 8x8 patch (receptive field 8 px) of an RGB image as style-domain or not."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.InstanceNorm2d(2 * width, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * width, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def receptive_field(module: nn.Module) -> int:
    """Receptive field in input pixels of a plain stack of convolutions (used by tests/docs)."""
    field, jump = 1, 1
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            field += (layer.kernel_size[0] - 1) * jump
            jump *= layer.stride[0]
    return field


class MixGAN(nn.Module):
    """The generator side that inference needs: E, Gc and Gm."""

    def __init__(self, config: MixganConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.content_decoder = ContentDecoder(config)
        self.mixture_decoder = MixtureDecoder(config)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z -> (grey content image, RGB mixture), both in [-1, 1]."""
        content, features = self.content_decoder(z)
        return content, self.mixture_decoder(features, content)

    def forward(self, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Grey image in [-1, 1] -> (reconstruction, mixture): 'this content in that style'."""
        check_size(self.config, grey.shape[-2], grey.shape[-1])
        return self.decode(self.encoder(grey))


# -- checkpoints -------------------------------------------------------------------------------

def model_state(model: MixGAN) -> dict[str, Any]:
    """What a model file holds: ``meta`` (plain values) and ``state_dict`` (tensors only)."""
    return {"meta": model.config.to_meta(),
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def save_model(model: MixGAN, path: str | Path) -> Path:
    """Write atomically (temp file, then rename) so a crash never leaves half a model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(model_state(model), tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with weights_only=True; raise ValueError saying what is wrong with the file."""
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        from .checkpoints import refusal_reason
        if isinstance(error, pickle.UnpicklingError) or "weights_only" in str(error):
            raise ValueError(f"cannot read {path} as a MIXGAN checkpoint: it "
                             f"{refusal_reason(error)}") from None
        raise ValueError(f"cannot read {path} as a MIXGAN checkpoint: {error}") from error
    if not isinstance(data, dict) or "meta" not in data or "state_dict" not in data:
        raise ValueError(f"{path} is not a MIXGAN checkpoint: it needs 'meta' and 'state_dict'")
    return data


def model_from_state(data: dict[str, Any]) -> MixGAN:
    config = MixganConfig.from_meta(data["meta"])
    model = MixGAN(config)
    state = data["state_dict"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"MIXGAN '{config.arch}' checkpoint does not match its architecture: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ValueError(f"MIXGAN checkpoint tensor {key} has shape {tuple(state[key].shape)}, "
                             f"expected {tuple(tensor.shape)} for {config}")
    model.load_state_dict(state)
    return model.eval()


def load_model(path: str | Path) -> MixGAN:
    return model_from_state(read_checkpoint(path))


def detect_arch(data: dict[str, Any]) -> str:
    """Architecture of a loaded checkpoint, from its meta, cross-checked against its keys."""
    arch = MixganConfig.from_meta(data["meta"]).arch
    has_fc = "encoder.to_latent.weight" in data["state_dict"] and \
        data["state_dict"]["encoder.to_latent.weight"].dim() == 2
    if has_fc != (arch == "paper"):
        raise ValueError(f"MIXGAN checkpoint says arch {arch!r} but its weights say otherwise")
    return arch


class MixganCheckpointFormat:
    """MIXGAN files carry {'meta', 'state_dict'}: the architecture comes from the meta, checked
    against the keys (registered for the card's role format "mixgan")."""

    def architecture(self, path: str | Path) -> str:
        try:
            return detect_arch(read_checkpoint(path))
        except Exception as error:  # ValueError/KeyError/UnpicklingError from a foreign file
            lines = str(error).strip().splitlines()
            raise StyleTransferError(
                BAD_CHECKPOINT, f"{Path(path).name} is not a MIXGAN checkpoint: "
                                f"{lines[0][:200] if lines else type(error).__name__}") from None


CHECKPOINT_FORMATS = {FORMAT: MixganCheckpointFormat()}
