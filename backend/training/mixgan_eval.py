"""Does a MIXGAN keep the content and take the style? Measurements for the starter model.

Content kept: a small glyph classifier is trained on clean rendered glyphs (a seed no MIXGAN
image comes from) and then asked to name the glyph in mixtures of *held-out* glyphs (another
seed): glyph -> E -> Gc -> Gm -> classifier. A mixture is colour, the classifier reads grey, so
each image is projected on its own principal colour axis (the direction in RGB along which its
pixels vary most; it separates glyph from background whatever colours Gm chose) and standardised.
Which side of that axis is "ink" is arbitrary, so the classifier is trained on both polarities;
it also sees mild blur and noise, nothing else. The same classifier is scored on the clean
held-out glyphs (its ceiling), on Gc's grey reconstructions (what the autoencoder keeps) and on
style patches (chance level: it must not find glyphs in textures).

Style taken: colour statistics of mixtures, style patches (held-out textures) and content glyphs,
compared by the total-variation distance of their 8x8x8 RGB histograms and the Fréchet distance
of Gaussian fits to their pixel colours; mixtures should be closer to the style domain.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backend.data.domains import to_tensor, to_uint8
from backend.data.glyphs import DEFAULT_CHARSET, render_glyphs
from backend.data.textures import render_textures
from backend.networks.mixgan import MixGAN, load_model

from .common import save_grid

CLASSIFIER_SEED = 2000      # glyphs the classifier learns from
HELD_OUT_SEED = 1000        # glyphs the MIXGAN never saw (it trained on seed 0)
CLASSIFIER_VERSION = 1      # bump when the classifier or its training changes
STYLE_SEED = 777            # textures the MIXGAN never saw (it trained on seed 1)


class GlyphClassifier(nn.Module):
    def __init__(self, classes: int, size: int) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                    nn.MaxPool2d(2)]
        self.features = nn.Sequential(*block(1, 32), *block(32, 64), *block(64, 128))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3),
                                  nn.Linear(128 * (size // 8) ** 2, 256), nn.ReLU(),
                                  nn.Linear(256, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def standardise(grey: torch.Tensor) -> torch.Tensor:
    """Per image: zero mean, unit deviation (N x 1 x H x W)."""
    mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    std = grey.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
    return (grey - mean) / std


def principal_grey(rgb: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W -> N x 1 x H x W: each image's pixels projected on their first principal
    colour axis (for grey inputs: the grey level itself, up to sign)."""
    n, _, h, w = rgb.shape
    pixels = rgb.reshape(n, 3, h * w)
    centred = pixels - pixels.mean(dim=2, keepdim=True)
    covariance = centred @ centred.transpose(1, 2) / (h * w)
    _, vectors = torch.linalg.eigh(covariance + 1e-6 * torch.eye(3))
    axis = vectors[:, :, -1:]                      # largest eigenvalue last
    return (axis.transpose(1, 2) @ centred).reshape(n, 1, h, w)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    sign = torch.where(torch.rand(n, 1, 1, 1, generator=generator) < 0.5, -1.0, 1.0)
    x = x * sign
    blur = torch.rand(n, generator=generator) < 0.5
    if blur.any():
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = (kernel[:, None] * kernel[None, :] / 16.0)[None, None]
        x = torch.where(blur[:, None, None, None], F.conv2d(x, kernel, padding=1), x)
    x = x + 0.15 * torch.rand(n, 1, 1, 1, generator=generator) * \
        torch.randn(x.shape, generator=generator)
    return standardise(x)


