"""CycleGAN: the released unpaired generators (Monet, Van Gogh, horse to zebra, ...)."""

from stclient.card import ArchInfo, EngineCard, PerfPolicy, RoleSpec
from stclient.options import WORKING_SIZE, color_output, photo_smoothing

CARD = EngineCard(
    name="cyclegan",
    title="CycleGAN",
    menu_label="Domain Transfer (CycleGAN)...",
    description="Translate the layer to another domain with a CycleGAN generator",
    paper="Zhu et al. 2017, Unpaired Image-to-Image Translation using Cycle-Consistent "
          "Adversarial Networks",
    default_model="style_monet",
    roles=(RoleSpec("generator", (
        ArchInfo("resnet_9blocks", "CycleGAN ResNet generator with 9 blocks"),
        ArchInfo("resnet_6blocks", "CycleGAN ResNet generator with 6 blocks"),
        ArchInfo("resnet_9blocks_dropout",
                 "CycleGAN ResNet generator with 9 blocks trained with dropout"),
        ArchInfo("resnet_6blocks_dropout",
                 "CycleGAN ResNet generator with 6 blocks trained with dropout"),
    )),),
    options=(WORKING_SIZE, color_output(False), *photo_smoothing()),
    # channels_last did not pay on the CPU without the kernel (0.98-1.04x; perf/fast.py)
    perf=PerfPolicy(channels_last_cpu=False),
    gimp_arguments=("model", "working-size", "color-output", "photo-radius", "photo-eps"),
    order=20,
)
