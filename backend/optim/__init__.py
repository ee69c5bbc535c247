"""Optimisation-based style transfer and photorealistic tools, as a library for an engine module.

Gatys et al. 2016 with the 2017 perceptual controls, Deep Photo Style Transfer's photo mode, an
instant colour transfer and a guided filter; all on AdaIN's normalised VGG (modules [:44]).
One module per idea:

    features.py       the VGG layers read (relu1_1..5_1, relu4_2) and Gatys' normalisation
    losses.py         Gram / guided Gram, content, TV losses
    color.py          luminance-only, histogram matching, colour transfer (lαβ, per region)
    matting.py        Levin et al.'s matting Laplacian (photorealism regulariser)
    guided_filter.py  He et al.'s guided filter
    options.py        OptimizeOptions (documented defaults), StyleSpec, scale / segmentation helpers
    objective.py      the loss at one scale
    lbfgs.py          L-BFGS with a backtracking safeguard
    gatys.py          run_gatys: scales, optimiser loop, progress, cancellation, intermediates
    estimate.py       run-time estimate from a measured speed profile
"""

from backend.optim.color import color_transfer, combine_luminance, luminance, match_histogram
from backend.optim.estimate import SpeedProfile, estimate_seconds, measure_speed
from backend.optim.gatys import Progress, ScaleStep, plan_scales, run_gatys
from backend.optim.guided_filter import guided_filter
from backend.optim.matting import MattingLaplacian, matting_laplacian
from backend.optim.options import OptimizeOptions, StyleSpec, mix_scales, segmentation_styles

__all__ = [
    "OptimizeOptions", "StyleSpec", "mix_scales", "segmentation_styles",
    "run_gatys", "plan_scales", "Progress", "ScaleStep",
    "SpeedProfile", "measure_speed", "estimate_seconds",
    "color_transfer", "match_histogram", "luminance", "combine_luminance",
    "guided_filter", "matting_laplacian", "MattingLaplacian",
]
