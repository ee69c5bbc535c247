"""Magenta: any style image through a style-prediction network, one fast pass (Ghiasi et al.)."""

from stclient.card import ArchInfo, EngineCard, PerfPolicy, RoleSpec, StyleInputs, STYLE_IMAGES
from stclient.options import (STYLE_WEIGHTS, WORKING_SIZE_FINER, color_output,
                              photo_smoothing, preserve_color, style_strength)

CARD = EngineCard(
    name="magenta",
    title="Magenta",
    menu_label="Fast Arbitrary Style (Magenta)...",
    description="Paint the layer in the style of any image with Magenta's fast arbitrary-style "
                "network (Ghiasi et al. 2017)",
    paper="Ghiasi, Lee, Kudlur, Dumoulin, Shlens 2017, Exploring the structure of a real-time, "
          "arbitrary neural artistic stylization network",
    default_model="magenta_mobile",
    roles=(
        RoleSpec("predictor", (ArchInfo("magenta_predictor",
                                        "Magenta style predictor (MobileNetV2 -> 100-d)"),)),
        RoleSpec("transformer", (ArchInfo("magenta_transformer",
                                          "Magenta style transformer (conditional style "
                                          "norms from the embedding)"),)),
    ),
    options=(
        style_strength("Style strength: the style's embedding mixed with the content's own (0 "
                       "keeps the content's own look, 1 is full style)."),
        STYLE_WEIGHTS,
        preserve_color(),
        WORKING_SIZE_FINER,
        color_output(False),
        *photo_smoothing(),
    ),
    styles=StyleInputs(kind=STYLE_IMAGES, minimum=1, maximum=16, mask=True, mask_max=2),
    perf=PerfPolicy(optimize=True, guard=True),
    gimp_arguments=("style-file", "style-layer", "style2-file", "style-weight", "alpha",
                    "preserve-color", "use-selection", "model", "working-size", "color-output",
                    "photo-radius", "photo-eps"),
    demo_runs=(("--style", "{style}"),),
    order=12,
)
