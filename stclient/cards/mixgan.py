"""MIXGAN: content from one domain in the style of another; new images from the prior."""

from stclient.card import ArchInfo, EngineCard, PerfPolicy, RoleSpec, SampleSpec
from stclient.options import WORKING_SIZE, OptionSpec, color_output

CARD = EngineCard(
    name="mixgan",
    title="MIXGAN",
    menu_label="Mix Content and Style (MIXGAN)...",
    description="Keep the layer's content and take the style from a MIXGAN model",
    paper="Hao, Yu, Zheng 2018, MIXGAN: Learning Concepts from Different Domains for Mixture "
          "Generation",
    default_model="mixgan_glyphs",
    roles=(RoleSpec("generator", (
        ArchInfo("paper", "MIXGAN generator of the paper (64x64, fully connected latent)"),
        ArchInfo("conv", "fully convolutional MIXGAN generator (latent map)"),
    ), format="mixgan"),),
    options=(
        OptionSpec("seed", "int", 0, "Seed for sampling new images.", 0, 2**31 - 1,
                   label="S_eed"),
        WORKING_SIZE,
        # MIXGAN's content domain is grey and its point is the style's colour
        color_output(True),
    ),
    sample=SampleSpec("New Images from MIXGAN...",
                      "Sample new images from a MIXGAN model into a new image (one layer per "
                      "sample)"),
    # transforms only: identical pixels, 1.0x on the memory-bound 16-channel starter; its
    # generator returns two images and is not memory-guarded
    perf=PerfPolicy(optimize=True, guard=False),
    gimp_arguments=("model", "working-size", "color-output"),
    order=40,
)
