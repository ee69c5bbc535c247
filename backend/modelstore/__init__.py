"""The one answer to "which models exist, which are installed, where are their files".

Used by the CLI (`python -m backend models`), the runtime/daemon (loading by name), and install.py
(which runs `python -m backend models install ...` in the project's virtual environment).

    list_models() -> list[ModelInfo]          every known model, installed or not (no torch import)
    get_model(name) -> ModelInfo              unknown_model / model_missing errors say what to do
    default_model(engine) -> ModelInfo        what an engine uses when no model is named
    install_models("adain,style_monet", mirror=None) -> InstallReport
    verify_models() -> list[VerifyResult]     structural check of installed files
"""

from __future__ import annotations

from .manifest import (Manifest, ManifestEntry, ModelFile, default_manifest_path,
                       default_models_dir, load_manifest)
from .registry import (ModelInfo, ModelRegistry, default_model, get_model, install_command,
                       list_models, missing_message)
from .installer import InstallReport, VerifyResult, install_models, verify_models

__all__ = [
    "InstallReport", "Manifest", "ManifestEntry", "ModelFile", "ModelInfo",
    "ModelRegistry", "VerifyResult",
    "default_manifest_path", "default_model", "default_models_dir", "get_model",
    "install_command", "install_models", "list_models", "load_manifest", "missing_message",
    "verify_models",
]
