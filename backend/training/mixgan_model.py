"""MIXGAN's training recipe (Hao, Yu, Zheng 2018; the schedule of the paper's code, with the
content decoder trained too), run by the shared loop like every other recipe.

Two phases:
1. autoencoder: encoder E, content decoder Gc and latent discriminator Dz. E/Gc minimise the
   adversarial loss against Dz (E's codes should look like prior samples) + 10 * L1
   reconstruction; Dz learns prior samples vs codes.
2. mixture: E and Gc frozen; the mixture decoder Gm learns against the patch discriminator Dp
   (receptive field 8 px) on real style images. Half of each batch decodes E(content images)
   ("this content in that style"), half decodes prior samples (new images).
All adversarial losses are least-squares (LSGAN); Adam with beta1 = 0.5. `--mix-fraction` is the
share of the steps in the mixture phase.

Optional, not in the paper (`--content-weight`, default 0): a structure term for Gm,
1 - |correlation| between the mixture's luminance and Gc's content image. Gm then has to draw the
shape with a brightness contrast (in any colours, either polarity). The paper relies on Gm being
shallow instead; on our glyph/texture domains that alone let Gm paint texture blobs over the
background until the glyphs were hard to read (see bench/results/mixgan-starter.md).
`--ema D` registers a moving average of Gm's weights (decay D) instead of the last step's.

Batch k depends only on (seed, k) (MixganData), so a resumed run continues exactly. Resuming a
finished run with a larger --steps extends it: steps before the new phase boundary train E and
Gc further, the rest train Gm. `--restart-mixture` keeps a run's autoencoder and trains Gm and
Dp again from scratch (it may change the mixture phase's options, e.g. another --style). The
generator (E, Gc, Gm) is registered as NAME.pth in MIXGAN's {meta, state_dict} format.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backend.data.domains import Domain, load_domain
from backend.networks.mixgan import (ARCHS, DOWNSCALE, MIN_SIDE, LatentDiscriminator, MixGAN,
                                     MixganConfig, PatchDiscriminator)
from stclient.errors import BAD_REQUEST, StyleTransferError

from .common import Accelerator, Phase, Recipe
from .data import StepDataset, WarnFn
from .export import Export
from .options import TrainOptions

RECONSTRUCTION_WEIGHT = 10.0
AUTOENCODER, MIXTURE = "autoencoder", "mixture"
LUMA = (0.299, 0.587, 0.114)
SHEET_COLUMNS = 8


def mixgan_config(options: TrainOptions) -> MixganConfig:
    """The networks' shape from the options (--arch, --size, --ngf, --latent, --n-res)."""
    if options.arch not in ARCHS:
        raise StyleTransferError(BAD_REQUEST, f"--arch must be one of {', '.join(ARCHS)}, not "
                                              f"{options.arch!r}.")
    if options.size % DOWNSCALE or options.size < MIN_SIDE:
        raise StyleTransferError(BAD_REQUEST, f"--size must be a multiple of {DOWNSCALE} and at "
                                              f"least {MIN_SIDE} for MIXGAN, not {options.size}.")
    latent = options.latent or (2048 if options.arch == "paper" else 64)
    return MixganConfig(arch=options.arch, width=options.ngf, latent=latent,
                        n_res=options.n_res, size=options.size)


def _domain(flag: str, source: str, options: TrainOptions, grey: bool, seed: int) -> Domain:
    try:
        domain = load_domain(source, options.size, grey, options.pool, seed)
    except ValueError as error:
        raise StyleTransferError(BAD_REQUEST, f"{flag}: {error}.") from None
    domain.flip = domain.flip and options.flip
    return domain


