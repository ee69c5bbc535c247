"""Colour Transfer: the content takes the colour statistics of a style image (mean and covariance
in Reinhard et al.'s decorrelated lαβ space, or in RGB), optionally only in the selection.
Instant, no network and no model: "make my photo feel like that photo" in one click."""

import dataclasses

from stclient.card import EngineCard, PerfPolicy, StyleInputs, STYLE_IMAGES
from stclient.options import OptionSpec, color_output, style_strength

CARD = EngineCard(
    name="colortransfer",
    title="Colour Transfer",
    menu_label="Colour Transfer...",
    description="Give the layer the colours of another image (mean and covariance of its "
                "colours, Reinhard et al. 2001): instant, no network",
    paper="Reinhard, Ashikhmin, Gooch, Shirley 2001, Color Transfer between Images (lαβ); the "
          "full-covariance affine map as in Gatys et al. 2017",
    roles=(),
    options=(
        dataclasses.replace(style_strength("Colour strength: 0 keeps the content's colours, 1 "
                                           "is the full transfer."), label="Colour s_trength"),
        OptionSpec("histogram_method", "choice", "symmetric",
                   "How the covariance is matched: 'symmetric' (the smallest colour shift), "
                   "'cholesky' or 'pca' (Image Analogies).",
                   choices=("symmetric", "cholesky", "pca"), label="Colour _matching",
                   choice_labels=("Smallest shift (symmetric)", "Cholesky", "PCA")),
        OptionSpec("color_space", "choice", "lab",
                   "Where the statistics are matched: 'lab' (Reinhard's decorrelated lαβ) or "
                   "'rgb'.", choices=("lab", "rgb"), label="Colour sp_ace",
                   choice_labels=("lαβ (decorrelated)", "RGB")),
        OptionSpec("keep_luminance", "bool", False,
                   "Keep the content's luminance: only the colours (chroma) change.",
                   label="Keep _brightness"),
        color_output(True),
    ),
    styles=StyleInputs(kind=STYLE_IMAGES, minimum=1, maximum=1, mask=True, mask_max=1,
                       mask_is_region=True),
    # no network; the colour maths holds ~16 float32 RGB images' worth in float64 (measured:
    # 2.9 GB peak for a 12.6-megapixel photo, with the process's own ~0.4 GB)
    perf=PerfPolicy(optimize=False, guard=False, image_tensors=18),
    gimp_arguments=("style-file", "style-layer", "alpha", "histogram-method", "color-space",
                    "keep-luminance", "use-selection", "color-output"),
    demo_runs=(),
    order=52,
)
