"""Magenta: any style image through a style-prediction network, one fast pass (Ghiasi et al.)."""

from stclient.card import ArchInfo, EngineCard, PerfPolicy, RoleSpec, StyleInputs, STYLE_IMAGES
from stclient.options import WORKING_SIZE, OptionSpec, color_output

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
        OptionSpec("alpha", "float", 1.0,
                   "Style strength: the style's embedding mixed with the content's own (0 keeps "
                   "the content's own look, 1 is full style).", 0.0, 1.0,
                   label="Style _strength"),
        OptionSpec("style_weights", "floats", [1.0],
                   "Weights of several styles (normalised to sum 1).", 0.0, 1e6),
        OptionSpec("preserve_color", "bool", False,
                   "Keep the content's colours (stylize the luminance only).",
                   label="_Keep colours"),
        OptionSpec(WORKING_SIZE.name, WORKING_SIZE.kind, WORKING_SIZE.default,
                   WORKING_SIZE.help + " Larger than the image gives finer strokes.",
                   WORKING_SIZE.minimum, WORKING_SIZE.maximum, label=WORKING_SIZE.label),
        color_output(False),
    ),
    styles=StyleInputs(kind=STYLE_IMAGES, minimum=1, maximum=16, mask=True, mask_max=2),
    perf=PerfPolicy(optimize=True, guard=True),
    gimp_arguments=("style-file", "style-layer", "style2-file", "style-weight", "alpha",
                    "preserve-color", "use-selection", "model", "working-size", "color-output"),
    demo_runs=(("--style", "{style}"),),
    order=12,
)
