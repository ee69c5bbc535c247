"""Proof that training works: the three recipes on synthetic tasks with a known answer.

    python bench/train_proof.py [--scale full|quick] [--device cpu|cuda] [--threads N]
                                [--out bench/results/training.md]

- pix2pix learns input -> target where the target is a fixed colour + edge transform of the
  input (backend/training/synthetic.py: pix2pix_target); measured: mean |G(x) - truth(x)| on
  held-out scenes, against the identity map's error.
- CycleGAN learns A -> B from two *unpaired* folders, B being hue-rotated (channel-permuted)
  scenes; measured: the learned A -> B and B -> A maps against the true rotation and its inverse,
  on held-out scenes, against the identity map's error.
- AdaIN trains a decoder behind a frozen random-weight encoder in the vgg_normalised layout;
  measured: held-out total loss and the distance between the output's and the style's feature
  mean/std at relu1_1..relu4_1, before and during training.
Each run is trained in segments (stop, evaluate, --resume), so the table also shows the curve
and every segment boundary exercises the exact resume. Results go to the markdown file.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from backend.training import data, synthetic  # noqa: E402
from backend.training.adain_model import AdaINRecipe  # noqa: E402
from backend.training.common import run_training, select_accelerator, seed_everything  # noqa: E402
from backend.training.cyclegan_model import CycleGANRecipe  # noqa: E402
from backend.training.options import TrainOptions  # noqa: E402
from backend.training.pix2pix_model import Pix2PixRecipe  # noqa: E402
from backend.networks.adain import mean_std  # noqa: E402

SCALES = {
    # name: pix2pix (pairs, px, ngf, steps), cyclegan (images, px, ngf, steps),
    #       adain (images, px, batch, steps), segments
    "full": dict(p2p=(64, 128, 32, 500), cyc=(64, 64, 16, 500), ada=(32, 64, 4, 240), segments=4),
    "quick": dict(p2p=(8, 128, 8, 40), cyc=(8, 32, 8, 40), ada=(6, 32, 2, 8), segments=2),
}


@dataclass
class Row:
    task: str
    step: int
    measure: str
    learned: float
    baseline: float
    seconds: float


def _segments(total: int, count: int) -> list[int]:
    return sorted({max(1, round(total * (i + 1) / count)) for i in range(count)})


def _train_in_segments(recipe_cls, options: TrainOptions, segments: list[int], evaluate,
                       rows: list[Row], task: str, log) -> None:
    started = time.perf_counter()
    for index, stop in enumerate(segments):
        options.resume = index > 0
        result = run_training(recipe_cls, options, given={"resume"} if index else None,
                              warn=lambda m: None, stop_after=stop)
        elapsed = time.perf_counter() - started
        for measure, learned, baseline in evaluate(result.recipe):
            rows.append(Row(task, result.step, measure, learned, baseline, elapsed))
            log(f"{task:9s} step {result.step:5d}  {measure:34s} {learned:.4f} "
                f"(baseline {baseline:.4f})  {elapsed:7.1f} s")


def prove_pix2pix(work: Path, scale: dict, device: str, rows: list[Row], log) -> None:
    pairs, size, ngf, steps = scale["p2p"]
    root = synthetic.write_paired(work / "p2p", pairs, size, seed=0)
    held_out = synthetic.scenes(16, size, seed=999)
    options = TrainOptions(engine="pix2pix", name="proof_pix2pix", input_dir=str(root / "input"),
                           target_dir=str(root / "target"), arch="unet_128", size=size,
                           load_size=size + size // 8, ngf=ngf, ndf=ngf, steps=steps,
                           device=device, sample_every=max(1, steps // 4), checkpoint_every=0,
                           quiet=True, runs_dir=str(work / "runs"),
                           models_dir=str(work / "models"))

    def evaluate(recipe):
        learned, identity = synthetic.mapping_error(
            lambda x: recipe.generate(x.to(recipe.accel.device)).cpu(), held_out,
            synthetic.pix2pix_target)
        return [("L1 to truth, held-out (0..1)", learned, identity)]

    _train_in_segments(Pix2PixRecipe, options, _segments(steps, scale["segments"]), evaluate,
                       rows, "pix2pix", log)


def prove_cyclegan(work: Path, scale: dict, device: str, rows: list[Row], log) -> None:
    count, size, ngf, steps = scale["cyc"]
    domain_a, domain_b = synthetic.write_unpaired(work / "cyc", count, size, seed=0)
    held_out = synthetic.scenes(16, size, seed=999)
    rotated = [synthetic.hue_rotate(x) for x in held_out]
    options = TrainOptions(engine="cyclegan", name="proof_cyclegan", domain_a=str(domain_a),
                           domain_b=str(domain_b), arch="resnet_6blocks", size=size,
                           load_size=size + size // 8, ngf=ngf, ndf=ngf, steps=steps,
                           device=device, sample_every=max(1, steps // 4), checkpoint_every=0,
                           quiet=True, runs_dir=str(work / "runs"),
                           models_dir=str(work / "models"))

    def evaluate(recipe):
        dev = recipe.accel.device
        with recipe.sampling(recipe.G_A), recipe.sampling(recipe.G_B):
            a2b = synthetic.mapping_error(lambda x: recipe.G_A(x.to(dev)).cpu(), held_out,
                                          synthetic.hue_rotate)
            b2a = synthetic.mapping_error(lambda x: recipe.G_B(x.to(dev)).cpu(), rotated,
                                          lambda y: y[..., [1, 2, 0]])
        return [("A->B L1 to true map, held-out", *a2b),
                ("B->A L1 to true inverse, held-out", *b2a)]

    _train_in_segments(CycleGANRecipe, options, _segments(steps, scale["segments"]), evaluate,
                       rows, "cyclegan", log)


def prove_adain(work: Path, scale: dict, device: str, rows: list[Row], log) -> None:
    count, size, batch, steps = scale["ada"]
    content, style = synthetic.write_styles(work / "ada", count, size + size // 4, seed=0)
    held = work / "ada_held"
    synthetic.write_styles(held, 16, size, seed=77)
    vgg = work / "vgg_random.pth"
    torch.save(synthetic.random_vgg_state_dict(0), vgg)
    options = TrainOptions(engine="adain", name="proof_adain", content=str(content),
                           style=str(style), vgg=str(vgg), size=size, load_size=size + size // 4,
                           flip=False, batch=batch, steps=steps, lr=1e-4, beta1=0.9,
                           device=device, sample_every=max(1, steps // 4), checkpoint_every=0,
                           quiet=True, runs_dir=str(work / "runs"),
                           models_dir=str(work / "models"))
    load = lambda kind: torch.stack([data.to_tensor(data.load_rgb(p), False)  # noqa: E731
                                     for p in sorted((held / kind).iterdir())])
    held_content, held_style = load("content"), load("style")

    def measure(recipe) -> tuple[float, list[float]]:
        dev = recipe.accel.device
        with torch.no_grad():
            c, s = held_content.to(dev), held_style.to(dev)
            parts = recipe.losses(c, s)
            output, _, style_feats = recipe.stylize(c, s)
            output_feats = recipe.encode_levels(output)
        total = float(parts["content"]) + options.style_weight * float(parts["style"])
        gaps = []
        for out, sty in zip(output_feats, style_feats):
            (om, osd), (sm, ssd) = mean_std(out.float()), mean_std(sty.float())
            gaps.append(float(((om - sm).abs().mean() + (osd - ssd).abs().mean()) / 2))
        return total, gaps

    seed_everything(options.seed)
    before_total, before_gaps = measure(AdaINRecipe(options, select_accelerator(options), steps))

    def evaluate(recipe):
        total, gaps = measure(recipe)
        named = ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]
        return ([("total loss, held-out (start = baseline)", total, before_total)]
                + [(f"mean/std gap to style at {n}", g, b)
                   for n, g, b in zip(named, gaps, before_gaps)])

    _train_in_segments(AdaINRecipe, options, _segments(steps, scale["segments"]), evaluate,
                       rows, "adain", log)


def write_markdown(path: Path, rows: list[Row], args: argparse.Namespace, header: str) -> None:
    lines = [
        "# Training proofs (bench/train_proof.py)", "",
        header, "",
        "Each task has a known ground truth. 'learned' is the trained model's error, 'baseline' "
        "is the identity map's error (pix2pix, CycleGAN) or the value before training (AdaIN). "
        "Errors are mean absolute differences in 0..1 pixel units on held-out images the run "
        "never saw; the AdaIN gap is (mean |mean_out - mean_style| + mean |std_out - std_style|) / 2 "
        "over the channels of a level, in feature units of the random encoder. Each run is "
        "trained in segments that stop and --resume, so every row boundary is also a resume.",
        "", f"Command: `python bench/train_proof.py {' '.join(sys.argv[1:])}`. Times are "
        "wall-clock seconds since the task started, on a machine shared with other jobs, "
        "including evaluation and sample grids; they are not speed measurements.",
        "", "| task | step | measure | learned | baseline | learned / baseline | time (s) |",
        "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        ratio = r.learned / r.baseline if r.baseline else float("nan")
        lines.append(f"| {r.task} | {r.step} | {r.measure} | {r.learned:.4f} | "
                     f"{r.baseline:.4f} | {ratio:.2f} | {r.seconds:.0f} |")
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest on a shared 2-core machine)")
    parser.add_argument("--only", choices=("pix2pix", "cyclegan", "adain"), action="append")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "training.md")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    scale = SCALES[args.scale]
    device_name = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                   else f"{platform.processor() or platform.machine()} CPU, "
                        f"{torch.get_num_threads()} torch thread(s)")
    sizes = (f"pix2pix: {scale['p2p'][0]} pairs of {scale['p2p'][1]} px, unet_128 with ngf "
             f"{scale['p2p'][2]}, {scale['p2p'][3]} steps; CycleGAN: {scale['cyc'][0]} + "
             f"{scale['cyc'][0]} unpaired images of {scale['cyc'][1]} px, resnet_6blocks with "
             f"ngf {scale['cyc'][2]}, {scale['cyc'][3]} steps; AdaIN: {scale['ada'][0]} content "
             f"+ {scale['ada'][0]} style images, {scale['ada'][1]} px crops, batch "
             f"{scale['ada'][2]}, {scale['ada'][3]} steps, full-width decoder, random-weight "
             "vgg_normalised-layout encoder")
    header = (f"Scale '{args.scale}' on {args.device} ({device_name}), torch "
              f"{torch.__version__}. Small images and reduced generator widths (--ngf) so the "
              f"whole proof fits ~25 CPU minutes; losses, optimiser, schedule, pool, crops are "
              f"the published recipe. {sizes}.")
    print(header, flush=True)
    rows: list[Row] = []

    def log(text: str) -> None:
        print(text, flush=True)

    tasks = args.only or ["pix2pix", "cyclegan", "adain"]
    with tempfile.TemporaryDirectory(prefix="train-proof-") as scratch:
        work = args.work or Path(scratch)
        for task in tasks:
            {"pix2pix": prove_pix2pix, "cyclegan": prove_cyclegan,
             "adain": prove_adain}[task](work / task, scale, args.device, rows, log)
            write_markdown(args.out, rows, args, header)
    print()
    print(f"{'task':9s} {'step':>5s}  {'measure':40s} {'learned':>8s} {'baseline':>8s} "
          f"{'ratio':>6s}")
    for r in rows:
        print(f"{r.task:9s} {r.step:5d}  {r.measure:40s} {r.learned:8.4f} {r.baseline:8.4f} "
              f"{r.learned / r.baseline:6.2f}")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
