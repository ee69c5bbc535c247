"""What a finished run hands to registration (Export). Its own module so that the loop
(common.py) and the registration (register.py) both build on it without importing each other;
files are written with backend.atomicfile.atomic_write (temp file, then rename)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch


@dataclass
class Export:
    """One finished network to register: `stem` is the model name in the models folder."""

    stem: str
    engine: str
    arch: str
    display_name: str
    description: str
    state_dict: dict[str, torch.Tensor]
    run_file: str                        # the reference's file name, kept in the run folder
    registrable: bool = True             # False: kept in the run folder only
    unregistered_reason: str = ""        # said to the user when a generator is not registered
    sidecar_extra: dict[str, Any] = field(default_factory=dict)
    # Formats that carry their architecture beside the weights (MIXGAN's {"meta", "state_dict"})
    # set `meta`; without it the file is the bare state dict, as the released files are.
    meta: Optional[dict[str, Any]] = None

    def file_content(self) -> dict[str, Any]:
        """What torch.save writes: CPU tensors only, loadable with weights_only=True."""
        weights = {k: v.detach().cpu().contiguous() for k, v in self.state_dict.items()}
        return weights if self.meta is None else {"meta": dict(self.meta), "state_dict": weights}