class MixganData(StepDataset):
    """Each step's batch from (seed, step): content images (and style images in the mixture
    phase) drawn from the in-memory domains, and the prior samples z the step needs."""

    def __init__(self, content: Domain, style: Domain, options: TrainOptions,
                 latent_shape: tuple[int, ...]) -> None:
        self.content, self.style, self.latent_shape = content, style, latent_shape
        self.seed, self.batch_size = options.seed, options.batch

    @property
    def epoch_length(self) -> int:
        return len(self.content.images)

    def batch(self, step: int, phase: str) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        prior = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        if phase == AUTOENCODER:
            count = self.batch_size
            return {"content": self.content.batch(count, rng),
                    "z": torch.randn((count, *self.latent_shape), generator=prior)}
        half = max(1, self.batch_size // 2)
        content = self.content.batch(half, rng)
        return {"content": content, "style": self.style.batch(self.batch_size, rng),
                "z": torch.randn((half, *self.latent_shape), generator=prior)}

    def examples(self, count: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 10**9])
        prior = torch.Generator().manual_seed(self.seed + 12345)
        return {"content": self.content.batch(count, rng),
                "z": torch.randn((count, *self.latent_shape), generator=prior)}


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
    prediction = prediction.float()
    return F.mse_loss(prediction, torch.full_like(prediction, 1.0 if real else 0.0))


