"""The training loop every recipe shares: device/AMP/channels_last, data loading, phases, progress
bar with losses and ETA, PNG sample grids, checkpoints that resume exactly, Ctrl-C that saves,
and registration of the finished generator in the models folder.

Phases: a recipe may split its run into consecutive phases that train different networks
(MIXGAN: the autoencoder, then the mixture decoder). The loop shows the phase in the progress
bar, writes a sample grid and a checkpoint where one ends, and can train a phase again from
scratch on a finished run (`restart_phase`), keeping what the earlier phases trained.

Exact resume: a checkpoint holds every network, optimiser, scheduler, gradient scaler, image
pool and the Python, NumPy and torch (CPU and CUDA) random states. Data do not depend on any of
them (see data.py: items follow from the seed and the sample number, a StepDataset's batches
from the seed and the step) and the data loader draws from its own generator, so N steps, or
N/2 + resume + N/2, give the same weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TextIO

import numpy as np
import torch
from PIL import Image
from torch import nn

from backend.atomicfile import atomic_write
from stclient.errors import BAD_REQUEST, INTERNAL, UNAVAILABLE, StyleTransferError

from . import register
from .data import (RunDataset, RunSampler, StepDataset, StepSampler, WarnFn, fixed_examples,
                   from_tensor, warn_to_stderr)
from .export import Export
from .options import RESUMABLE_CHANGES, TrainOptions, change_text

CHECKPOINT_FORMAT = 1
SAMPLE_ROWS = 4


# ---------------------------------------------------------------------------- device

@dataclass
class Accelerator:
    """Where and how the networks run: device, autocast dtype (None = float32), memory format."""

    device: torch.device
    amp_dtype: Optional[torch.dtype] = None
    channels_last: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def scaler(self) -> "torch.amp.GradScaler":
        """Loss scaling is needed for float16 only (bfloat16 has float32's range)."""
        return torch.amp.GradScaler(self.device.type,
                                    enabled=self.amp_dtype == torch.float16)

    def module(self, net: nn.Module) -> nn.Module:
        net = net.to(self.device)
        return net.to(memory_format=torch.channels_last) if self.channels_last else net

    def batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        moved = {}
        for key, value in batch.items():
            value = value.to(self.device, non_blocking=True)
            if self.channels_last and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
            moved[key] = value
        return moved


def select_accelerator(options: TrainOptions) -> Accelerator:
    """--device auto|cpu|cuda[:N], --amp and --channels-last (auto: on with CUDA)."""
    wanted = options.device
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise StyleTransferError(UNAVAILABLE, "--device cuda was asked for, but PyTorch sees no "
                                              "CUDA GPU here; use --device cpu or auto.")
    device = torch.device(wanted)
    on_gpu = device.type == "cuda"
    amp = options.amp == "on" or (options.amp == "auto" and on_gpu)
    amp_dtype = None
    if amp:
        if on_gpu:
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            amp_dtype = torch.bfloat16
    channels_last = options.channels_last == "on" or (options.channels_last == "auto" and on_gpu)
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    return Accelerator(device, amp_dtype, channels_last)


# ---------------------------------------------------------------------------- random state

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """All global random states, in types torch.load(weights_only=True) accepts."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {"bit_generator": numpy_state["bit_generator"],
                  "key": [int(k) for k in numpy_state["state"]["key"]],
                  "pos": int(numpy_state["state"]["pos"]),
                  "has_gauss": int(numpy_state["has_gauss"]),
                  "gauss": float(numpy_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": np.array(n["key"], dtype=np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ---------------------------------------------------------------------------- recipes

@dataclass(frozen=True)
class Phase:
    """Steps [start, stop) of a run that train their own networks. Most recipes have one phase,
    the whole run; MIXGAN has two (autoencoder, then mixture decoder)."""

    name: str
    start: int
    stop: int
    trains: frozenset[str] = frozenset()   # its networks/optimizers: made afresh on a restart


def phase_at(phases: list[Phase], step: int) -> Phase:
    """The phase step `step` (0-based) belongs to; steps past the end belong to the last."""
    for phase in phases:
        if step < phase.stop:
            return phase
    return phases[-1]


class Recipe:
    """A published training recipe. Subclasses build their networks in __init__ and fill the
    attributes below; the loop only uses this interface."""

    engine = ""
    signed = True                        # images in [-1, 1] (GANs) or [0, 1] (AdaIN)
    sample_count = SAMPLE_ROWS           # fixed examples shown in each sample grid
    grid_margin = 0                      # white border around a sample grid, in pixels
    final_grid = "final.png"             # the grid written when a run ends ("": step_<N>.png)
    # Phases that can be trained again on a finished run, with the options only that phase
    # uses: they may differ from the run's when it restarts (MIXGAN: a new --style domain).
    phase_options: dict[str, frozenset[str]] = {}

    def __init__(self, options: TrainOptions, accel: Accelerator, total_steps: int) -> None:
        self.options, self.accel, self.total_steps = options, accel, total_steps
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.scaler = accel.scaler()

    # -- to implement
    @classmethod
    def dataset(cls, options: TrainOptions, warn: WarnFn) -> RunDataset:
        raise NotImplementedError

    @classmethod
    def phases(cls, options: TrainOptions, total_steps: int) -> list[Phase]:
        """The run's phases in order, covering steps 0..total_steps."""
        return [Phase("train", 0, total_steps)]

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """One optimisation step on `batch`; `step` is its 0-based number in the run (for
        recipes whose step depends on it, e.g. on the phase)."""
        raise NotImplementedError

    def sample_rows(self, examples: dict[str, torch.Tensor]) -> list[list[torch.Tensor]]:
        raise NotImplementedError

    def exports(self) -> list[Export]:
        raise NotImplementedError

    def export_stems(self) -> list[str]:
        """Model names the run will register (checked for clashes before training)."""
        return [self.options.name]

    def restart_phase(self, phase: Phase) -> None:
        """Make the networks and optimizers of `phase` afresh (see `phase_options`)."""
        raise StyleTransferError(BAD_REQUEST, f"train {self.engine} cannot restart its "
                                              f"{phase.name} phase.")

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # -- shared
    def state_dict(self) -> dict[str, Any]:
        return {
            "networks": {k: v.state_dict() for k, v in self.networks.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any], fresh: Collection[str] = ()) -> None:
        """Load a checkpoint's states; the networks/optimizers named in `fresh` (those of a
        restarted phase) are neither loaded nor needed in it."""
        for group in ("networks", "optimizers", "schedulers"):
            mine = {k: v for k, v in getattr(self, group).items() if k not in fresh}
            stored = {k: v for k, v in state[group].items() if k not in fresh}
            if set(mine) != set(stored):
                raise StyleTransferError(
                    BAD_REQUEST, f"The checkpoint's {group} ({', '.join(sorted(stored))}) "
                                 f"do not match this recipe's ({', '.join(sorted(mine))}).")
            for key, value in stored.items():
                mine[key].load_state_dict(value)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.load_extra_state(state.get("extra", {}))

    @contextlib.contextmanager
    def sampling(self, net: nn.Module) -> Iterator[nn.Module]:
        """Run `net` for a sample grid without touching training: random state forked, buffers
        (batch-norm statistics) restored, dropout off, no gradients."""
        buffers = {k: v.detach().clone() for k, v in net.named_buffers()}
        dropouts = [m for m in net.modules() if isinstance(m, nn.Dropout) and m.training]
        devices = [self.accel.device] if self.accel.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            for module in dropouts:
                module.eval()
            try:
                yield net
            finally:
                for module in dropouts:
                    module.train()
                for key, value in net.named_buffers():
                    value.copy_(buffers[key])


def linear_decay(total_steps: int, decay_fraction: float) -> Callable[[int], float]:
    """The reference's 'linear' policy in steps: constant, then linearly down to 1/(n+1) of the
    initial rate over the last `decay_fraction` of the run."""
    decay_steps = int(round(total_steps * decay_fraction))
    start = total_steps - decay_steps

    def factor(step: int) -> float:
        return 1.0 - max(0, step - start + 1) / float(decay_steps + 1)

    return factor


# ---------------------------------------------------------------------------- progress

def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """One-line bar with mean losses since the last refresh, speed and ETA. On a terminal the line
    is redrawn; otherwise (logs) a full line is printed every `log_every` seconds."""

    def __init__(self, label: str, start: int, total: int, stream: TextIO = sys.stderr,
                 quiet: bool = False, log_every: float = 10.0) -> None:
        self.label, self.start, self.total, self.stream, self.quiet = label, start, total, stream, quiet
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.interval = 0.5 if self.tty else log_every
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.first_time: Optional[float] = None
        self.first_step = start
        self.last_print = 0.0
        self.last_losses: dict[str, float] = {}
        self.step = start
        self.phase = ""                      # shown before the losses when a recipe has phases

    def set_phase(self, name: str) -> None:
        """Losses are averaged within one phase: the ending phase's line is drawn first."""
        if name != self.phase:
            if self.count:
                self.flush()
            self.phase = name

    def update(self, step: int, losses: dict[str, torch.Tensor]) -> None:
        now = time.monotonic()
        if self.first_time is None:          # speed is measured after the first (warm-up) step
            self.first_time, self.first_step = now, step
        self.step = step
        for key, value in losses.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.count += 1
        if now - self.last_print >= self.interval or step == self.total:
            self.flush(now)

    def flush(self, now: Optional[float] = None) -> None:
        now = time.monotonic() if now is None else now
        if self.count:
            self.last_losses = {k: float(v) / self.count for k, v in self.sums.items()}
            self.sums, self.count = {}, 0
            bad = [k for k, v in self.last_losses.items() if not math.isfinite(v)]
            if bad:
                raise StyleTransferError(
                    INTERNAL, f"Training diverged at step {self.step}: loss {', '.join(bad)} is "
                              "not finite. Train again with a lower --lr and --overwrite.")
        self.last_print = now
        if not self.quiet:
            self._draw(now)

    def rate(self, now: float) -> float:
        if self.first_time is None or self.step <= self.first_step or now <= self.first_time:
            return 0.0
        return (self.step - self.first_step) / (now - self.first_time)

    def line(self, now: Optional[float] = None) -> str:
        now = time.monotonic() if now is None else now
        fraction = self.step / self.total if self.total else 1.0
        width = 20
        filled = int(round(fraction * width))
        bar = "#" * filled + "-" * (width - filled)
        named = [self.phase] if self.phase else []
        losses = " ".join(named + [f"{k} {v:.3f}" for k, v in self.last_losses.items()])
        rate = self.rate(now)
        if rate > 0:
            speed = f"{rate:.2f} it/s" if rate >= 1 else f"{1 / rate:.1f} s/it"
            eta = f"ETA {_clock((self.total - self.step) / rate)}"
        else:
            speed, eta = "-- it/s", "ETA --:--"
        return (f"{self.label} [{bar}] {self.step}/{self.total} {fraction * 100:3.0f}% "
                f"{losses} | {speed} {eta}")

    def _draw(self, now: float) -> None:
        text = self.line(now)
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A message on its own line (the bar is redrawn below it on a terminal)."""
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + "\n" + self.line())
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.count:
            self.flush()
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------- Ctrl-C

class StopRequest:
    """Set by SIGINT/SIGTERM: the loop finishes its step, saves and exits. A second Ctrl-C falls
    back to Python's default (an immediate KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        sys.stderr.write("\nStopping after this step and saving a checkpoint "
                         "(press Ctrl-C again to quit without saving)...\n")
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _ignore_sigint(worker_id: int) -> None:
    """Data workers leave Ctrl-C to the main process, which stops cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------------------- files

def save_grid(path: Path, rows: list[list[torch.Tensor]], signed: bool, gap: int = 2,
              margin: int = 0) -> None:
    """Rows of 3 x H x W images -> one PNG (white gaps between cells, and a white border of
    `margin` pixels)."""
    cells = [[from_tensor(image, signed) for image in row] for row in rows]
    height = max(c.shape[0] for row in cells for c in row)
    width = max(c.shape[1] for row in cells for c in row)
    columns = max(len(row) for row in cells)
    canvas = np.full((len(cells) * (height + gap) - gap + 2 * margin,
                      columns * (width + gap) - gap + 2 * margin, 3), 255, dtype=np.uint8)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            y, x = margin + r * (height + gap), margin + c * (width + gap)
            canvas[y:y + cell.shape[0], x:x + cell.shape[1]] = cell
    atomic_write(path, lambda tmp: Image.fromarray(canvas).save(tmp, format="PNG"))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file: say which and why
        raise StyleTransferError(
            BAD_REQUEST, f"The training checkpoint {path} cannot be read ({error}); start again "
                         "with --overwrite.") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise StyleTransferError(BAD_REQUEST, f"{path} is not a training checkpoint of this "
                                              "version; start again with --overwrite.")
    return state


def save_checkpoint(path: Path, options: TrainOptions, step: int, total: int,
                    recipe: Recipe) -> None:
    state = {"format": CHECKPOINT_FORMAT, "engine": options.engine, "step": step,
             "total_steps": total, "options": options.to_dict(),
             "recipe": recipe.state_dict(), "rng": capture_rng()}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def merge_resumed(stored: dict[str, Any], given: TrainOptions, given_names: set[str],
                  restarted_options: Collection[str] = ()) -> TrainOptions:
    """The stored recipe, with only the run-control options the user set again (and, when a
    phase restarts, the options only that phase uses)."""
    options = TrainOptions.from_dict(stored)
    conflicts = []
    for name in sorted(given_names):
        new, old = getattr(given, name), getattr(options, name)
        if name in RESUMABLE_CHANGES or name in restarted_options:
            setattr(options, name, new)
        elif new != old:
            conflicts.append(change_text(name, new, old))
    if conflicts:
        raise StyleTransferError(
            BAD_REQUEST, "A resumed run keeps its recipe, but these options differ: "
                         + "; ".join(conflicts) + ". Drop them, or start a new run.")
    if "steps" in given_names:
        options.epochs = None
    if "epochs" in given_names:
        options.steps = None
    options.resume = True
    options.restart_phase = given.restart_phase
    return options


def total_steps(options: TrainOptions, dataset: RunDataset) -> int:
    if options.steps is not None:
        return int(options.steps)
    epochs = options.epochs if options.epochs is not None else 1.0
    return max(1, math.ceil(epochs * dataset.epoch_length / options.batch))


# ---------------------------------------------------------------------------- the loop

@dataclass
class TrainResult:
    step: int
    total_steps: int
    stopped: bool                          # True: interrupted before the end (checkpoint saved)
    run_dir: Path
    registered: list[Path] = field(default_factory=list)
    last_losses: dict[str, float] = field(default_factory=dict)
    skipped_images: int = 0
    recipe: Optional[Recipe] = None


def _open_run(recipe_cls: type[Recipe], options: TrainOptions, given: set[str]
              ) -> tuple[TrainOptions, Optional[dict[str, Any]]]:
    """The options of the run and its checkpoint (None for a fresh run): --resume and a phase
    restart continue the stored recipe; a fresh run must not overwrite one by accident."""
    restart = options.restart_phase
    if restart and restart not in recipe_cls.phase_options:
        can = ", ".join(recipe_cls.phase_options) or "none"
        raise StyleTransferError(BAD_REQUEST, f"train {options.engine} cannot restart a phase "
                                              f"named {restart!r} (restartable: {can}).")
    path = options.checkpoint_path
    if options.resume or restart:
        if path.is_file():
            checkpoint = load_checkpoint(path)
            if checkpoint["engine"] != options.engine:
                raise StyleTransferError(
                    BAD_REQUEST, f"Run {options.name!r} is a {checkpoint['engine']} run, not "
                                 f"{options.engine}.")
            return merge_resumed(checkpoint["options"], options, given,
                                 recipe_cls.phase_options.get(restart, ())), checkpoint
        if options.resume:
            raise StyleTransferError(
                BAD_REQUEST, f"There is no checkpoint to resume at {path}; start without "
                             "--resume.")
    elif path.exists() and not options.overwrite:
        raise StyleTransferError(
            BAD_REQUEST, f"A run named {options.name!r} already exists in {options.run_dir}; "
                         "continue it with --resume, or pass --overwrite to start again.")
    return options, None


def _restart_step(phases: list[Phase], name: str, step: int, run: str) -> Phase:
    """The phase to restart; the run must have trained every phase before it."""
    index = next(i for i, phase in enumerate(phases) if phase.name == name)
    phase = phases[index]
    if step < phase.start:
        before = phases[index - 1].name if index else "previous"
        raise StyleTransferError(
            BAD_REQUEST, f"Restarting the {name} phase needs a run whose {before} phase is done "
                         f"(step {phase.start}); run {run!r} is at step {step}.")
    return phase


def _loader(dataset: RunDataset, options: TrainOptions, accel: Accelerator, step: int,
            total: int, phases: list[Phase]) -> torch.utils.data.DataLoader:
    """Batches for steps [step, total): stacked items, or whole batches of a StepDataset."""
    workers = options.workers if options.workers >= 0 else (
        min(4, os.cpu_count() or 1) if accel.device.type == "cuda" else 0)
    if isinstance(dataset, StepDataset):
        order: dict[str, Any] = {"batch_size": None, "sampler": StepSampler(
            step, total, lambda k: phase_at(phases, k).name)}
    else:
        order = {"batch_sampler": RunSampler(step, total, options.batch)}
    return torch.utils.data.DataLoader(
        dataset, num_workers=workers, pin_memory=accel.device.type == "cuda",
        worker_init_fn=_ignore_sigint if workers else None,
        generator=torch.Generator().manual_seed(options.seed), **order)


def _start_note(label: str, total: int, accel: Accelerator, options: TrainOptions,
                dataset: RunDataset, phases: list[Phase], run_dir: Path) -> str:
    amp = f" with {str(accel.amp_dtype).replace('torch.', '')}" if accel.amp_dtype else ""
    parts = [f"{phase.stop - phase.start} {phase.name}" for phase in phases
             if phase.stop > phase.start]
    split = f" ({', then '.join(parts)})" if len(parts) > 1 else ""
    return (f"{label}: {total} steps{split} on {accel.device}{amp}, batch {options.batch}, "
            f"{dataset.epoch_length} images per epoch; run folder {run_dir}")


def run_training(recipe_cls: type[Recipe], options: TrainOptions, given: set[str] | None = None,
                 stream: TextIO = sys.stderr, warn: WarnFn = warn_to_stderr,
                 stop_after: Optional[int] = None,
                 should_stop: Callable[[], bool] = lambda: False) -> TrainResult:
    """Train (or resume, or restart a phase of) one run and register its model; errors before
    any step are clear.

    `stop_after`: stop as if interrupted once this step is reached (tests of resume);
    `should_stop`: polled after every step, e.g. by a daemon job's cancel flag.
    """
    given = set() if given is None else given
    options.validate()
    options, checkpoint = _open_run(recipe_cls, options, given)

    dataset = recipe_cls.dataset(options, warn)          # bad data fails here, before training
    total = total_steps(options, dataset)
    phases = recipe_cls.phases(options, total)
    accel = select_accelerator(options)
    if accel.device.type == "cpu" and options.threads > 0:
        torch.set_num_threads(options.threads)         # the user's explicit --threads
    seed_everything(options.seed)
    recipe = recipe_cls(options, accel, total)
    if checkpoint is None:
        register.check_names_free(options, recipe.export_stems())
    step = 0
    restart = options.restart_phase
    if checkpoint is not None:
        fresh = next((p.trains for p in phases if p.name == restart), frozenset())
        recipe.load_state_dict(checkpoint["recipe"], fresh=fresh)
        restore_rng(checkpoint["rng"])
        step = int(checkpoint["step"])
    again = "the same command and --resume"
    if restart:
        phase = _restart_step(phases, restart, step, options.name)
        recipe.restart_phase(phase)
        step = phase.start
        options.restart_phase = ""         # done: a later --resume continues this restart
        again = f"--resume, without restarting the {restart} phase again"
    run_dir = options.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / "options.json",
                 lambda tmp: tmp.write_text(json.dumps(options.to_dict(), indent=1)))

    examples = (accel.batch(fixed_examples(dataset, recipe.sample_count))
                if options.sample_every else {})
    loader = _loader(dataset, options, accel, step, total, phases)
    label = f"{options.engine} {options.name}"
    progress = Progress(label, step, total, stream, options.quiet)
    result = TrainResult(step, total, False, run_dir, recipe=recipe,
                         skipped_images=getattr(dataset, "skipped", 0))
    if step < total and not options.quiet:
        progress.note(_start_note(label, total, accel, options, dataset, phases, run_dir))
    boundaries = {phase.stop for phase in phases[:-1] if 0 < phase.stop < total}

    def save_samples(name: str) -> None:
        save_grid(run_dir / "samples" / name, recipe.sample_rows(examples), recipe.signed,
                  margin=recipe.grid_margin)

    saved_at = step if checkpoint is not None else -1
    sampled_at = -1
    with StopRequest() as stop:
        for batch in loader:
            if len(phases) > 1:
                progress.set_phase(phase_at(phases, step).name)
            losses = recipe.train_step(accel.batch(batch), step)
            step += 1
            progress.update(step, losses)
            if options.sample_every and (step % options.sample_every == 0 or step in boundaries):
                save_samples(f"step_{step:07d}.png")
                sampled_at = step
            if options.checkpoint_every and (step % options.checkpoint_every == 0
                                             or step in boundaries):
                save_checkpoint(options.checkpoint_path, options, step, total, recipe)
                saved_at = step
            interrupted = stop.requested or should_stop() or (
                stop_after is not None and step >= stop_after)
            if interrupted and step < total:
                if saved_at != step:
                    save_checkpoint(options.checkpoint_path, options, step, total, recipe)
                progress.close()
                progress.note(f"Stopped at step {step}/{total}; checkpoint saved to "
                              f"{options.checkpoint_path}. Continue with {again}.")
                result.step, result.stopped = step, True
                result.last_losses = progress.last_losses
                return result
    progress.close()
    if saved_at != step:
        save_checkpoint(options.checkpoint_path, options, step, total, recipe)
    if options.sample_every and examples and (recipe.final_grid or sampled_at != step):
        save_samples(recipe.final_grid or f"step_{step:07d}.png")
    result.step = step
    result.last_losses = progress.last_losses
    result.registered = register.register_exports(recipe.exports(), options, run_dir)
    for path in result.registered:
        progress.note(f"Registered {path.stem} in {path.parent}: it is now in the model list "
                      "(python -m backend models, and GIMP's dialogs).")
    return result
