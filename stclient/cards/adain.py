"""AdaIN: any image's style, blended styles, kept colours, a style confined to the selection."""

from stclient.card import ArchInfo, EngineCard, PerfPolicy, RoleSpec, StyleInputs, STYLE_IMAGES
from stclient.options import (STYLE_WEIGHTS, WORKING_SIZE, OptionSpec, color_output,
                              photo_smoothing, preserve_color, style_strength)

CARD = EngineCard(
    name="adain",
    title="AdaIN",
    menu_label="Arbitrary Style (AdaIN)...",
    description="Paint the layer in the style of any image (AdaIN, Huang & Belongie 2017)",
    paper="Huang & Belongie 2017, Arbitrary Style Transfer in Real-time with Adaptive Instance "
          "Normalization",
    default_model="adain",
    roles=(
        RoleSpec("vgg", (ArchInfo("vgg_normalised",
                                  "AdaIN's normalised VGG-19 (vgg_normalised.pth, 53 modules)"),),
                 shared_from="adain", shared_file="adain/vgg_normalised.pth"),
        RoleSpec("decoder", (ArchInfo("adain_decoder",
                                      "AdaIN decoder (decoder.pth, 29 modules)"),)),
    ),
    options=(
        style_strength(),
        STYLE_WEIGHTS,
        preserve_color("Keep the content's colours (recolour the style first)."),
        OptionSpec("color_method", "choice", "reference",
                   "How colours are kept: 'reference' (the paper's colour transfer) or "
                   "'luminance' (stylize luminance only).", choices=("reference", "luminance")),
        OptionSpec("style_size", "int", 0,
                   "Longest side the style image is scaled to before encoding (0 = its own size).",
                   0, 16384),
        OptionSpec("mask_mode", "choice", "soft",
                   "How a mask combines the styles: 'soft' blends where the mask is between 0 "
                   "and 1, 'hard' switches at 0.5 (as the original release).",
                   choices=("soft", "hard")),
        WORKING_SIZE,
        color_output(False),
        *photo_smoothing(),
    ),
    styles=StyleInputs(kind=STYLE_IMAGES, minimum=1, maximum=16, mask=True, mask_max=2),
    perf=PerfPolicy(channels_last_cpu=True),
    gimp_arguments=("style-file", "style-layer", "style2-file", "style-weight", "alpha",
                    "preserve-color", "use-selection", "model", "working-size", "color-output",
                    "photo-radius", "photo-eps"),
    demo_runs=(("--style", "{style}"),),
    order=10,
)
