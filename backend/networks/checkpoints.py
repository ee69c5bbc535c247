"""Loading and recognising checkpoint files: the one code path for users' files, the model store's
validation and the engines.

- `load_state_dict(path)`: torch.load(weights_only=True) of a state dict, cleaned of things that
  are not weights (a `_metadata` entry, a `module.` prefix, InstanceNorm running statistics that
  2018-era CycleGAN files carry).
- `detect_architecture(engine, role, state_dict)`: which known layout the keys and shapes match
  exactly, or a bad_checkpoint error saying what was expected and what differs.
- `build_network(engine, arch)`: a fresh module with that layout; `load_network` does all three.
- `file_architecture(path, engine, role)` / `identify_file(path)`: the same for any file, also in
  formats a network module reads itself (MIXGAN's meta + state dict).

The layouts are the ones the engine cards name (stclient/cards/<engine>.py, each role's
`archs`); their builders are `BUILDERS[arch]` in the role's network module
(backend/networks/<network>.py), and a role with another `format` is read by that module's
`CHECKPOINT_FORMATS[format]`.
"""

from __future__ import annotations

import importlib
import os
import re
import zipfile
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Mapping, Optional

import torch
from torch import nn

from stclient import registry
from stclient.card import STATE_DICT, EngineCard, RoleSpec
from stclient.errors import BAD_CHECKPOINT, MODEL_MISSING, StyleTransferError

StateDict = dict[str, torch.Tensor]
_IN_STATS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class ArchSpec:
    """A known checkpoint layout: which engine and role it serves and how to build it."""

    name: str
    engine: str
    role: str
    build: Callable[[], nn.Module]
    description: str


_ARCHITECTURES: Optional[dict[str, ArchSpec]] = None
_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {}


def network_module(card: EngineCard, role: RoleSpec) -> ModuleType:
    return importlib.import_module(f"backend.networks.{role.network or card.name}")


def architectures() -> dict[str, ArchSpec]:
    """Every state-dict layout the cards name (an architecture shared by several engines, such
    as AdaIN's VGG, is listed under the first card that names it)."""
    global _ARCHITECTURES
    if _ARCHITECTURES is None:
        found: dict[str, ArchSpec] = {}
        for card in registry.cards().values():
            for role in card.roles:
                if role.format != STATE_DICT:
                    continue
                builders = network_module(card, role).BUILDERS
                for arch in role.archs:
                    found.setdefault(arch.name, ArchSpec(arch.name, card.name, role.name,
                                                         builders[arch.name], arch.description))
        _ARCHITECTURES = found
    return _ARCHITECTURES


def _role(engine: str, role: str) -> RoleSpec:
    spec = registry.card(engine).role(role)
    if spec is None:
        raise StyleTransferError(
            BAD_CHECKPOINT, f"No known checkpoint layout for engine {engine!r} role {role!r}.")
    return spec


# ---------------------------------------------------------------- loading