class MixganRecipe(Recipe):
    engine = "mixgan"
    sample_count = SHEET_COLUMNS
    grid_margin = 2
    final_grid = ""                      # sheets are named by step, the last one too
    phase_options = {MIXTURE: frozenset({"style", "mix_fraction", "content_weight", "ema",
                                         "lr"})}

    @classmethod
    def dataset(cls, options: TrainOptions, warn: WarnFn) -> MixganData:
        config = mixgan_config(options)          # bad shapes fail before the slow generation
        content = _domain("--content", options.content, options, True, options.seed)
        style = _domain("--style", options.style, options, False, options.seed + 1)
        return MixganData(content, style, options, config.latent_shape())

    @classmethod
    def phases(cls, options: TrainOptions, total_steps: int) -> list[Phase]:
        boundary = total_steps - int(round(total_steps * options.mix_fraction))
        return [Phase(AUTOENCODER, 0, boundary, frozenset({"E", "Gc", "Dz", "ae", "dz"})),
                Phase(MIXTURE, boundary, total_steps,
                      frozenset({"Gm", "Dp", "Gm_ema", "gm", "dp"}))]

    def __init__(self, options: TrainOptions, accel: Accelerator, total_steps: int) -> None:
        super().__init__(options, accel, total_steps)
        self.config = mixgan_config(options)
        self.ae_steps = self.phases(options, total_steps)[0].stop
        self.model = accel.module(MixGAN(self.config))      # the loop seeded torch already
        self.latent_d = accel.module(LatentDiscriminator(self.config))
        self.patch_d = self._new_patch_discriminator()
        autoencoder = (list(self.model.encoder.parameters())
                       + list(self.model.content_decoder.parameters()))
        self.opt_ae = self._adam(autoencoder)
        self.opt_dz = self._adam(self.latent_d.parameters())
        self._new_mixture_optimizers()
        self.gm_ema = self._fresh_ema() if options.ema else None
        self._collect()

    # -- construction -----------------------------------------------------------------------
    def _adam(self, parameters) -> torch.optim.Adam:
        o = self.options
        return torch.optim.Adam(parameters, o.lr, betas=(o.beta1, o.beta2))

    def _new_patch_discriminator(self) -> nn.Module:
        return self.accel.module(PatchDiscriminator(width=max(16, 2 * self.options.ngf)))

    def _new_mixture_optimizers(self) -> None:
        self.opt_gm = self._adam(self.model.mixture_decoder.parameters())
        self.opt_dp = self._adam(self.patch_d.parameters())

    def _collect(self) -> None:
        """The names the checkpoint and the phases use for the networks and optimizers."""
        self.networks = {"E": self.model.encoder, "Gc": self.model.content_decoder,
                         "Gm": self.model.mixture_decoder, "Dz": self.latent_d,
                         "Dp": self.patch_d}
        if self.gm_ema is not None:
            self.networks["Gm_ema"] = self.gm_ema
        self.optimizers = {"ae": self.opt_ae, "dz": self.opt_dz, "gm": self.opt_gm,
                           "dp": self.opt_dp}

    def restart_phase(self, phase: Phase) -> None:
        """Fresh Gm, Dp and their optimizers (and average); the autoencoder stays trained."""
        if phase.name != MIXTURE:
            return super().restart_phase(phase)
        torch.manual_seed(self.options.seed + 1)
        fresh = MixGAN(self.config).mixture_decoder
        self.model.mixture_decoder.load_state_dict(fresh.state_dict())
        self.patch_d = self._new_patch_discriminator()
        self._new_mixture_optimizers()
        self.gm_ema = self._fresh_ema() if self.options.ema else None
        self._collect()

    # -- one step of each phase -------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        self.model.train()
        if step < self.ae_steps:
            return self._autoencoder_step(batch)
        return self._mixture_step(batch, step - self.ae_steps)

    def _discriminator_step(self, net: nn.Module, optimizer: torch.optim.Optimizer,
                            real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """One LSGAN step of a discriminator: real vs. the (detached) fakes, loss halved."""
        optimizer.zero_grad(set_to_none=True)
        with self.accel.autocast():
            loss = 0.5 * (lsgan(net(real), True) + lsgan(net(fake.detach()), False))
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        return loss

    def _autoencoder_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, z_real = batch["content"], batch["z"]
        with self.accel.autocast():
            z_fake = self.model.encoder(x)
        d_loss = self._discriminator_step(self.latent_d, self.opt_dz, z_real, z_fake)

        self.opt_ae.zero_grad(set_to_none=True)
        with self.accel.autocast():
            reconstruction, _ = self.model.content_decoder(z_fake)
            rec_loss = F.l1_loss(reconstruction.float(), x)
            adv_loss = lsgan(self.latent_d(z_fake), True)
        self.scaler.scale(adv_loss + RECONSTRUCTION_WEIGHT * rec_loss).backward()
        self.scaler.step(self.opt_ae)
        self.scaler.update()
        return {"rec": rec_loss.detach(), "adv_z": adv_loss.detach(), "d_z": d_loss.detach()}

    def _mixture_step(self, batch: dict[str, torch.Tensor], mix_step: int
                      ) -> dict[str, torch.Tensor]:
        x, style, z_prior = batch["content"], batch["style"], batch["z"]
        with self.accel.autocast():
            with torch.no_grad():
                z = self.model.encoder(x)
                grey, features = self.model.content_decoder(torch.cat([z, z_prior]))
            mixture = self.model.mixture_decoder(features, grey)
        d_loss = self._discriminator_step(self.patch_d, self.opt_dp, style, mixture)

        self.opt_gm.zero_grad(set_to_none=True)
        with self.accel.autocast():
            g_loss = lsgan(self.patch_d(mixture), True)
        values = {"g_p": g_loss.detach(), "d_p": d_loss.detach()}
        if self.options.content_weight:
            structure = (1.0 - structure_correlation(mixture.float(), grey.float()).abs()).mean()
            g_loss = g_loss + self.options.content_weight * structure
            values["struct"] = structure.detach()
        self.scaler.scale(g_loss).backward()
        self.scaler.step(self.opt_gm)
        self.scaler.update()
        if self.gm_ema is not None:
            self._update_ema(mix_step)
        return values

    # -- moving average of the mixture decoder ----------------------------------------------
    def _fresh_ema(self) -> nn.Module:
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

    # -- sample sheets and the registered model ---------------------------------------------
    def sample_rows(self, examples: dict[str, torch.Tensor]) -> list[list[torch.Tensor]]:
        """Rows: content inputs, their reconstructions, their mixtures, prior samples' content,
        prior samples' mixtures (fixed inputs, so sheets of successive steps compare)."""
        model = self.generator()
        with self.sampling(model), self.accel.autocast():
            model.eval()
            reconstruction, mixture = model(examples["content"])
            prior_grey, prior_mixture = model.decode(examples["z"])
        model.train()
        rows = [examples["content"], reconstruction, mixture, prior_grey, prior_mixture]
        return [list(row.float().expand(-1, 3, -1, -1)) for row in rows]

    def exports(self) -> list[Export]:
        o = self.options
        return [Export(stem=o.name, engine="mixgan", arch=self.config.arch,
                       display_name=o.display_name or f"{o.name} (MIXGAN)",
                       description=f"MIXGAN trained on content {o.content} and style {o.style}",
                       state_dict=self.generator().state_dict(), run_file="generator.pth",
                       meta=self.config.to_meta(),
                       sidecar_extra={"trained_steps": self.total_steps, "content": o.content,
                                      "style": o.style})]
