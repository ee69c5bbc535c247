"""Optimisation (Gatys et al. 2016, with the 2017 perceptual controls): the image itself is
optimised until its VGG features hold the content's structure and the styles' textures. Slow,
iterative, the highest quality; runs on AdaIN's normalised VGG (the `adain` model)."""

from stclient.card import ArchInfo, EngineCard, PerfPolicy, RoleSpec, StyleInputs, STYLE_IMAGES
from stclient.options import OptionSpec, color_output

# CPU-friendly defaults (coarse-to-fine at 256 px, ~2 minutes on 2 cores); a GPU affords
# Gatys et al.'s 500 iterations at 512 px and more (backend/optim/options.py, measured).
OPTIONS = (
    OptionSpec("iterations", "int", 100, "Optimiser iterations at the final size (Gatys et al.: "
               "500; more is slower and closer).", 1, 10000, label="Itera_tions"),
    OptionSpec("size", "int", 256, "Longest side of the result in pixels, scaled back to the "
               "image's size (0 = the image's own size; large sizes are slow on a CPU).",
               0, 4096, label="Si_ze"),
    OptionSpec("scales", "int", 2, "Coarse-to-fine: optimise at this many sizes, each half the "
               "next (1 = only the final size).", 1, 6),
    OptionSpec("coarse_iterations", "int", 100, "Iterations at each coarser size.", 0, 10000),
    OptionSpec("optimizer", "choice", "lbfgs", "L-BFGS (Gatys et al.) or Adam.",
               choices=("lbfgs", "adam")),
    OptionSpec("content_weight", "float", 1.0, "Weight of the content (relu4_2).", 0.0, 1e9),
    OptionSpec("style_weight", "float", 1e3, "Weight of the style (Gram matrices at relu1_1 to "
               "relu5_1).", 0.0, 1e12, label="Style _weight"),
    OptionSpec("tv_weight", "float", 0.0, "Total-variation smoothing weight.", 0.0, 1e9),
    OptionSpec("style_weights", "floats", [1.0], "Weights of several styles (normalised to "
               "sum 1).", 0.0, 1e6),
    OptionSpec("preserve_color", "bool", False, "Keep the content's colours.",
               label="_Keep colours"),
    OptionSpec("color_method", "choice", "luminance", "How colours are kept: 'luminance' "
               "(stylize Y, keep the content's chroma) or 'histogram' (recolour the styles to "
               "the content first).", choices=("luminance", "histogram")),
    OptionSpec("histogram_method", "choice", "pca", "Histogram matching: 'cholesky', 'pca' or "
               "'symmetric' (square root).", choices=("cholesky", "pca", "symmetric")),
    OptionSpec("photo", "bool", False, "Photorealistic (Deep Photo Style Transfer): the "
               "matting-Laplacian regulariser keeps the photo's local structure.",
               label="Photore_alistic"),
    OptionSpec("photo_weight", "float", 1e4, "Weight of the photorealism regulariser.",
               0.0, 1e12),
    OptionSpec("update_every", "int", 20, "Show the result so far every N iterations (GIMP "
               "updates the result layer, the CLI rewrites its output file) so you can stop "
               "when it looks right; 0 = only the final result.", 0, 10000,
               label="Update every _N iterations"),
    color_output(False),
)

CARD = EngineCard(
    name="optimize",
    title="Optimise (Gatys)",
    menu_label="Optimise (Gatys)...",
    description="Optimise the layer until it has the style of any image (Gatys et al. 2016/"
                "2017): slow, iterative, the highest quality",
    paper="Gatys, Ecker, Bethge 2016; Gatys et al. 2017, Controlling Perceptual Factors in "
          "Neural Style Transfer; Luan et al. 2017, Deep Photo Style Transfer",
    default_model="adain",
    models_from=("adain",),
    roles=(RoleSpec("vgg", (ArchInfo("vgg_normalised",
                                     "AdaIN's normalised VGG-19 (vgg_normalised.pth, 53 "
                                     "modules)"),),
                    network="adain", shared_from="adain",
                    shared_file="adain/vgg_normalised.pth"),),
    options=OPTIONS,
    styles=StyleInputs(kind=STYLE_IMAGES, minimum=1, maximum=8, mask=True, mask_max=2),
    perf=PerfPolicy(optimize=False, guard=False),     # autograd through the plain network
    gimp_arguments=("style-file", "style-layer", "style2-file", "style-weight", "iterations",
                    "size", "preserve-color", "photo", "use-selection", "model",
                    "color-output", "update-every"),
    demo_runs=(),                                     # minutes per image on a CPU
    order=50,
    estimates=True,                                   # backend/optim/estimate.py
    intermediate_option="update_every",
)
