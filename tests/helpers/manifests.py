"""Small test manifests in the format of models/manifest.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def generator_entry(name: str, url: str, engine: str = "cyclegan", arch: str = "resnet_6blocks",
                    sha: Optional[str] = None, recommended: bool = False,
                    filename: Optional[str] = None) -> dict:
    return {"name": name, "engine": engine, "arch": arch, "display_name": f"Test {name}",
            "description": "test model", "license": "test", "recommended": recommended,
            "files": [{"role": "generator", "filename": filename or f"{name}.pth", "url": url,
                       "sha256": sha}]}


def adain_entry(name: str, vgg_url: str, decoder_url: str, recommended: bool = True) -> dict:
    return {"name": name, "engine": "adain", "arch": "adain", "display_name": "Test AdaIN",
            "description": "test", "license": "test", "recommended": recommended,
            "files": [
                {"role": "vgg", "filename": "vgg_normalised.pth", "arch": "vgg_normalised",
                 "url": vgg_url, "sha256": None},
                {"role": "decoder", "filename": "decoder.pth", "arch": "adain_decoder",
                 "url": decoder_url, "sha256": None}]}


def write_manifest(path: str | Path, models: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": 1, "models": models}, indent=1), encoding="utf-8")
    return path
