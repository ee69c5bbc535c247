"""CycleGAN's published recipe (Zhu et al. 2017, the reference implementation's defaults).

G_A: A -> B and G_B: B -> A (ResNet generators, instance norm, no dropout); D_A judges B-domain
images, D_B A-domain ones (70x70 PatchGAN, instance norm). Losses: LSGAN, cycle L1 x lambda
(10) both ways, identity L1 x 0.5 lambda; the discriminators see fakes through 50-image pools and
their loss is halved. Adam 2e-4, betas (0.5, 0.999), constant then linearly decaying rate,
N(0, 0.02) initialisation.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from backend.networks.cyclegan import NGF, ResnetGenerator
from stclient.errors import BAD_REQUEST, StyleTransferError

from .common import Accelerator, Recipe, linear_decay
from .export import Export
from .data import Augment, UnpairedDataset, WarnFn, require_images, scan_folder
from .discriminators import GANLoss, PatchDiscriminator, init_normal, set_requires_grad
from .options import TrainOptions
from .pool import ImagePool

ARCHS = {"resnet_9blocks": 9, "resnet_6blocks": 6}
NONSTANDARD_WIDTH = "the runtime loads only the published width (--ngf 64)"


def reverse_name(options: TrainOptions) -> str:
    return str(options.extra.get("reverse_name") or f"{options.name}_BtoA")


class CycleGANRecipe(Recipe):
    engine = "cyclegan"

    @classmethod
    def dataset(cls, options: TrainOptions, warn: WarnFn) -> UnpairedDataset:
        if options.arch not in ARCHS:
            raise StyleTransferError(BAD_REQUEST, f"--arch must be one of {', '.join(ARCHS)}, "
                                                  f"not {options.arch!r}.")
        domain_a = scan_folder(options.domain_a, "domain A", warn)
        domain_b = scan_folder(options.domain_b, "domain B", warn)
        require_images(domain_a, "domain A", options.batch)
        require_images(domain_b, "domain B", options.batch)
        dataset = UnpairedDataset(domain_a.files, domain_b.files,
                                  Augment(options.size, options.load_size, options.flip),
                                  options.seed)
        dataset.skipped = len(domain_a.skipped) + len(domain_b.skipped)
        return dataset

    def __init__(self, options: TrainOptions, accel: Accelerator, total_steps: int) -> None:
        super().__init__(options, accel, total_steps)
        blocks = ARCHS[options.arch]
        nets: dict[str, nn.Module] = {
            "G_A": ResnetGenerator(blocks, dropout=False, ngf=options.ngf),
            "G_B": ResnetGenerator(blocks, dropout=False, ngf=options.ngf),
            "D_A": PatchDiscriminator(3, options.ndf, options.n_layers_d, "instance"),
            "D_B": PatchDiscriminator(3, options.ndf, options.n_layers_d, "instance"),
        }
        for net in nets.values():
            init_normal(net)
        self.networks = {k: accel.module(v).train() for k, v in nets.items()}
        self.G_A, self.G_B = self.networks["G_A"], self.networks["G_B"]
        self.D_A, self.D_B = self.networks["D_A"], self.networks["D_B"]
        betas = (options.beta1, options.beta2)
        self.optimizers = {
            "G": torch.optim.Adam(itertools.chain(self.G_A.parameters(), self.G_B.parameters()),
                                  lr=options.lr, betas=betas),
            "D": torch.optim.Adam(itertools.chain(self.D_A.parameters(), self.D_B.parameters()),
                                  lr=options.lr, betas=betas),
        }
        rule = linear_decay(total_steps, options.decay_fraction)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(v, rule)
                           for k, v in self.optimizers.items()}
        self.pool_A = ImagePool(options.pool_size, seed=options.seed * 2 + 1)  # fakes of A
        self.pool_B = ImagePool(options.pool_size, seed=options.seed * 2 + 2)  # fakes of B
        self.gan = GANLoss("lsgan")
        self.l1 = nn.L1Loss()

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        o = self.options
        real_a, real_b = batch["A"], batch["B"]
        lam_a = lam_b = o.lambda_cycle
        # generators (discriminators frozen: their gradients are not needed here)
        set_requires_grad([self.D_A, self.D_B], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.accel.autocast():
            fake_b = self.G_A(real_a)
            rec_a = self.G_B(fake_b)
            fake_a = self.G_B(real_b)
            rec_b = self.G_A(fake_a)
            losses = {}
            if o.lambda_identity > 0:
                losses["idt_A"] = self.l1(self.G_A(real_b).float(), real_b) * lam_b * o.lambda_identity
                losses["idt_B"] = self.l1(self.G_B(real_a).float(), real_a) * lam_a * o.lambda_identity
            losses["G_A"] = self.gan(self.D_A(fake_b), True)
            losses["G_B"] = self.gan(self.D_B(fake_a), True)
            losses["cyc_A"] = self.l1(rec_a.float(), real_a) * lam_a
            losses["cyc_B"] = self.l1(rec_b.float(), real_b) * lam_b
            loss_g = sum(losses.values())
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.optimizers["G"])
        # discriminators: real vs. a pool of earlier fakes, loss halved
        set_requires_grad([self.D_A, self.D_B], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.accel.autocast():
            pooled_b = self.pool_B.query(fake_b.detach())
            pooled_a = self.pool_A.query(fake_a.detach())
            losses["D_A"] = 0.5 * (self.gan(self.D_A(real_b), True)
                                   + self.gan(self.D_A(pooled_b), False))
            losses["D_B"] = 0.5 * (self.gan(self.D_B(real_a), True)
                                   + self.gan(self.D_B(pooled_a), False))
        self.scaler.scale(losses["D_A"] + losses["D_B"]).backward()
        self.scaler.step(self.optimizers["D"])
        self.scaler.update()
        for scheduler in self.schedulers.values():
            scheduler.step()
        return {k: v.detach() for k, v in losses.items()}

    def sample_rows(self, examples: dict[str, torch.Tensor]) -> list[list[torch.Tensor]]:
        """Per example: real A, G_A(A), G_B(G_A(A)), real B, G_B(B), G_A(G_B(B))."""
        rows = []
        with self.sampling(self.G_A), self.sampling(self.G_B), self.accel.autocast():
            for i in range(examples["A"].shape[0]):
                a, b = examples["A"][i:i + 1], examples["B"][i:i + 1]
                fake_b, fake_a = self.G_A(a), self.G_B(b)
                rows.append([a[0], fake_b[0], self.G_B(fake_b)[0],
                             b[0], fake_a[0], self.G_A(fake_a)[0]])
        return rows

    def export_stems(self) -> list[str]:
        return [self.options.name, reverse_name(self.options)]

    def exports(self) -> list[Export]:
        o = self.options
        standard = o.ngf == NGF
        title = o.display_name or o.name.replace("_", " ")
        folders = f"{o.domain_a} -> {o.domain_b}"
        common = dict(engine="cyclegan", arch=o.arch, registrable=standard,
                      unregistered_reason="" if standard else NONSTANDARD_WIDTH)
        return [
            Export(stem=o.name, display_name=f"{title} (A\u2192B, trained)",
                   description=f"CycleGAN A->B trained on {folders}",
                   state_dict=self.G_A.state_dict(), run_file="latest_net_G_A.pth", **common),
            Export(stem=reverse_name(o), display_name=f"{title} (B\u2192A, trained)",
                   description=f"CycleGAN B->A trained on {folders}",
                   state_dict=self.G_B.state_dict(), run_file="latest_net_G_B.pth", **common),
            Export(stem=f"{o.name}_D_A", engine="cyclegan", arch="patchgan",
                   display_name="", description="", state_dict=self.D_A.state_dict(),
                   run_file="latest_net_D_A.pth", registrable=False),
            Export(stem=f"{o.name}_D_B", engine="cyclegan", arch="patchgan",
                   display_name="", description="", state_dict=self.D_B.state_dict(),
                   run_file="latest_net_D_B.pth", registrable=False),
        ]

    def extra_state(self) -> dict:
        return {"pool_A": self.pool_A.state_dict(), "pool_B": self.pool_B.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.pool_A.load_state_dict(state["pool_A"], self.accel.device)
        self.pool_B.load_state_dict(state["pool_B"], self.accel.device)