def train_classifier(size: int = 32, count: int = 20000, epochs: int = 4,
                     seed: int = CLASSIFIER_SEED, log=print) -> GlyphClassifier:
    images, labels = render_glyphs(count, size, seed)
    x = to_tensor(images)
    y = torch.from_numpy(labels)
    torch.manual_seed(seed)
    model = GlyphClassifier(len(DEFAULT_CHARSET), size)
    optimizer = torch.optim.Adam(model.parameters(), 2e-3)
    steps = epochs * (count // 128)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(count, generator=generator)
        for start in range(0, count - 127, 128):
            batch = order[start:start + 128]
            loss = F.cross_entropy(model(_augment(x[batch], generator)), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
        log(f"  classifier epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}")
    return model.eval()


def cached_classifier(size: int, cache_dir: Path | None, log=print) -> GlyphClassifier:
    """train_classifier(size), kept in `cache_dir` keyed by everything it depends on (size,
    charset, the fonts found on this machine, CLASSIFIER_VERSION): re-evaluations skip training."""
    import hashlib

    from backend.data.glyphs import find_fonts
    if cache_dir is None:
        return train_classifier(size, log=log)
    key = hashlib.sha256("|".join([str(size), DEFAULT_CHARSET, *find_fonts(),
                                   str(CLASSIFIER_VERSION)]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"glyph-classifier-{key}.pth"
    model = GlyphClassifier(len(DEFAULT_CHARSET), size)
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        log(f"glyph classifier from {path}")
        return model.eval()
    model = train_classifier(size, log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


@torch.no_grad()
def classify(model: GlyphClassifier, grey: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(standardise(chunk)).argmax(1) for chunk in grey.split(256)])


@torch.no_grad()
def mix(network: MixGAN, glyphs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out glyphs -> (Gc reconstructions, Gm mixtures), in [-1, 1]."""
    network.eval()
    outputs = [network(chunk) for chunk in glyphs.split(128)]
    return torch.cat([o[0] for o in outputs]), torch.cat([o[1] for o in outputs])


@dataclass
class ColourDistances:
    histogram_tv: float    # total-variation distance of 8x8x8 RGB histograms (0..1)
    frechet: float         # Fréchet distance of Gaussian fits to RGB pixels (0..1 scale)


def rgb_histogram(images: np.ndarray, bins: int = 8) -> np.ndarray:
    """N x H x W x 3 uint8 -> normalised joint histogram of all pixels."""
    q = (images.reshape(-1, 3).astype(np.int64) * bins) // 256
    counts = np.bincount((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2], minlength=bins ** 3)
    return counts / counts.sum()


def _gaussian(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    return pixels.mean(0), np.cov(pixels, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def colour_distances(a: np.ndarray, b: np.ndarray) -> ColourDistances:
    tv = 0.5 * float(np.abs(rgb_histogram(a) - rgb_histogram(b)).sum())
    (mu_a, cov_a), (mu_b, cov_b) = _gaussian(a), _gaussian(b)
    root_a = _sqrt_psd(cov_a)
    cross = _sqrt_psd(root_a @ cov_b @ root_a)
    frechet = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * cross))
    return ColourDistances(tv, frechet)


def saturation(images: np.ndarray) -> float:
    rgb = images.astype(np.float32) / 255.0
    return float((rgb.max(-1) - rgb.min(-1)).mean())


def sample_sheet(network: MixGAN, glyphs: torch.Tensor, path: Path, columns: int = 12,
                 scale: int = 3) -> Path:
    """Rows: held-out glyphs, their mixtures, prior samples, and a word at 4x the training width
    (the conv architecture takes any size)."""
    from PIL import Image, ImageDraw
    from backend.data.glyphs import find_fonts, _font

    size = network.config.size
    inputs = glyphs[:columns]
    _, mixtures = mix(network, inputs)
    z = torch.from_numpy(np.stack([np.random.default_rng([0, i]).standard_normal(
        network.config.latent_shape(), dtype=np.float32) for i in range(columns)]))
    with torch.no_grad():
        _, prior = network.decode(z)
    rows = [inputs.expand(-1, 3, -1, -1), mixtures, prior]
    tmp = path.with_name(path.stem + ".grid.png")
    save_grid(tmp, [list(row) for row in rows], signed=True, margin=2)
    grid = Image.open(tmp).convert("RGB")
    tmp.unlink()
    parts = [grid]
    if network.config.arch == "conv":
        width = size * 8
        word = Image.new("L", (width, size))
        font = _font([f for f in find_fonts() if "Sans-Bold.ttf" in f][0]
                     if any("Sans-Bold.ttf" in f for f in find_fonts()) else find_fonts()[0],
                     int(size * 0.8))
        ImageDraw.Draw(word).text((width / 2, size / 2), "MIXGAN 2018", fill=255, font=font,
                                  anchor="mm")
        x = to_tensor(np.asarray(word)[None])
        with torch.no_grad():
            _, mixed = network(x)
        pair = np.concatenate([np.repeat(np.asarray(word)[..., None], 3, -1),
                               to_uint8(mixed)[0]], axis=1)
        parts.append(Image.fromarray(pair))
    total_h = sum(p.height for p in parts) + 2 * (len(parts) - 1)
    canvas = Image.new("RGB", (max(p.width for p in parts), total_h), "white")
    top = 0
    for part in parts:
        canvas.paste(part, (0, top))
        top += part.height + 2
    canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def evaluate(network: MixGAN, count: int = 2000, log=print,
             cache_dir: Path | None = None) -> dict[str, float]:
    size = network.config.size
    started = time.monotonic()
    log("glyph classifier (trained on clean rendered glyphs) ...")
    classifier = cached_classifier(size, cache_dir, log=log)
    images, labels = render_glyphs(count, size, HELD_OUT_SEED)
    glyphs, truth = to_tensor(images), torch.from_numpy(labels)
    reconstructions, mixtures = mix(network, glyphs)
    textures = render_textures(count, 2 * size, STYLE_SEED)[:, size // 2:size // 2 + size,
                                                            size // 2:size // 2 + size]

    def accuracy(grey: torch.Tensor) -> float:
        return float((classify(classifier, grey) == truth).float().mean())

    results = {
        "acc_clean": accuracy(glyphs),
        "acc_reconstruction": accuracy(reconstructions),
        "acc_mixture": accuracy(principal_grey(mixtures)),
        "acc_mixture_luma": accuracy(
            (mixtures * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, True)),
        "acc_textures_chance": accuracy(principal_grey(to_tensor(textures))),
    }
    mixture_pixels = to_uint8(mixtures)
    content_pixels = np.repeat(images[..., None], 3, axis=-1)
    to_style = colour_distances(mixture_pixels, textures)
    to_content = colour_distances(mixture_pixels, content_pixels)
    between = colour_distances(textures, content_pixels)
    results.update({
        "tv_mixture_style": to_style.histogram_tv, "tv_mixture_content": to_content.histogram_tv,
        "tv_style_content": between.histogram_tv,
        "fd_mixture_style": to_style.frechet, "fd_mixture_content": to_content.frechet,
        "fd_style_content": between.frechet,
        "sat_mixture": saturation(mixture_pixels), "sat_style": saturation(textures),
        "sat_content": saturation(content_pixels),
        "classes": float(len(DEFAULT_CHARSET)), "count": float(count),
        "seconds": time.monotonic() - started,
    })
    return results


def report(results: dict[str, float], model_path: Path, sheet: Path | None,
           comparisons: dict[str, dict[str, float]] | None = None, notes: str = "") -> str:
    r = results
    lines = [
        "# MIXGAN starter model: content kept, style taken",
        "",
        f"Model: `{model_path.as_posix()}`. Measured with `python bench/mixgan_starter.py "
        f"evaluate` (backend/training/mixgan_eval.py explains the method). "
        f"{int(r['count'])} held-out glyphs (seed {HELD_OUT_SEED}; training used seed 0), "
        f"{int(r['classes'])} classes (chance {1 / r['classes']:.1%}). Evaluation took "
        f"{r['seconds']:.0f} s on the CPU.",
        "",
        "## Content kept: glyph classifier accuracy",
        "",
        "| images the classifier reads | accuracy |",
        "|---|---|",
        f"| clean held-out glyphs (ceiling) | {r['acc_clean']:.1%} |",
        f"| Gc reconstructions of them (grey) | {r['acc_reconstruction']:.1%} |",
        f"| mixtures of them (Gm output), read as luminance | {r['acc_mixture_luma']:.1%} |",
        f"| mixtures of them (Gm output), read along their principal colour axis | "
        f"{r['acc_mixture']:.1%} |",
        f"| style textures (should be near chance) | {r['acc_textures_chance']:.1%} |",
        "",
        "Both ways of turning a colour mixture into grey were fixed before measuring and both are "
        "reported. Luminance works when Gm draws the shape as a brightness contrast; the "
        "principal colour axis works when glyph-versus-background is the image's dominant "
        "colour contrast and fails when the background texture varies more than that. The "
        "mixtures cannot beat the reconstructions they are made from.",
        "",
        "## Style taken: colour statistics",
        "",
        "| distance | mixtures to style | mixtures to content | style to content |",
        "|---|---|---|---|",
        f"| RGB histogram total variation (0..1) | {r['tv_mixture_style']:.3f} | "
        f"{r['tv_mixture_content']:.3f} | {r['tv_style_content']:.3f} |",
        f"| Fréchet distance of pixel colours | {r['fd_mixture_style']:.4f} | "
        f"{r['fd_mixture_content']:.4f} | {r['fd_style_content']:.4f} |",
        "",
        f"Mean saturation (max−min of RGB): mixtures {r['sat_mixture']:.3f}, style "
        f"{r['sat_style']:.3f}, content {r['sat_content']:.3f}.",
        "",
    ]
    if notes:
        lines += [notes.strip(), ""]
    if comparisons:
        lines += ["## Variants measured the same way", "",
                  "| model | reconstructions | mixtures (principal axis) | mixtures (luma) | TV to style | "
                  "TV to content | FD to style | FD to content |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, c in {"**this model**": r, **comparisons}.items():
            lines.append(
                f"| {label} | {c['acc_reconstruction']:.1%} | {c['acc_mixture']:.1%} | "
                f"{c['acc_mixture_luma']:.1%} | {c['tv_mixture_style']:.3f} | "
                f"{c['tv_mixture_content']:.3f} | {c['fd_mixture_style']:.4f} | "
                f"{c['fd_mixture_content']:.4f} |")
        lines.append("")
    if sheet is not None:
        lines += ["## Samples", "",
                  f"![MIXGAN starter samples](../../{sheet.as_posix()})", "",
                  "Rows: held-out glyphs; their mixtures; new images from the prior (latent map "
                  "drawn per location, so they are glyph-like strokes, not whole glyphs); last: "
                  "a word at 8x the training width through the same model (left: input).", ""]
    return "\n".join(lines)


def evaluate_starter(model_path: Path, report_path: Path, sheet_path: Path,
                     count: int = 2000, cache_dir: Path | None = None,
                     compare: dict[str, Path] | None = None,
                     notes: str = "") -> dict[str, float]:
    torch.manual_seed(0)
    network = load_model(model_path)
    results = evaluate(network, count, cache_dir=cache_dir)
    for key, value in results.items():
        print(f"{key:24s} {value:.4f}")
    comparisons = {}
    for label, path in (compare or {}).items():
        comparisons[label] = evaluate(load_model(path), count, cache_dir=cache_dir)
        print(f"{label}: mixtures {comparisons[label]['acc_mixture']:.4f}")
    held_out, _ = render_glyphs(12, network.config.size, HELD_OUT_SEED + 1)
    sample_sheet(network, to_tensor(held_out), sheet_path)
    from backend import PROJECT_ROOT
    try:
        shown_sheet = sheet_path.resolve().relative_to(PROJECT_ROOT)
        shown_model = model_path.resolve().relative_to(PROJECT_ROOT)
    except ValueError:
        shown_sheet, shown_model = sheet_path, model_path
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(report(results, shown_model, shown_sheet, comparisons, notes))
    print(f"wrote {report_path} and {sheet_path}")
    return results
