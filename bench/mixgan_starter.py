"""Train and evaluate the bundled MIXGAN starter model (glyphs in colourful textures).

    python bench/mixgan_starter.py train      # ~40 min on 2 CPU cores; resumable
    python bench/mixgan_starter.py evaluate   # numbers -> bench/results/mixgan-starter.md

`train` is `python -m backend train mixgan` with the starter's settings; the model is written to
models/starter/mixgan_glyphs.pth (+ .json). `evaluate` is in backend/training/mixgan_eval.py.
The starter uses --content-weight 1 (a structure term for the mixture decoder, see
backend/training/mixgan.py); `evaluate --compare paper=FILE` measures a model trained without it.
The committed file was made in three runs (listed in NOTES below and in the results file); one
run from scratch with these settings trains the same amounts in a simpler order (6000 autoencoder
steps, then 2000 mixture steps), so its numbers will differ somewhat. Command line for that (on a busy machine add --threads 1):
    python -m backend train mixgan --content builtin:glyphs --style builtin:textures \
        --name mixgan_glyphs --arch conv --size 32 --batch 32 --steps 8000 --mix-fraction 0.25 \
        --width 16 --latent 64 --n-res 6 --content-weight 1 --models-dir models/starter
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STARTER_PATH = ROOT / "models" / "starter" / "mixgan_glyphs.pth"
STARTER = dict(
    content="builtin:glyphs", style="builtin:textures", name="mixgan_glyphs", arch="conv",
    size=32, batch=32, steps=8000, mix_fraction=0.25, width=16, latent=64, n_res=6, lr=2e-4,
    content_weight=1.0,
    seed=0, pool=20000, device="cpu", sample_every=200, checkpoint_every=100,
    display_name="Glyphs in colourful textures (MIXGAN starter)")


NOTES = """
## Training and reading the results

Trained on this project's 2-core CPU, shared with other jobs, one thread, batch 32, 32 px, in
three runs of the same run folder (`runs/mixgan/mixgan_glyphs`, resumable checkpoints):
1. `train` with `--steps 4000 --content-weight 0`: autoencoder steps 0-2999, mixture 3000-3999
   (about 50 min under a load average of about 10).
2. `train --restart-mixture` (content weight 1): a fresh mixture decoder, steps 3000-3999
   (about 15 min).
3. `train --steps 8000`: the schedule extended, so steps 4000-5999 trained the autoencoder further
   and 6000-7999 the mixture decoder (about 16 min on a quieter machine).
In all: 5000 autoencoder steps; the final mixture decoder had 3000 steps, all with content
weight 1 (run 1's was discarded by --restart-mixture).
The row "content weight 0" below is the mixture decoder of run 1 (the paper's losses only): it
painted texture blobs over the background and the glyphs became hard to read. The row "4000
steps" is the model after run 2.

The issue's aim of 80% on mixtures is not quite reached: 79.9% when mixtures are read as
luminance, and far less when they are read along their principal colour axis (the textured background
varies more than glyph versus background). The limit is still the content autoencoder: 87.8% of
held-out glyphs survive reconstruction (72.5% after 3000 steps; its loss was still falling).
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="(re)train the starter model")
    train.add_argument("--steps", type=int, default=STARTER["steps"])
    train.add_argument("--out", default=str(ROOT / "runs" / "mixgan" / "mixgan_glyphs"))
    train.add_argument("--models-dir", default=str(ROOT / "models" / "starter"))
    train.add_argument("--device", default="cpu")
    train.add_argument("--restart-mixture", action="store_true",
                       help="keep the trained autoencoder, train the mixture decoder again")
    train.add_argument("--content-weight", type=float, default=STARTER["content_weight"],
                       help="weight of the mixture decoder's structure term")
    train.add_argument("--threads", type=int, default=1,
                       help="CPU threads (1 is fastest on a shared, oversubscribed machine)")
    evaluate = sub.add_parser("evaluate", help="measure content kept and style taken")
    evaluate.add_argument("--model", default=str(ROOT / "models" / "starter" / "mixgan_glyphs.pth"))
    evaluate.add_argument("--report", default=str(ROOT / "bench" / "results" / "mixgan-starter.md"))
    evaluate.add_argument("--sheet", default=str(ROOT / "docs" / "images" / "mixgan-starter.png"))
    evaluate.add_argument("--count", type=int, default=2000, help="held-out glyphs to mix")
    evaluate.add_argument("--cache", default=str(ROOT / "runs" / "mixgan"),
                          help="folder where the trained glyph classifier is kept")
    evaluate.add_argument("--compare", action="append", default=[], metavar="LABEL=PATH",
                          help="also measure another MIXGAN file (a row in the report)")
    args = parser.parse_args()

    if args.command == "train":
        import torch
        from backend.training.mixgan import TrainOptions, train as run
        torch.set_num_threads(args.threads)
        options = TrainOptions(**{**STARTER, "steps": args.steps, "device": args.device,
                                  "out": args.out, "models_dir": args.models_dir,
                                  "restart_mixture": args.restart_mixture,
                                  "content_weight": args.content_weight})
        run(options)
        return 0
    import torch
    torch.set_num_threads(1)  # fastest on a shared machine; the numbers do not depend on it
    from backend.training.mixgan_eval import evaluate_starter
    compare = dict(item.split("=", 1) for item in args.compare)
    evaluate_starter(Path(args.model), Path(args.report), Path(args.sheet), count=args.count,
                     cache_dir=Path(args.cache), compare={k: Path(v) for k, v in compare.items()},
                     notes=NOTES if Path(args.model).resolve() == STARTER_PATH else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
