"""What an engine card declares: everything about an engine that is not its maths.

A card is plain data (standard library only), so the plug-in reads the same cards inside GIMP's
Python that the CLI, the daemon, the batch runner and the model store read in the backend. Every
list of engines and every per-engine table is derived from the cards in `stclient/cards/`
(see stclient.registry); the maths lives in `backend/engines/<name>.py` and
`backend/networks/<network>.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .options import OptionSpec

# Style inputs an engine takes besides the content image.
STYLE_NONE = "none"          # the model is the style (CycleGAN, pix2pix, MIXGAN)
STYLE_IMAGES = "images"      # style images given by the user (AdaIN)
STYLE_BUILTIN = "builtin"    # styles the model holds, chosen by the `style_index` option (CIN)

# How a checkpoint file is stored. "state_dict": a plain state dict whose keys and shapes pick the
# architecture; any other name is a format its network module reads (CHECKPOINT_FORMATS there).
STATE_DICT = "state_dict"


@dataclass(frozen=True)
class ArchInfo:
    """One known checkpoint layout; its builder is BUILDERS[name] in the role's network module."""

    name: str
    description: str


@dataclass(frozen=True)
class RoleSpec:
    """One checkpoint file a model of the engine is made of."""

    name: str                               # e.g. "vgg", "decoder", "generator"
    archs: tuple[ArchInfo, ...]
    network: str = ""                       # backend/networks/<network>.py (default: the card)
    format: str = STATE_DICT
    # A file users' models may leave out: it is then taken from this manifest model, at
    # `shared_file` under the models folder (AdaIN decoders users train reuse the official VGG).
    shared_from: str = ""
    shared_file: str = ""

    @property
    def arch_names(self) -> tuple[str, ...]:
        return tuple(arch.name for arch in self.archs)


@dataclass(frozen=True)
class StyleInputs:
    """How many style inputs a job takes, of what kind, and whether a mask can place them."""

    kind: str = STYLE_NONE
    minimum: int = 0
    maximum: int = 0
    mask: bool = False                      # a mask (in GIMP: the selection) places the styles
    mask_max: int = 0                       # at most this many styles with a mask (images)
    # One style with a mask: the mask is the region whose statistics the style replaces (colour
    # transfer), so GIMP sends the selection as the mask, not only to cut the result out.
    mask_is_region: bool = False
    builtin: int = 0                        # STYLE_BUILTIN: how many styles the models hold

    @property
    def takes_images(self) -> bool:
        return self.kind == STYLE_IMAGES

    @property
    def builtin_styles(self) -> bool:
        return self.kind == STYLE_BUILTIN


@dataclass(frozen=True)
class SampleSpec:
    """New images drawn from a model (no content image), e.g. MIXGAN's prior."""

    menu_label: str
    description: str
    max_count: int = 64


@dataclass(frozen=True)
class PerfPolicy:
    """What backend.perf does to a loaded model of this engine (measured per engine)."""

    optimize: bool = True                   # the fast inference transforms (perf/fast.py)
    guard: bool = True                      # memory guard: tiling / OOM fallback (perf/guard.py)
    channels_last_cpu: bool = False         # run in channels_last on the CPU without the kernel
    # whole-image RGB float32 tensors a job holds at once, for the daemon's memory check
    # (daemon/sizes.py); more for engines that work on the whole image in float64
    image_tensors: int = 4


@dataclass(frozen=True)
class EngineCard:
    """One engine, declared once."""

    name: str                               # the job's `engine` value, the CLI's --engine
    title: str                              # short name users read: "AdaIN"
    menu_label: str                         # GIMP: Filters > Style Transfer > ...
    description: str                        # one sentence: what it does (GIMP blurb, --help)
    paper: str                              # the method's reference
    roles: tuple[RoleSpec, ...]             # empty: the engine uses no model (no files)
    options: tuple[OptionSpec, ...]
    default_model: str = ""                 # preferred when installed and none is named
    # other engines whose models this one runs (their files for this card's roles), e.g. the
    # optimisation engine on AdaIN's VGG encoder
    models_from: tuple[str, ...] = ()
    styles: StyleInputs = StyleInputs()
    sample: Optional[SampleSpec] = None
    perf: PerfPolicy = PerfPolicy()
    # The GIMP filter procedure's arguments, in their (public, positional) order: option names
    # (from `options`, with their ranges, defaults and help), the style inputs "style-file",
    # "style-layer", "style2-file", "style-weight", "use-selection" (for engines that take
    # style images), and "model". "endpoint" always comes last.
    gimp_arguments: tuple[str, ...] = ("model",)
    # install.py's demo: extra `stylize` arguments per run; "{style}" stands for each example
    # style image. Empty: the engine is left out (its models need special inputs).
    demo_runs: tuple[tuple[str, ...], ...] = ((),)
    order: int = 100                        # position in menus and lists
    # The engine can say how long a job will take before it runs (its Engine.estimate): the
    # daemon's `estimate` op, the CLI's --estimate and the line it prints first, GIMP's dialog.
    estimates: bool = False
    # The option (an int, 0 = off) that makes the engine hand out its image so far every N of
    # its steps: GIMP updates the result layer, the CLI rewrites its output file. Empty: none.
    intermediate_option: str = ""

    def option(self, name: str) -> Optional[OptionSpec]:
        return next((spec for spec in self.options if spec.name == name), None)

    def role(self, name: str) -> Optional[RoleSpec]:
        return next((role for role in self.roles if role.name == name), None)

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(role.name for role in self.roles)

    @property
    def takes_model(self) -> bool:
        """False for engines that are maths only (no checkpoint files, no model to choose)."""
        return bool(self.roles)

    @property
    def main_role(self) -> RoleSpec:
        """The file a single-file user model is (the one role that is not shared)."""
        if not self.roles:
            raise ValueError(f"the {self.name} engine uses no model files")
        own = [role for role in self.roles if not role.shared_from]
        return own[0] if own else self.roles[0]

    @property
    def procedure(self) -> str:
        """The GIMP filter procedure's name."""
        return "python-fu-style-transfer-" + self.name.replace("_", "-")

    @property
    def sample_procedure(self) -> str:
        return self.procedure + "-sample"
