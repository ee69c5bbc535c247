"""Independent, functional re-implementations of the reference forward passes.

They work directly on state-dict tensors with F.conv2d / F.pad / F.instance_norm / F.batch_norm,
following the reference code's module order (facts from the AdaIN and pytorch-CycleGAN-and-pix2pix
releases), and share no code with backend/networks. Fidelity tests compare our modules against
these; the checkpoint helper uses the pix2pix one to calibrate plausible BatchNorm running stats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

# ---------------------------------------------------------------- AdaIN (pytorch-AdaIN release)

VGG_CONVS = (0, 2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51)
VGG_POOLS = (7, 14, 27, 40)
DECODER_CONVS = (1, 5, 8, 11, 14, 18, 21, 25, 28)
DECODER_UPSAMPLES = (3, 16, 23)


def vgg_forward(sd: dict[str, Tensor], x: Tensor, upto: int = 30) -> Tensor:
    """Modules 0..upto of vgg_normalised: 1x1 conv, then pad/conv/ReLU triples and ceil pools."""
    for index in range(upto + 1):
        if index == 0:
            x = F.conv2d(x, sd["0.weight"], sd["0.bias"])
        elif index in VGG_CONVS:
            x = F.conv2d(x, sd[f"{index}.weight"], sd[f"{index}.bias"])
        elif index + 1 in VGG_CONVS:
            x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        elif index - 1 in VGG_CONVS:
            x = F.relu(x)
        elif index in VGG_POOLS:
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        else:
            raise AssertionError(f"vgg module {index} unaccounted for")
    return x


def decoder_forward(sd: dict[str, Tensor], x: Tensor) -> Tensor:
    for index in range(29):
        if index in DECODER_CONVS:
            x = F.conv2d(x, sd[f"{index}.weight"], sd[f"{index}.bias"])
        elif index + 1 in DECODER_CONVS:
            x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        elif index in DECODER_UPSAMPLES:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        elif index - 1 in DECODER_CONVS:
            x = F.relu(x)
        else:
            raise AssertionError(f"decoder module {index} unaccounted for")
    return x


def calc_mean_std(feat: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    n, c = feat.shape[:2]
    var = feat.view(n, c, -1).var(dim=2) + eps
    return feat.view(n, c, -1).mean(dim=2).view(n, c, 1, 1), var.sqrt().view(n, c, 1, 1)


def adain_op(content: Tensor, style: Tensor) -> Tensor:
    s_mean, s_std = calc_mean_std(style)
    c_mean, c_std = calc_mean_std(content)
    return (content - c_mean.expand(content.size())) / c_std.expand(content.size()) \
        * s_std.expand(content.size()) + s_mean.expand(content.size())


def adain_style_transfer(vgg: dict, decoder: dict, content: Tensor, style: Tensor,
                         alpha: float = 1.0, interpolation_weights=None) -> Tensor:
    """The reference's style_transfer(): content N=1 (or N=len(styles) for interpolation)."""
    content_f = vgg_forward(vgg, content)
    style_f = vgg_forward(vgg, style)
    if interpolation_weights:
        base = adain_op(content_f, style_f)
        feat = torch.zeros_like(content_f[0:1])
        for i, w in enumerate(interpolation_weights):
            feat = feat + w * base[i:i + 1]
        content_f = content_f[0:1]
    else:
        feat = adain_op(content_f, style_f)
    feat = feat * alpha + content_f * (1 - alpha)
    return decoder_forward(decoder, feat)


def coral(source: Tensor, target: Tensor) -> Tensor:
    """Reference colour transfer on 3 x H x W images (float32 math, as the reference)."""
    def flat_stats(image):
        flat = image.reshape(3, -1)
        return flat, flat.mean(dim=-1, keepdim=True), flat.std(dim=-1, keepdim=True)

    def mat_sqrt(m):
        u, d, v = torch.svd(m)
        return u @ torch.diag(d.pow(0.5)) @ v.t()

    s, s_mean, s_std = flat_stats(source)
    s_norm = (s - s_mean) / s_std
    t, t_mean, t_std = flat_stats(target)
    t_norm = (t - t_mean) / t_std
    s_cov = s_norm @ s_norm.t() + torch.eye(3)
    t_cov = t_norm @ t_norm.t() + torch.eye(3)
    moved = mat_sqrt(t_cov) @ (torch.inverse(mat_sqrt(s_cov)) @ s_norm)
    return (moved * t_std + t_mean).view(source.size())


# ---------------------------------------------------------------- CycleGAN ResnetGenerator