def load_state_dict(path: str | os.PathLike) -> StateDict:
    """Read a checkpoint safely (weights only) and return its cleaned tensors.

    Raises model_missing if the file does not exist and bad_checkpoint if it is not a readable
    PyTorch state dict.
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise StyleTransferError(MODEL_MISSING, f"Checkpoint file not found: {path}")
    if os.path.getsize(path) == 0:
        raise StyleTransferError(BAD_CHECKPOINT, f"Checkpoint {name} is empty (0 bytes).")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError,
            AttributeError, TypeError, ImportError, IndexError) as error:
        # torch raises UnpicklingError (a subclass of Exception) for refused globals
        if "weights_only" in str(error):
            raise StyleTransferError(BAD_CHECKPOINT, _refused_pickle(name, error)) from None
        raise StyleTransferError(
            BAD_CHECKPOINT, f"Checkpoint {name} is not a readable PyTorch weights file "
                            f"({type(error).__name__}: {_first_line(error)}).") from None
    except Exception as error:  # pickle.UnpicklingError and friends
        raise StyleTransferError(BAD_CHECKPOINT, _refused_pickle(name, error)) from None
    return clean_state_dict(loaded, name)


def _refused_pickle(name: str, error: BaseException) -> str:
    return f"Checkpoint {name} {refusal_reason(error)}"


def refusal_reason(error: BaseException) -> str:
    """What to say about a file the weights-only loader refused (it follows the file's name).
    Never torch's own advice: it suggests weights_only=False, i.e. running whatever code the
    file carries."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    if found:
        return (f"holds Python objects, not only weights ({found.group(1)}); nothing in it was "
                "run. Use the released weights file, or save the model's state_dict() as a "
                "plain weights file.")
    found = re.search(r"Unsupported operand (\d+)", str(error))
    where = f" (the weights-only loader stopped at operand {found.group(1)})" if found else ""
    return f"is not a plain PyTorch weights file{where}; nothing in it was run."


def clean_state_dict(loaded: object, name: str = "checkpoint") -> StateDict:
    """Keep only the weights: unwrap {'state_dict': ...}, drop `_metadata`, a uniform `module.`
    prefix, and running statistics of InstanceNorm layers (those that have no affine weight)."""
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(
            loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise StyleTransferError(
            BAD_CHECKPOINT, f"{name} holds a {type(loaded).__name__}, not a state dict of "
                            "named tensors.")
    tensors: StateDict = {}
    for key, value in loaded.items():
        if key == "_metadata":
            continue
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise StyleTransferError(
                BAD_CHECKPOINT, f"{name} entry {key!r} is not a tensor; expected a state dict "
                                "of named tensors.")
        tensors[key] = value
    if not tensors:
        raise StyleTransferError(BAD_CHECKPOINT, f"{name} contains no tensors.")
    if all(key.startswith("module.") for key in tensors):
        tensors = {key[len("module."):]: value for key, value in tensors.items()}
    for key in [k for k in tensors if k.rsplit(".", 1)[-1] in _IN_STATS]:
        prefix = key.rsplit(".", 1)[0]
        if prefix + ".weight" not in tensors:  # an InstanceNorm (affine=False) layer's stats
            del tensors[key]
    return tensors


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


# ---------------------------------------------------------------- detection

def _expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an architecture (built once on the meta device: no memory, no time)."""
    if arch not in _SHAPES:
        with torch.device("meta"):
            module = architectures()[arch].build()
        _SHAPES[arch] = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    return _SHAPES[arch]


def _differences(arch: str, state_dict: Mapping[str, torch.Tensor]) -> tuple[list, list, list]:
    expected = _expected_shapes(arch)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected and not _optional(k, expected)]
    mismatched = [(k, tuple(state_dict[k].shape), shape) for k, shape in expected.items()
                  if k in state_dict and tuple(state_dict[k].shape) != shape]
    return missing, unexpected, mismatched


def _optional(key: str, expected: Mapping[str, tuple[int, ...]]) -> bool:
    """BatchNorm's num_batches_tracked: present or not depending on the PyTorch that saved it."""
    prefix, _, leaf = key.rpartition(".")
    return leaf == "num_batches_tracked" and prefix + ".running_mean" in expected


def candidates(engine: str, role: str) -> list[str]:
    """The state-dict layouts the engine's card names for `role`."""
    spec = registry.card(engine).role(role)
    if spec is None or spec.format != STATE_DICT:
        return []
    return list(spec.arch_names)


def detect_architecture(engine: str, role: str, state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name of the known layout that `state_dict` matches exactly, else bad_checkpoint."""
    names = candidates(engine, role)
    if not names:
        raise StyleTransferError(
            BAD_CHECKPOINT, f"No known checkpoint layout for engine {engine!r} role {role!r}.")
    best: tuple[int, str, tuple] | None = None
    for arch in names:
        diff = _differences(arch, state_dict)
        if not any(diff):
            return arch
        score = sum(len(part) for part in diff)
        if best is None or score < best[0]:
            best = (score, arch, diff)
    assert best is not None
    expected = " or ".join(f"{architectures()[n].description} ({n})" for n in names)
    raise StyleTransferError(
        BAD_CHECKPOINT,
        f"The {role} checkpoint does not match a known {engine} layout: expected {expected}; "
        f"found {len(state_dict)} tensors. Closest is {best[1]}: {_describe(best[2])}.")


def _describe(diff: tuple[list, list, list], shown: int = 3) -> str:
    missing, unexpected, mismatched = diff
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) such as {', '.join(missing[:shown])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) such as {', '.join(unexpected[:shown])}")
    if mismatched:
        shapes = ", ".join(f"{k} is {list(got)} (expected {list(want)})"
                           for k, got, want in mismatched[:shown])
        parts.append(f"{len(mismatched)} wrong shape(s): {shapes}")
    return "; ".join(parts)


def identify(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, str, str]:
    """(engine, role, arch) of a state dict that matches any known layout, else bad_checkpoint.

    Used for user models whose engine is not declared."""
    for name, spec in architectures().items():
        if not any(_differences(name, state_dict)):
            return spec.engine, spec.role, name
    raise StyleTransferError(
        BAD_CHECKPOINT,
        f"The checkpoint ({len(state_dict)} tensors) matches no known layout; expected one of: "
        + ", ".join(sorted(architectures())) + ".")


def _formatted_roles() -> list[tuple[EngineCard, RoleSpec]]:
    return [(card, role) for card in registry.cards().values() for role in card.roles
            if role.format != STATE_DICT]


def _format_reader(card: EngineCard, role: RoleSpec):
    return network_module(card, role).CHECKPOINT_FORMATS[role.format]


def file_architecture(path: str | os.PathLike, engine: str, role: str) -> str:
    """The architecture of the `engine`/`role` checkpoint at `path` (read safely), in whatever
    format the card gives that role; bad_checkpoint saying what is wrong otherwise."""
    spec = _role(engine, role)
    if spec.format != STATE_DICT:
        return _format_reader(registry.card(engine), spec).architecture(path)
    return detect_architecture(engine, role, load_state_dict(path))


def identify_file(path: str | os.PathLike) -> tuple[str, str, str]:
    """(engine, role, arch) of a checkpoint nobody declared (user models), in any format."""
    try:
        return identify(load_state_dict(path))
    except StyleTransferError as error:
        for card, role in _formatted_roles():
            try:
                return card.name, role.name, _format_reader(card, role).architecture(path)
            except StyleTransferError:
                continue
        raise error from None


# ---------------------------------------------------------------- building

def build_network(engine: str, arch: str, device: str | torch.device = "cpu") -> nn.Module:
    """A freshly initialised network with the given layout, in eval mode (for training; loading
    goes through load_network)."""
    spec = architectures().get(arch)
    if spec is None or arch not in [a for r in registry.card(engine).roles for a in r.arch_names]:
        known = ", ".join(a for r in registry.card(engine).roles for a in r.arch_names) or "none"
        raise StyleTransferError(
            BAD_CHECKPOINT, f"Unknown architecture {arch!r} for engine {engine!r} "
                            f"(known: {known}).")
    if torch.device(device).type == "meta":
        with torch.device("meta"):
            return spec.build().eval()
    return spec.build().eval().to(device)


def load_network(engine: str, role: str, path: str | os.PathLike,
                 arch: str | None = None) -> tuple[str, nn.Module]:
    """Load a checkpoint file into a new module (strict), detecting its layout when `arch` is None
    or checking it against `arch` otherwise. Returns (arch, module) on the CPU, eval mode."""
    state_dict = load_state_dict(path)
    detected = detect_architecture(engine, role, state_dict)
    if arch is not None and arch != detected:
        raise StyleTransferError(
            BAD_CHECKPOINT, f"{os.path.basename(os.fspath(path))} is a {detected} checkpoint, "
                            f"but {arch} was declared for it.")
    # built on the meta device: no random initialisation of weights that are replaced anyway
    module = build_network(engine, detected, "meta")
    weights = {key: value.float().contiguous() if value.is_floating_point() else value
               for key, value in state_dict.items()}
    try:
        module.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as error:
        raise StyleTransferError(BAD_CHECKPOINT,
                                 f"Checkpoint could not be loaded: {_first_line(error)}") from None
    for tensor in state_dict.values():  # a NaN/inf weight gives a black or garbage image
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise StyleTransferError(
                BAD_CHECKPOINT, f"{os.path.basename(os.fspath(path))} contains NaN or infinite "
                                "weights.")
    return detected, module
