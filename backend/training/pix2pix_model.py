"""pix2pix's published recipe (Isola et al. 2017, the reference implementation's defaults).

U-Net generator (unet_256, batch norm, dropout 0.5 in the innermost 512-channel blocks); a
conditional 70x70 PatchGAN (batch norm) that sees input and output concatenated. Losses: GAN
with BCE-with-logits (discriminator loss halved) + L1 x 100 to the target. Adam 2e-4, betas
(0.5, 0.999), constant then linearly decaying rate, N(0, 0.02) initialisation. Each step updates
the discriminator first, then the generator, as the reference.
"""

from __future__ import annotations

import torch
from torch import nn

from backend.networks.pix2pix import NGF, UNET_DOWNS, StatsBatchNorm2d, UnetGenerator
from stclient.errors import BAD_REQUEST, StyleTransferError

from .common import Accelerator, Recipe, linear_decay
from .export import Export
from .data import (Augment, PairedDataset, WarnFn, pairs_from_aligned, pairs_from_folders)
from .discriminators import GANLoss, PatchDiscriminator, init_normal, set_requires_grad
from .options import TrainOptions

NONSTANDARD_WIDTH = "the runtime loads only the published width (--ngf 64)"


def trainable_batchnorm(generator: nn.Module) -> nn.Module:
    """Swap the inference-only StatsBatchNorm2d layers for plain BatchNorm2d, which keeps running
    statistics while training (the released files carry them). Keys are unchanged, plus
    num_batches_tracked, exactly as reference-trained files."""
    for parent in list(generator.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, StatsBatchNorm2d):
                plain = nn.BatchNorm2d(child.num_features, eps=child.eps)
                plain.load_state_dict(
                    {k: v for k, v in child.state_dict().items() if k != "num_batches_tracked"},
                    strict=False)
                setattr(parent, name, plain)
    return generator


class Pix2PixRecipe(Recipe):
    engine = "pix2pix"

    @classmethod
    def dataset(cls, options: TrainOptions, warn: WarnFn) -> PairedDataset:
        if options.arch not in UNET_DOWNS:
            raise StyleTransferError(BAD_REQUEST, f"--arch must be one of "
                                                  f"{', '.join(UNET_DOWNS)}, not {options.arch!r}.")
        multiple = 2 ** UNET_DOWNS[options.arch]
        if options.size % multiple:
            raise StyleTransferError(
                BAD_REQUEST, f"{options.arch} needs --size to be a multiple of {multiple}, not "
                             f"{options.size}" + (" (use --arch unet_128 for 128 px crops)"
                                                  if options.size % 128 == 0 else "") + ".")
        given = [bool(options.pairs), bool(options.input_dir or options.target_dir)]
        if given == [True, True] or given == [False, False]:
            raise StyleTransferError(
                BAD_REQUEST, "Give either --pairs DIR (A|B side by side) or both --input-dir and "
                             "--target-dir (same file names).")
        if options.pairs:
            pairs, skipped = pairs_from_aligned(options.pairs, warn)
            where = f"The pairs folder {options.pairs}"
        else:
            if not (options.input_dir and options.target_dir):
                raise StyleTransferError(BAD_REQUEST, "--input-dir and --target-dir go together.")
            pairs, skipped = pairs_from_folders(options.input_dir, options.target_dir, warn)
            where = f"The folders {options.input_dir} and {options.target_dir}"
        if len(pairs) < max(1, options.batch):
            raise StyleTransferError(
                BAD_REQUEST, f"{where} give only {len(pairs)} usable pair(s)"
                             + (f" ({skipped} skipped as unreadable)" if skipped else "")
                             + f"; at least {max(1, options.batch)} are needed.")
        dataset = PairedDataset(pairs, Augment(options.size, options.load_size, options.flip),
                                options.seed, options.direction)
        dataset.skipped = skipped
        return dataset

    def __init__(self, options: TrainOptions, accel: Accelerator, total_steps: int) -> None:
        super().__init__(options, accel, total_steps)
        generator = trainable_batchnorm(
            UnetGenerator(options.arch, dropout=options.dropout, ngf=options.ngf))
        discriminator = PatchDiscriminator(6, options.ndf, options.n_layers_d, "batch")
        init_normal(generator)
        init_normal(discriminator)
        self.networks = {"G": accel.module(generator).train(),
                         "D": accel.module(discriminator).train()}
        self.G, self.D = self.networks["G"], self.networks["D"]
        betas = (options.beta1, options.beta2)
        self.optimizers = {k: torch.optim.Adam(v.parameters(), lr=options.lr, betas=betas)
                           for k, v in self.networks.items()}
        rule = linear_decay(total_steps, options.decay_fraction)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(v, rule)
                           for k, v in self.optimizers.items()}
        self.gan = GANLoss("vanilla")
        self.l1 = nn.L1Loss()

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        real_a, real_b = batch["A"], batch["B"]
        with self.accel.autocast():
            fake_b = self.G(real_a)
        # discriminator: (input, target) is real, (input, output) is fake
        set_requires_grad([self.D], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.accel.autocast():
            loss_d_fake = self.gan(self.D(torch.cat([real_a, fake_b.detach()], 1)), False)
            loss_d_real = self.gan(self.D(torch.cat([real_a, real_b], 1)), True)
            loss_d = 0.5 * (loss_d_fake + loss_d_real)
        self.scaler.scale(loss_d).backward()
        self.scaler.step(self.optimizers["D"])
        # generator: fool D and stay close to the target
        set_requires_grad([self.D], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.accel.autocast():
            loss_gan = self.gan(self.D(torch.cat([real_a, fake_b], 1)), True)
            loss_l1 = self.l1(fake_b.float(), real_b) * self.options.lambda_l1
            loss_g = loss_gan + loss_l1
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.optimizers["G"])
        self.scaler.update()
        for scheduler in self.schedulers.values():
            scheduler.step()
        return {"G_GAN": loss_gan.detach(), "G_L1": loss_l1.detach(),
                "D_real": loss_d_real.detach(), "D_fake": loss_d_fake.detach()}

    def generate(self, inputs: torch.Tensor) -> torch.Tensor:
        """Outputs as the runtime's default makes them: each image's own batch statistics,
        dropout off. Training state is untouched."""
        outputs = []
        with self.sampling(self.G), self.accel.autocast():
            for i in range(inputs.shape[0]):
                outputs.append(self.G(inputs[i:i + 1]).float())
        return torch.cat(outputs, 0)

    def sample_rows(self, examples: dict[str, torch.Tensor]) -> list[list[torch.Tensor]]:
        """Per example: input, output, target."""
        outputs = self.generate(examples["A"])
        return [[examples["A"][i], outputs[i], examples["B"][i]]
                for i in range(outputs.shape[0])]

    def exports(self) -> list[Export]:
        o = self.options
        standard = o.ngf == NGF
        source = o.pairs or f"{o.input_dir} -> {o.target_dir}"
        return [
            Export(stem=o.name, engine="pix2pix", arch=o.arch,
                   display_name=f"{o.display_name or o.name.replace('_', ' ')} (pix2pix, trained)",
                   description=f"pix2pix {o.arch} trained on {source} ({o.direction})",
                   state_dict=self.G.state_dict(), run_file="latest_net_G.pth",
                   registrable=standard,
                   unregistered_reason="" if standard else NONSTANDARD_WIDTH),
            Export(stem=f"{o.name}_D", engine="pix2pix", arch="patchgan", display_name="",
                   description="", state_dict=self.D.state_dict(), run_file="latest_net_D.pth",
                   registrable=False),
        ]
