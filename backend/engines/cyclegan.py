"""CycleGAN engine: one ResNet generator (6 or 9 blocks), unpaired image-to-image translation."""

from __future__ import annotations

from backend.engines.generator import GeneratorEngine


class CycleGANEngine(GeneratorEngine):
    min_side = 8   # two stride-2 stages, then 3x3 reflection padding needs >= 2 px


ENGINE = CycleGANEngine
