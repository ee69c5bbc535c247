"""The MIXGAN training loop behind `python -m backend train mixgan` (see training/mixgan.py for
the schedule and the command line): networks, optimizers, steps, checkpoints and sample sheets."""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from backend.data.domains import Domain, load_domain, to_uint8
from backend.networks.mixgan import (LatentDiscriminator, MixGAN, MixganConfig,
                                     PatchDiscriminator, save_model)
from backend.training.mixgan import TrainOptions

RECONSTRUCTION_WEIGHT = 10.0


@dataclass
class Losses:
    """Running means of the losses, for the progress line and the log."""

    values: dict[str, float] = field(default_factory=dict)

    def add(self, **named: float) -> None:
        for key, value in named.items():
            old = self.values.get(key)
            self.values[key] = value if old is None else 0.95 * old + 0.05 * value

    def text(self) -> str:
        return " ".join(f"{k} {v:.3f}" for k, v in self.values.items())


class Trainer:
    """Holds the networks, optimizers and data of one run; `step(k)` does training step k."""

    def __init__(self, options: TrainOptions, content: Domain, style: Domain) -> None:
        self.options = options
        self.device = resolve_device(options.device)
        self.config = options.config()
        torch.manual_seed(options.seed)
        self.model = MixGAN(self.config).to(self.device)
        self.latent_d = LatentDiscriminator(self.config).to(self.device)
        self.patch_d = PatchDiscriminator(width=max(16, 2 * options.width)).to(self.device)
        betas = (0.5, 0.999)
        autoencoder = list(self.model.encoder.parameters()) + \
            list(self.model.content_decoder.parameters())
        self.opt_ae = torch.optim.Adam(autoencoder, options.lr, betas=betas)
        self.opt_dz = torch.optim.Adam(self.latent_d.parameters(), options.lr, betas=betas)
        self.opt_gm = torch.optim.Adam(self.model.mixture_decoder.parameters(), options.lr,
                                       betas=betas)
        self.opt_dp = torch.optim.Adam(self.patch_d.parameters(), options.lr, betas=betas)
        self.content = content
        self.style = style
        self.losses = Losses()
        self.step_done = 0
        self.gm_ema = self._fresh_ema() if options.ema else None

    # -- one step of each phase --------------------------------------------------------------

    def _rng(self, step: int) -> tuple[np.random.Generator, torch.Generator]:
        generator = torch.Generator().manual_seed(self.options.seed * 1_000_003 + step)
        return np.random.default_rng([self.options.seed, step]), generator

    def autoencoder_step(self, step: int) -> dict[str, float]:
        rng, generator = self._rng(step)
        x = self.content.batch(self.options.batch, rng).to(self.device)
        z_fake = self.model.encoder(x)
        z_real = torch.randn(z_fake.shape, generator=generator).to(self.device)

        self.opt_dz.zero_grad(set_to_none=True)
        d_loss = 0.5 * (lsgan(self.latent_d(z_real), True) +
                        lsgan(self.latent_d(z_fake.detach()), False))
        d_loss.backward()
        self.opt_dz.step()

        self.opt_ae.zero_grad(set_to_none=True)
        reconstruction, _ = self.model.content_decoder(z_fake)
        rec_loss = F.l1_loss(reconstruction, x)
        adv_loss = lsgan(self.latent_d(z_fake), True)
        (adv_loss + RECONSTRUCTION_WEIGHT * rec_loss).backward()
        self.opt_ae.step()
        return {"rec": rec_loss.item(), "adv_z": adv_loss.item(), "d_z": d_loss.item()}

    def mixture_step(self, step: int) -> dict[str, float]:
        rng, generator = self._rng(step)
        half = max(1, self.options.batch // 2)
        x = self.content.batch(half, rng).to(self.device)
        style = self.style.batch(self.options.batch, rng).to(self.device)
        with torch.no_grad():
            z = self.model.encoder(x)
            z_prior = torch.randn(z.shape, generator=generator).to(self.device)
            grey, features = self.model.content_decoder(torch.cat([z, z_prior]))
        mixture = self.model.mixture_decoder(features, grey)

        self.opt_dp.zero_grad(set_to_none=True)
        d_loss = 0.5 * (lsgan(self.patch_d(style), True) +
                        lsgan(self.patch_d(mixture.detach()), False))
        d_loss.backward()
        self.opt_dp.step()

        self.opt_gm.zero_grad(set_to_none=True)
        g_loss = lsgan(self.patch_d(mixture), True)
        values = {"g_p": g_loss.item(), "d_p": d_loss.item()}
        if self.options.content_weight:
            structure = (1.0 - structure_correlation(mixture, grey).abs()).mean()
            g_loss = g_loss + self.options.content_weight * structure
            values["struct"] = structure.item()
        g_loss.backward()
        self.opt_gm.step()
        if self.gm_ema is not None:
            self._update_ema(step - self.options.ae_steps)
        return values

    # -- moving average of the mixture decoder -------------------------------------------------

    def _fresh_ema(self) -> torch.nn.Module:
        ema = copy.deepcopy(self.model.mixture_decoder).eval()
        for parameter in ema.parameters():
            parameter.requires_grad_(False)
        return ema

    def _update_ema(self, mix_step: int) -> None:
        """Exponential moving average of Gm's weights (decay --ema, warmed up over the first
        mixture steps so Gm's random start fades fast): GAN generators oscillate, and the
        average is steadier than any single step (as in Karras et al.'s generators)."""
        decay = min(self.options.ema, (1.0 + mix_step) / (10.0 + mix_step))
        with torch.no_grad():
            for ema, live in zip(self.gm_ema.parameters(),
                                 self.model.mixture_decoder.parameters()):
                ema.lerp_(live, 1.0 - decay)
            for ema, live in zip(self.gm_ema.buffers(), self.model.mixture_decoder.buffers()):
                ema.copy_(live)

    def generator(self) -> MixGAN:
        """The generator to sample and register: Gm replaced by its moving average when on."""
        if self.gm_ema is None:
            return self.model
        model = copy.deepcopy(self.model)
        model.mixture_decoder.load_state_dict(self.gm_ema.state_dict())
        return model

    def step(self, step: int) -> dict[str, float]:
        """Training step `step` (0-based) of the whole schedule."""
        self.model.train()
        phase = self.autoencoder_step if step < self.options.ae_steps else self.mixture_step
        values = phase(step)
        self.losses.add(**values)
        self.step_done = step + 1
        return values

    def reset_mixture(self) -> None:
        """Fresh Gm, Dp and their optimizers; the schedule continues at the mixture phase."""
        torch.manual_seed(self.options.seed + 1)
        fresh = MixGAN(self.config).mixture_decoder.to(self.device)
        self.model.mixture_decoder.load_state_dict(fresh.state_dict())
        self.patch_d = PatchDiscriminator(width=max(16, 2 * self.options.width)).to(self.device)
        betas = (0.5, 0.999)
        self.opt_gm = torch.optim.Adam(self.model.mixture_decoder.parameters(), self.options.lr,
                                       betas=betas)
        self.opt_dp = torch.optim.Adam(self.patch_d.parameters(), self.options.lr, betas=betas)
        self.step_done = self.options.ae_steps
        self.gm_ema = self._fresh_ema() if self.options.ema else None

    # -- checkpoints --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "meta": {**self.config.to_meta(), "step": self.step_done,
                     "options": json.dumps(asdict(self.options))},
            "model": self.model.state_dict(), "latent_d": self.latent_d.state_dict(),
            "patch_d": self.patch_d.state_dict(), "opt_ae": self.opt_ae.state_dict(),
            "opt_dz": self.opt_dz.state_dict(), "opt_gm": self.opt_gm.state_dict(),
            "opt_dp": self.opt_dp.state_dict(),
            **({"gm_ema": self.gm_ema.state_dict()} if self.gm_ema is not None else {}),
        }

    def save_checkpoint(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state(), tmp)
        tmp.replace(path)

    def load_checkpoint(self, path: Path) -> None:
        data = torch.load(path, map_location=self.device, weights_only=True)
        saved = MixganConfig.from_meta(data["meta"])
        if saved != self.config:
            raise ValueError(f"checkpoint {path} is for {saved}, not {self.config}; use another "
                             "--out folder or the same architecture options")
        self.model.load_state_dict(data["model"])
        self.latent_d.load_state_dict(data["latent_d"])
        self.patch_d.load_state_dict(data["patch_d"])
        for key in ("opt_ae", "opt_dz", "opt_gm", "opt_dp"):
            getattr(self, key).load_state_dict(data[key])
        self.step_done = int(data["meta"]["step"])
        if self.gm_ema is not None:        # a run without an average so far starts it from Gm
            self.gm_ema.load_state_dict(data.get("gm_ema", self.model.mixture_decoder.state_dict()))

    # -- sample sheets ------------------------------------------------------------------------

    def sample_sheet(self, path: Path, count: int = 8) -> None:
        """Rows: content inputs, their reconstructions, their mixtures, prior samples' content,
        prior samples' mixtures. Fixed inputs, so sheets of successive steps compare."""
        self.model.eval()
        model = self.generator()
        rng, generator = np.random.default_rng([self.options.seed, 10**9]), \
            torch.Generator().manual_seed(self.options.seed + 12345)
        with torch.no_grad():
            x = self.content.batch(count, rng).to(self.device)
            reconstruction, mixture = model(x)
            z = torch.randn((count, *self.config.latent_shape()), generator=generator)
            prior_grey, prior_mix = model.decode(z.to(self.device))
        rows = [x, reconstruction, mixture, prior_grey, prior_mix]
        write_sheet(path, [r.expand(-1, 3, -1, -1) for r in rows])
        self.model.train()


