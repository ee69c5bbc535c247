"""AdaIN decoder training as published (Huang & Belongie 2017; the official PyTorch port's
defaults).

The encoder is the frozen normalised VGG-19 up to relu4_1 (vgg_normalised layout). For content
c and style s: t = AdaIN(f(c), f(s)), output g = decoder(t). Loss = content_weight *
MSE(f(g), t) at relu4_1 + style_weight * sum over relu1_1..relu4_1 of MSE of the channel means
and of the channel standard deviations of f(g) and f(s). Adam 1e-4 with the rate divided by
(1 + 5e-5 * step), batch 8, images scaled to 512x512 and randomly cropped to 256.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from backend.networks.adain import RELU4_1, STYLE_LAYERS, AdaINDecoder, adain, mean_std
from backend.networks.checkpoints import load_network
from stclient.errors import BAD_REQUEST, StyleTransferError

from .common import Accelerator, Recipe
from .export import Export
from .data import Augment, UnpairedDataset, WarnFn, require_images, scan_folder
from .options import TrainOptions

LEVELS = tuple(STYLE_LAYERS.values())      # relu1_1, relu2_1, relu3_1, relu4_1


def resolve_vgg(options: TrainOptions) -> Path:
    """--vgg, or the installed official encoder (models/adain/vgg_normalised.pth)."""
    if options.vgg:
        path = Path(options.vgg).expanduser()
        if not path.is_file():
            raise StyleTransferError(BAD_REQUEST, f"--vgg {path} does not exist.")
        return path.resolve()
    from backend.modelstore import get_model

    models_dir = Path(options.models_dir) if options.models_dir else None
    return get_model("adain", models_dir=models_dir).paths["vgg"]


def style_loss(output_feats: list[torch.Tensor], style_feats: list[torch.Tensor]
               ) -> torch.Tensor:
    mse = nn.functional.mse_loss
    total = output_feats[0].new_zeros(())
    for out, sty in zip(output_feats, style_feats):
        o_mean, o_std = mean_std(out.float())
        s_mean, s_std = mean_std(sty.float())
        total = total + mse(o_mean, s_mean) + mse(o_std, s_std)
    return total


class AdaINRecipe(Recipe):
    engine = "adain"
    signed = False

    @classmethod
    def dataset(cls, options: TrainOptions, warn: WarnFn) -> UnpairedDataset:
        resolve_vgg(options)                       # a missing encoder fails before the scan
        content = scan_folder(options.content, "content", warn)
        style = scan_folder(options.style, "style", warn)
        require_images(content, "content", options.batch)
        require_images(style, "style", 1)
        if options.size // 8 < 2:
            raise StyleTransferError(BAD_REQUEST, "--size must be at least 16 for AdaIN.")
        dataset = UnpairedDataset(content.files, style.files,
                                  Augment(options.size, options.load_size, options.flip),
                                  options.seed, keys=("content", "style"), signed=False)
        dataset.skipped = len(content.skipped) + len(style.skipped)
        return dataset

    def __init__(self, options: TrainOptions, accel: Accelerator, total_steps: int) -> None:
        super().__init__(options, accel, total_steps)
        self.vgg_path = resolve_vgg(options)
        _, encoder = load_network("adain", "vgg", self.vgg_path)
        encoder = nn.Sequential(*list(encoder.children())[:RELU4_1 + 1])  # nothing past relu4_1
        for parameter in encoder.parameters():
            parameter.requires_grad_(False)
        self.encoder = accel.module(encoder).eval()
        self.decoder = accel.module(AdaINDecoder()).train()
        self.networks = {"decoder": self.decoder}
        self.optimizers = {"decoder": torch.optim.Adam(self.decoder.parameters(), lr=options.lr,
                                                       betas=(options.beta1, options.beta2))}
        decay = options.lr_decay
        self.schedulers = {"decoder": torch.optim.lr_scheduler.LambdaLR(
            self.optimizers["decoder"], lambda step: 1.0 / (1.0 + decay * step))}

    def encode_levels(self, image: torch.Tensor) -> list[torch.Tensor]:
        feats, x = [], image
        for index, layer in enumerate(self.encoder):
            x = layer(x)
            if index in LEVELS:
                feats.append(x)
        return feats

    def stylize(self, content: torch.Tensor, style: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(decoded image, AdaIN target at relu4_1, style features) for a batch of pairs."""
        with torch.no_grad():
            style_feats = self.encode_levels(style)
            content_feat = self.encode_levels(content)[-1]
            target = adain(content_feat.float(), *mean_std(style_feats[-1].float()))
        return self.decoder(target), target, style_feats

    def losses(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        output, target, style_feats = self.stylize(content, style)
        output_feats = self.encode_levels(output)
        loss_c = nn.functional.mse_loss(output_feats[-1].float(), target)
        loss_s = style_loss(output_feats, style_feats)
        return {"content": loss_c, "style": loss_s}

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        o = self.options
        self.optimizers["decoder"].zero_grad(set_to_none=True)
        with self.accel.autocast():
            parts = self.losses(batch["content"], batch["style"])
            loss = o.content_weight * parts["content"] + o.style_weight * parts["style"]
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizers["decoder"])
        self.scaler.update()
        self.schedulers["decoder"].step()
        return {"loss": loss.detach(), "content": parts["content"].detach(),
                "style": parts["style"].detach()}

    def sample_rows(self, examples: dict[str, torch.Tensor]) -> list[list[torch.Tensor]]:
        """Per example: content, style, stylized output."""
        rows = []
        with self.sampling(self.decoder), self.accel.autocast():
            for i in range(examples["content"].shape[0]):
                output, _, _ = self.stylize(examples["content"][i:i + 1],
                                            examples["style"][i:i + 1])
                rows.append([examples["content"][i], examples["style"][i],
                             output[0].float().clamp(0, 1)])
        return rows

    def exports(self) -> list[Export]:
        o = self.options
        extra = {}
        official = None
        try:
            from backend.modelstore import get_model

            official = get_model("adain", models_dir=Path(o.models_dir) if o.models_dir else None,
                                 require_installed=False).paths.get("vgg")
        except StyleTransferError:
            official = None
        if official is None or Path(official).resolve() != self.vgg_path:
            extra["vgg"] = str(self.vgg_path)      # decoders only work with their own encoder
        return [Export(stem=o.name, engine="adain", arch="adain_decoder",
                       display_name=f"{o.display_name or o.name.replace('_', ' ')} "
                                    "(AdaIN decoder, trained)",
                       description=f"AdaIN decoder trained on content {o.content} and styles "
                                   f"{o.style}",
                       state_dict=self.decoder.state_dict(), run_file="decoder.pth",
                       sidecar_extra=extra)]
