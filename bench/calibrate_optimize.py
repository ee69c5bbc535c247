"""Loss scales of the optimisation method on the normalised VGG, to choose and check the default
weights (backend/optim/options.py), printed as Markdown.

Without --vgg the network is AdaIN's VggEncoder layout with random weights rescaled like Gatys'
normalised VGG (mean activation 1 per filter over the example images): the same activation scale
as the real file, not the same features. With --vgg models/adain/vgg_normalised.pth it measures
the real network. For each example content/style pair at --side:

1. per style layer at the content image: the weighted style loss (style_weight / C_l² · mse of the
   Grams) and the norm of its gradient: does 1/C_l² keep the layers within an order of magnitude?
2. after --iterations of the default L-BFGS run: the weighted content and style terms, and the
   gradient norms of the weighted style term and of the photo term (Σ_c V_cᵀ L V_c / pixels);
   their ratio is the photo weight at which photorealism pulls as hard as the style.
3. Adam: the total loss after the same number of iterations for several learning rates.

    python bench/calibrate_optimize.py                     # random normalised VGG, side 128
    python bench/calibrate_optimize.py --vgg models/adain/vgg_normalised.pth --side 256
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench_engines import _load, machine  # noqa: E402
from bench_optimize import encoder_for, example  # noqa: E402
from backend.optim import OptimizeOptions, matting_laplacian, run_gatys  # noqa: E402
from backend.optim import losses  # noqa: E402
from backend.optim.features import CONTENT_LAYER, STYLE_LAYERS, FeatureExtractor  # noqa: E402

PAIRS = (("city", "swirls"), ("landscape", "mosaic"), ("still_life", "swirls"))
LEARNING_RATES = (0.002, 0.005, 0.01, 0.02, 0.05)


def layer_table(extractor: FeatureExtractor, content: torch.Tensor, style: torch.Tensor,
                weight: float) -> list[str]:
    image = content.clone().requires_grad_(True)
    ours = extractor(image, STYLE_LAYERS)
    with torch.no_grad():
        theirs = extractor(style, STYLE_LAYERS)
    rows = []
    for layer in STYLE_LAYERS:
        term = weight / extractor.channels(layer) ** 2 * \
            losses.style_loss(ours[layer], losses.gram(theirs[layer]))
        grad = torch.autograd.grad(term, image, retain_graph=True)[0]
        rows.append(f"{float(term):.3g} / {float(grad.norm()):.3g}")
    return rows


def pulls(extractor: FeatureExtractor, image: torch.Tensor, content: torch.Tensor,
          style: torch.Tensor, options: OptimizeOptions) -> dict[str, float]:
    """Weighted terms and gradient norms at `image`."""
    x = image.clone().requires_grad_(True)
    layers = [CONTENT_LAYER, *STYLE_LAYERS]
    ours = extractor(x, layers)
    with torch.no_grad():
        target = extractor(content, [CONTENT_LAYER])[CONTENT_LAYER]
        theirs = extractor(style, STYLE_LAYERS)
    content_term = options.content_weight * losses.content_loss(ours[CONTENT_LAYER], target)
    style_term = options.style_weight * sum(
        losses.style_loss(ours[layer], losses.gram(theirs[layer])) /
        extractor.channels(layer) ** 2 for layer in STYLE_LAYERS)
    photo = matting_laplacian(content).quadratic(x) / (x.shape[-2] * x.shape[-1])
    grads = [torch.autograd.grad(term, x, retain_graph=True)[0].norm()
             for term in (content_term, style_term, photo)]
    return {"content": float(content_term), "style": float(style_term), "photo": float(photo),
            "g_content": float(grads[0]), "g_style": float(grads[1]), "g_photo": float(grads[2])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vgg", default=None)
    parser.add_argument("--pairs", type=int, default=len(PAIRS))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    encoder = encoder_for(args.vgg, device)
    extractor = FeatureExtractor(encoder)
    defaults = OptimizeOptions(size=args.side, iterations=args.iterations, scales=1)
    pairs = PAIRS[:args.pairs]
    print(f"# Optimisation loss scales, {datetime.date.today().isoformat()}")
    print(f"machine: {machine()}; load average (1/5/15 min): {_load()}")
    print(f"VGG: {'file ' + args.vgg if args.vgg else 'random weights, Gatys-normalised'}; "
          f"side {args.side}; defaults: content {defaults.content_weight:g}, style "
          f"{defaults.style_weight:g} x 1/C_l²\n")
    print("## 1. Weighted style loss / gradient norm per layer, at the content image\n")
    print("| content | style | " + " | ".join(STYLE_LAYERS) + " |")
    print("|---|---|" + "---|" * len(STYLE_LAYERS))
    for content_name, style_name in pairs:
        content, style = example(content_name, args.side, device), \
            example(style_name, args.side, device)
        cells = layer_table(extractor, content, style, defaults.style_weight)
        print(f"| {content_name} | {style_name} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n## 2. After {args.iterations} default L-BFGS iterations\n")
    print("| content | style | content term | style term | photo (unweighted) | |∇content| | "
          "|∇style| | |∇photo| | photo weight for equal pull |")
    print("|---|---|---|---|---|---|---|---|---|")
    lbfgs_log: list[float] = []          # the first pair's, compared with Adam below
    for content_name, style_name in pairs:
        content, style = example(content_name, args.side, device), \
            example(style_name, args.side, device)
        log: list[float] = []
        result = run_gatys(content, [style], defaults, encoder,
                           progress=lambda p: log.append(p.loss))
        lbfgs_log = lbfgs_log or log
        p = pulls(extractor, result, content, style, defaults)
        print(f"| {content_name} | {style_name} | {p['content']:.3g} | {p['style']:.3g} | "
              f"{p['photo']:.3g} | {p['g_content']:.3g} | {p['g_style']:.3g} | "
              f"{p['g_photo']:.3g} | {p['g_style'] / max(p['g_photo'], 1e-30):.3g} |",
              flush=True)
    print(f"\n## 3. Adam: total loss after {args.iterations} iterations "
          f"({pairs[0][0]} / {pairs[0][1]})\n")
    content, style = example(pairs[0][0], args.side, device), example(pairs[0][1], args.side,
                                                                      device)
    print(f"L-BFGS for comparison: {lbfgs_log[0]:.4g} -> {lbfgs_log[-1]:.4g}\n")
    print("| learning rate | first | last | lowest |")
    print("|---|---|---|---|")
    for rate in LEARNING_RATES:
        log: list[float] = []
        run_gatys(content, [style], defaults.replace(optimizer="adam", learning_rate=rate),
                  encoder, progress=lambda p: log.append(p.loss))
        print(f"| {rate:g} | {log[0]:.4g} | {log[-1]:.4g} | {min(log):.4g} |", flush=True)
    print(f"\nload average at the end (1/5/15 min): {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