LUMA = (0.299, 0.587, 0.114)


def structure_correlation(mixture: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Per image: Pearson correlation of the mixture's luminance with the grey content image.

    Its absolute value is high when the shape is drawn in the mixture in any two colours of
    different brightness (either polarity); it says nothing about which colours."""
    weights = torch.tensor(LUMA, device=mixture.device).view(1, 3, 1, 1)
    luma = (mixture * weights).sum(1).flatten(1)
    grey = content.flatten(1)
    luma = luma - luma.mean(1, keepdim=True)
    grey = grey - grey.mean(1, keepdim=True)
    return (luma * grey).sum(1) / (luma.norm(dim=1) * grey.norm(dim=1) + 1e-6)


def lsgan(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    return F.mse_loss(prediction, torch.full_like(prediction, 1.0 if real else 0.0))


def write_sheet(path: Path, rows: list[torch.Tensor], pad: int = 2) -> Path:
    """Write rows of N x 3 x H x W images in [-1, 1] as one PNG grid (atomically)."""
    images = [to_uint8(row) for row in rows]
    n, h, w = max(len(r) for r in images), images[0].shape[1], images[0].shape[2]
    sheet = np.full((len(images) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(images):
        for j, image in enumerate(row):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            sheet[top:top + h, left:left + w] = image
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    Image.fromarray(sheet).save(tmp)
    tmp.replace(path)
    return path


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class ProgressBar:
    """One self-overwriting line on a terminal, plain lines (every `every` steps) in a log."""

    def __init__(self, total: int, start: int = 0, stream=sys.stderr, width: int = 28) -> None:
        self.total, self.start, self.stream, self.width = total, start, stream, width
        self.began = time.monotonic()
        self.tty = stream.isatty()
        self.last_line = 0.0

    def update(self, done: int, text: str) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last_line < 10.0 and done < self.total:
            return
        self.last_line = now
        rate = (done - self.start) / max(now - self.began, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else math.inf
        filled = int(self.width * done / max(self.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        line = (f"[{bar}] {done}/{self.total} {rate:.2f} it/s "
                f"eta {_duration(eta)} | {text}")
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def default_models_dir() -> Path:
    from backend.modelstore.manifest import default_models_dir as store_models_dir
    return store_models_dir()


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def register_model(model: MixGAN, models_dir: Path, name: str, display_name: str,
                   extra: dict[str, Any] | None = None) -> Path:
    """Write NAME.pth and its NAME.json sidecar (engine, display_name, arch) into the models dir."""
    path = save_model(model, models_dir / f"{name}.pth")
    sidecar = {"engine": "mixgan", "display_name": display_name or f"{name} (MIXGAN)",
               "arch": model.config.arch, **(extra or {})}
    tmp = models_dir / f"{name}.json.tmp"
    tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
    tmp.replace(models_dir / f"{name}.json")
    return path


def run_training(options: TrainOptions, log: Callable[[str], None] | None = None,
          should_stop: Callable[[], bool] = lambda: False) -> Path:
    """Run (or resume) the whole schedule; return the path of the registered model."""
    log = log or _log
    if not options.name or not all(c.isalnum() or c in "-_" for c in options.name):
        raise ValueError("--name must be letters, digits, '-' or '_'")
    options.config()  # validates arch/size before the slow data generation
    out = Path(options.out or Path("runs") / "mixgan" / options.name)
    checkpoint = out / "checkpoint.pth"
    log(f"loading content domain {options.content} and style domain {options.style} ...")
    content = load_domain(options.content, options.size, True, options.pool, options.seed)
    style = load_domain(options.style, options.size, False, options.pool, options.seed + 1)
    trainer = Trainer(options, content, style)
    if options.resume and checkpoint.exists():
        trainer.load_checkpoint(checkpoint)
        log(f"resumed from {checkpoint} at step {trainer.step_done}")
    if options.restart_mixture:
        if trainer.step_done < options.ae_steps:
            raise ValueError(f"--restart-mixture needs a run whose autoencoder phase is done "
                             f"(step {options.ae_steps}); this one is at step {trainer.step_done}")
        trainer.reset_mixture()
        log(f"mixture decoder reset: training it again from step {options.ae_steps}")
    parameters = sum(p.numel() for p in trainer.model.parameters())
    log(f"MIXGAN {trainer.config} | generator parameters {parameters:,} | device "
        f"{trainer.device} | autoencoder steps {options.ae_steps}, mixture steps "
        f"{options.mix_steps}")
    bar = ProgressBar(options.steps, trainer.step_done)
    try:
        for step in range(trainer.step_done, options.steps):
            if should_stop():
                raise KeyboardInterrupt
            trainer.step(step)
            done = step + 1
            phase = "ae" if step < options.ae_steps else "mix"
            bar.update(done, f"{phase} {trainer.losses.text()}")
            last_ae = done == options.ae_steps
            if done % options.sample_every == 0 or done == options.steps or last_ae:
                trainer.sample_sheet(out / "samples" / f"step_{done:07d}.png")
            if done % options.checkpoint_every == 0 or last_ae:
                trainer.save_checkpoint(checkpoint)
    except KeyboardInterrupt:
        trainer.save_checkpoint(checkpoint)
        bar.close()
        log(f"stopped at step {trainer.step_done}; checkpoint {checkpoint} (run again to resume)")
        raise
    bar.close()
    trainer.save_checkpoint(checkpoint)
    models_dir = Path(options.models_dir) if options.models_dir else default_models_dir()
    path = register_model(trainer.generator().cpu(), models_dir, options.name,
                          options.display_name,
                          {"trained_steps": options.steps, "content": options.content,
                           "style": options.style})
    log(f"model registered: {path}")
    return path