def _in(x: Tensor) -> Tensor:
    return F.instance_norm(x, eps=1e-5)


def resnet_forward(sd: dict[str, Tensor], x: Tensor, n_blocks: int = 9) -> Tensor:
    """ReflectionPad(3), conv7, IN, ReLU, 2x (conv s2, IN, ReLU), blocks, 2x (convT, IN, ReLU),
    ReflectionPad(3), conv7, tanh."""
    w = lambda i: sd[f"model.{i}.weight"]  # noqa: E731
    b = lambda i: sd[f"model.{i}.bias"]  # noqa: E731
    x = F.pad(x, (3, 3, 3, 3), mode="reflect")
    x = F.relu(_in(F.conv2d(x, w(1), b(1))))
    x = F.relu(_in(F.conv2d(x, w(4), b(4), stride=2, padding=1)))
    x = F.relu(_in(F.conv2d(x, w(7), b(7), stride=2, padding=1)))
    for block in range(10, 10 + n_blocks):
        p = f"model.{block}.conv_block"
        y = F.pad(x, (1, 1, 1, 1), mode="reflect")
        y = F.relu(_in(F.conv2d(y, sd[f"{p}.1.weight"], sd[f"{p}.1.bias"])))
        y = F.pad(y, (1, 1, 1, 1), mode="reflect")
        y = _in(F.conv2d(y, sd[f"{p}.5.weight"], sd[f"{p}.5.bias"]))
        x = x + y
    up1 = 10 + n_blocks
    x = F.relu(_in(F.conv_transpose2d(x, w(up1), b(up1), stride=2, padding=1, output_padding=1)))
    x = F.relu(_in(F.conv_transpose2d(x, w(up1 + 3), b(up1 + 3), stride=2, padding=1,
                                      output_padding=1)))
    x = F.pad(x, (3, 3, 3, 3), mode="reflect")
    return torch.tanh(F.conv2d(x, w(up1 + 7), b(up1 + 7)))


# ---------------------------------------------------------------- pix2pix UnetGenerator

def _bn(sd: dict, prefix: str, x: Tensor, image_stats: bool) -> Tensor:
    if image_stats:  # train-mode BN; copies so the stored statistics are never touched
        return F.batch_norm(x, sd[prefix + ".running_mean"].clone(),
                            sd[prefix + ".running_var"].clone(), sd[prefix + ".weight"],
                            sd[prefix + ".bias"], training=True, momentum=0.1, eps=1e-5)
    return F.batch_norm(x, sd[prefix + ".running_mean"], sd[prefix + ".running_var"],
                        sd[prefix + ".weight"], sd[prefix + ".bias"], training=False, eps=1e-5)


def unet_forward(sd: dict[str, Tensor], x: Tensor, num_downs: int = 8,
                 image_stats: bool = True, bn_inputs: dict | None = None) -> Tensor:
    """The nested skip blocks, with the reference's in-place LeakyReLU on each block's input
    (which its concatenated skip then carries). `bn_inputs`, if given, collects each BN's input."""
    def bn(prefix, value):
        if bn_inputs is not None:
            bn_inputs[prefix] = value.detach().clone()
        return _bn(sd, prefix, value, image_stats)

    def block(depth: int, prefix: str, value: Tensor) -> Tensor:
        # depth 0 = outermost, num_downs - 1 = innermost
        m = prefix + ".model"
        if depth == 0:
            h = F.conv2d(value, sd[f"{m}.0.weight"], stride=2, padding=1)
            h = block(1, f"{m}.1", h)
            h = F.relu(h)
            return torch.tanh(F.conv_transpose2d(h, sd[f"{m}.3.weight"], sd[f"{m}.3.bias"],
                                                 stride=2, padding=1))
        F.leaky_relu_(value, 0.2)  # in place, as nn.LeakyReLU(0.2, True)
        h = F.conv2d(value, sd[f"{m}.1.weight"], stride=2, padding=1)
        if depth == num_downs - 1:
            h = F.relu(h)
            h = F.conv_transpose2d(h, sd[f"{m}.3.weight"], stride=2, padding=1)
            h = bn(f"{m}.4", h)
        else:
            h = bn(f"{m}.2", h)
            h = block(depth + 1, f"{m}.3", h)
            h = F.relu(h)
            h = F.conv_transpose2d(h, sd[f"{m}.5.weight"], stride=2, padding=1)
            h = bn(f"{m}.6", h)
        return torch.cat([value, h], 1)

    return block(0, "model", x.clone())
