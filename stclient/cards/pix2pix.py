"""pix2pix: the released paired generators (edges to shoes, labels to facades, ...)."""

from stclient.card import ArchInfo, EngineCard, PerfPolicy, RoleSpec
from stclient.options import WORKING_SIZE, OptionSpec, color_output

CARD = EngineCard(
    name="pix2pix",
    title="Pix2Pix",
    menu_label="Image to Image (Pix2Pix)...",
    description="Translate the layer with a pix2pix generator (labels/edges to photo...)",
    paper="Isola et al. 2017, Image-to-Image Translation with Conditional Adversarial Networks",
    default_model="pix2pix_facades_label2photo",
    roles=(RoleSpec("generator", (
        ArchInfo("unet_256", "pix2pix U-Net generator for 256 px (8 levels)"),
        ArchInfo("unet_128", "pix2pix U-Net generator for 128 px (7 levels)"),
    )),),
    options=(
        OptionSpec("norm", "choice", "image",
                   "Statistics the network normalises its layers with: 'image' "
                   "(measured on this image, as the published pix2pix results were made) or "
                   "'running' (averages stored during training).", choices=("image", "running"),
                   label="_Normalisation",
                   choice_labels=("Measured on this image (as the published results)",
                                  "Averages stored during training")),
        OptionSpec("seed", "int", -1,
                   "Seed for dropout variation (-1 = deterministic, dropout off).", -1, 2**31 - 1),
        WORKING_SIZE,
        color_output(False),
    ),
    # channels_last slowed pix2pix on the CPU (perf/fast.py)
    perf=PerfPolicy(channels_last_cpu=False),
    gimp_arguments=("model", "norm", "working-size", "color-output"),
    # its models expect special inputs (edge maps, label maps), not the example photos
    demo_runs=(),
    order=30,
)
