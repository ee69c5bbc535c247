"""CIN: 26 built-in painting styles in one network, blendable, per image or per pixel."""

from stclient.card import (ArchInfo, EngineCard, PerfPolicy, RoleSpec, StyleInputs,
                           STYLE_BUILTIN)
from stclient.options import (STYLE_WEIGHTS, WORKING_SIZE_FINER, OptionSpec, color_output,
                              photo_smoothing, preserve_color, style_strength)

CARD = EngineCard(
    name="cin",
    title="CIN",
    menu_label="Built-in Styles (CIN)...",
    description="Paint the layer in one of 26 built-in styles, or a blend of them "
                "(conditional instance normalisation, Dumoulin et al. 2017)",
    paper="Dumoulin, Shlens, Kudlur 2017, A Learned Representation for Artistic Style",
    default_model="cin26",
    roles=(RoleSpec("transformer", (
        ArchInfo("multistyle26", "CIN transformer with 26 styles (TensorFlow Android stylize "
                                 "demo; 32 channels, 6 residual blocks)"),)),),
    options=(
        OptionSpec("style_index", "ints", [0],
                   "Built-in style(s) by number (see `python -m backend sheet IMAGE`); several "
                   "are blended by --style-weights. With --mask: the style(s) inside the mask.",
                   0, 255, label="Style _number"),
        STYLE_WEIGHTS,
        OptionSpec("outside_style_index", "ints", [],
                   "With --mask: the built-in style(s) outside the mask (default: the content "
                   "stays unchanged there).", 0, 255),
        OptionSpec("outside_style_weights", "floats", [1.0],
                   "Weights of several outside styles (normalised to sum 1).", 0.0, 1e6),
        style_strength(),
        preserve_color(),
        WORKING_SIZE_FINER,
        color_output(False),
        *photo_smoothing(),
    ),
    styles=StyleInputs(kind=STYLE_BUILTIN, minimum=1, maximum=26, mask=True, builtin=26),
    # the fused native layer kernel for per-image styles (backend/perf/fused.py); the engine
    # tiles big images itself (layer by layer, whole-image statistics)
    perf=PerfPolicy(optimize=True, guard=False),
    gimp_arguments=("style-index", "style2-index", "style-weight", "alpha", "preserve-color",
                    "use-selection", "model", "working-size", "color-output",
                    "photo-radius", "photo-eps"),
    demo_runs=(("--style-index", "6"), ("--style-index", "12"), ("--style-index", "19")),
    order=15,
)
