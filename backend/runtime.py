"""Runtime: the one place that runs stylize jobs, for the CLI, the daemon worker and the batch runner.

It owns what is the same for every engine: choosing the device, validating jobs and options,
finding checkpoint files (model store or explicit files), keeping models loaded (LRU within a
memory budget), caching AdaIN style statistics, converting grey/alpha/dtypes and rounding back,
progress and cancellation. Engines (backend/engines) only run their networks.

    rt = Runtime(device="auto", models_dir=None)
    out = rt.stylize(job, progress=fn(frac, text), cancelled=fn() -> bool)
    rt.status() -> dict
    rt.stats["style_encodes"], ["style_cache_hits"], ["model_loads"], ["model_cache_hits"], ["runs"]
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from backend.engines import get_engine, smoothing
from backend.engines.base import EngineContext
from backend.engines.checks import checked_job
from backend.engines.job import (CancelledFn, IntermediateFn, ProgressFn, StylizeJob,
                                 never_cancelled, no_progress)
from backend.engines.progress import Monotonic, warm_meta
from stclient.errors import (BAD_IMAGE, BAD_REQUEST, TOO_LARGE, UNAVAILABLE, Cancelled,
                             StyleTransferError)
from backend.pixels import from_float_rgb, to_float_rgb
from stclient import registry
from stclient.registry import resolve_options

GIB = 1024 ** 3
END_OF_ENGINE = 0.99       # the rest of the bar: rounding back to the content's pixels
STATS_KEYS = ("runs", "model_loads", "model_cache_hits", "model_evictions", "style_encodes",
              "style_cache_hits")


# ================================================================ device

def select_device(spec: str = "auto") -> torch.device:
    """'auto' = CUDA if present, else Apple MPS, else CPU. Asking for a missing one is an error."""
    spec = (spec or "auto").lower()
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if spec == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if spec.startswith("cuda"):
        if not cuda:
            raise StyleTransferError(UNAVAILABLE, "CUDA was asked for but no CUDA GPU is "
                                                  "available; use --device cpu or auto.")
        return torch.device(spec)
    if spec == "mps":
        if not mps:
            raise StyleTransferError(UNAVAILABLE, "MPS was asked for but is not available.")
        return torch.device("mps")
    if spec == "cpu":
        return torch.device("cpu")
    raise StyleTransferError(BAD_REQUEST, f"Unknown device {spec!r}; use auto, cpu, cuda or mps.")


def default_memory_budget(device: torch.device) -> int:
    """Bytes of model weights kept loaded: 60% of a GPU, else half the RAM up to 4 GiB."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory * 0.6)
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 * GIB
    return int(min(4 * GIB, ram // 2))


# ================================================================ caches

@dataclass
class LoadedModel:
    """A model on the device, as cached by the Runtime."""

    key: str                 # identity: engine, name and the files' path/size/mtime
    engine: str
    name: str
    arch: str
    model: Any
    nbytes: int
    paths: dict[str, str]
    loaded_at: float


class StyleCache:
    """LRU of AdaIN style statistics (tiny tensors), keyed by style pixels + model + size."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._items: "OrderedDict[str, Any]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class ModelSource:
    """Where a job's model comes from: the files per role and their declared architectures."""

    engine: str
    name: str
    paths: dict[str, str]
    archs: dict[str, Optional[str]]

    @property
    def key(self) -> str:
        parts = [self.engine, self.name]
        for role in sorted(self.paths):
            path = self.paths[role]
            try:
                stat = os.stat(path)
                parts.append(f"{role}={os.path.realpath(path)}:{stat.st_size}:{stat.st_mtime_ns}")
            except OSError:
                parts.append(f"{role}={path}:missing")
        return "|".join(parts)


class _Rates:
    """Seconds per checkpoint byte to load, seconds per pixel to compute and to smooth, as
    measured by this Runtime (exponential averages), for the progress bar's split between
    loading, the network and the photorealistic smoothing."""

    DEFAULT_LOAD_SHARE = 0.15
    DEFAULT_SMOOTHING_SHARE = 0.3

    def __init__(self) -> None:
        self.load_s_per_byte: Optional[float] = None
        self.smooth_s_per_pixel: Optional[float] = None
        self.compute_s_per_pixel: dict[str, float] = {}

    @staticmethod
    def _bytes(source: ModelSource) -> int:
        total = 0
        for path in source.paths.values():
            try:
                total += os.stat(path).st_size
            except OSError:
                pass
        return total

    def loaded(self, source: ModelSource, seconds: float) -> None:
        size = self._bytes(source)
        if size > 0:
            rate = seconds / size
            old = self.load_s_per_byte
            self.load_s_per_byte = rate if old is None else 0.5 * (rate + old)

    def computed(self, key: str, pixels: int, seconds: float) -> None:
        if pixels > 0:
            rate = seconds / pixels
            old = self.compute_s_per_pixel.get(key)
            self.compute_s_per_pixel[key] = rate if old is None else 0.5 * (rate + old)

    def smoothed(self, pixels: int, seconds: float) -> None:
        if pixels > 0:
            rate = seconds / pixels
            old = self.smooth_s_per_pixel
            self.smooth_s_per_pixel = rate if old is None else 0.5 * (rate + old)

    def smoothing_share(self, key: str) -> float:
        """The photorealistic smoothing's share of the engine's part of the bar."""
        per_pixel = self.compute_s_per_pixel.get(key)
        if self.smooth_s_per_pixel is None or per_pixel is None:
            return self.DEFAULT_SMOOTHING_SHARE
        smooth = self.smooth_s_per_pixel
        return min(0.9, max(0.01, smooth / max(smooth + per_pixel, 1e-12)))

    def load_share(self, source: ModelSource, pixels: int) -> float:
        per_pixel = self.compute_s_per_pixel.get(source.key)
        if self.load_s_per_byte is None or per_pixel is None:
            return self.DEFAULT_LOAD_SHARE
        load = self.load_s_per_byte * self._bytes(source)
        compute = per_pixel * pixels
        return min(0.8, max(0.01, load / max(load + compute, 1e-9)))


# ================================================================ the runtime

class Runtime:
    """Runs stylize jobs; models stay loaded for the Runtime's lifetime (within the budget)."""

    def __init__(self, device: str = "auto", models_dir: Optional[str | os.PathLike] = None,
                 memory_budget: Optional[int] = None, style_cache_entries: int = 64,
                 threads: Optional[int] = None, fast: bool = True,
                 activation_budget: Optional[int | str] = None,
                 compile: Optional[bool] = None) -> None:
        self.device = select_device(device)
        # backend.perf: fast equivalent networks (fast=False or STYLE_TRANSFER_PLAIN=1: as
        # loaded) and tiled execution when a call would not fit `activation_budget` bytes
        from backend.perf import MemoryBudget, plain_requested
        from backend.perf.fast import compile_requested
        self.fast = bool(fast) and not plain_requested()
        # torch.compile of the networks (None: $STYLE_TRANSFER_COMPILE); see backend/perf/fast.py
        self.compile = self.fast and (compile if compile is not None else compile_requested())
        self.activation_budget = MemoryBudget.for_device(self.device, activation_budget)
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.memory_budget = memory_budget if memory_budget is not None \
            else default_memory_budget(self.device)
        self.style_cache = StyleCache(style_cache_entries)
        self.stats: dict[str, int] = {key: 0 for key in STATS_KEYS}
        self._models: "OrderedDict[str, LoadedModel]" = OrderedDict()
        self._lock = threading.RLock()       # the model cache
        self._run_lock = threading.Lock()    # one job at a time: engines set per-job modes
        self._rates = _Rates()                # what loading and computing took (progress)
        if self.device.type == "cpu":
            # every logical CPU: torch defaults to the physical cores, which left the second
            # hyper-thread idle
            wanted = threads or _available_cpus()
            if wanted and torch.get_num_threads() != wanted:
                torch.set_num_threads(wanted)

    # ------------------------------------------------------------------ models
    def resolve_model(self, engine: str, model: Optional[str] = None,
                      checkpoints: Optional[Mapping[str, str]] = None) -> ModelSource:
        """Files of the job's model: explicit checkpoint files bypass the model store."""
        roles = get_engine(engine).roles
        checkpoints = dict(checkpoints or {})
        if not roles:                      # an engine that is maths only: no files to find
            registry.refuse_model(engine, model, checkpoints)
            return ModelSource(engine, "", {}, {})
        if checkpoints:
            unknown = sorted(set(checkpoints) - set(roles))
            if unknown:
                raise StyleTransferError(
                    BAD_REQUEST, f"Unknown checkpoint role(s) {', '.join(unknown)} for {engine}; "
                                 f"its roles are {', '.join(roles)}.")
            paths = {role: os.fspath(path) for role, path in checkpoints.items()}
            card = registry.card(engine)
            for role in [r for r in card.roles if r.name not in paths and r.shared_from]:
                # e.g. a user's AdaIN decoder with the official VGG encoder
                paths[role.name] = str(self._store_model(engine, role.shared_from)
                                       .paths[role.name])
            missing = [role for role in roles if role not in paths]
            if missing:
                raise StyleTransferError(
                    BAD_REQUEST, f"{engine} needs checkpoint file(s) for {', '.join(roles)}; "
                                 f"missing {', '.join(missing)} (e.g. --checkpoint "
                                 f"{missing[0]}=PATH).")
            name = "file:" + "+".join(Path(paths[r]).name for r in roles)
            return ModelSource(engine, name, paths, {role: None for role in roles})
        from backend.modelstore.choice import model_for
        info = model_for(engine, model, self.models_dir)
        declared = {f.role: f.arch for f in getattr(info, "files", ())}
        # the model's own `arch` names its main file's layout (AdaIN's "adain" names a family)
        main = registry.card(engine).main_role
        own_arch = info.arch if info.arch in main.arch_names else None
        archs = {role: declared.get(role) or (own_arch if role == main.name else None)
                 for role in roles}
        paths = {role: str(info.paths[role]) for role in roles if role in info.paths}
        if len(paths) != len(roles):
            raise StyleTransferError(
                BAD_REQUEST, f"Model {info.name!r} lacks file(s) for "
                             f"{', '.join(r for r in roles if r not in paths)}.")
        return ModelSource(engine, info.name, paths, archs)

    def _store_model(self, engine: str, name: Optional[str] = None) -> Any:
        from backend import modelstore  # lazy: the store imports no torch, but is not needed
        if name:
            return modelstore.get_model(name, models_dir=self.models_dir)
        return modelstore.default_model(engine, models_dir=self.models_dir)

    def load_model(self, engine: str, model: Optional[str] = None,
                   checkpoints: Optional[Mapping[str, str]] = None) -> LoadedModel:
        """The loaded model (from the cache when it is there and its files are unchanged)."""
        source = self.resolve_model(engine, model, checkpoints)
        key = source.key
        if not source.paths:
            # no model (no roles): nothing to load, size or cache; the engine's `load` says
            # what it needs, if anything, for this device
            return LoadedModel(key=key, engine=engine, name="", arch=engine,
                               model=get_engine(engine).load({}, self.device, {}), nbytes=0,
                               paths={}, loaded_at=time.time())
        with self._lock:
            cached = self._models.get(key)
            if cached is not None:
                self._models.move_to_end(key)
                self.stats["model_cache_hits"] += 1
                return cached
            engine_impl = get_engine(engine)
            try:
                loaded_model = engine_impl.load({r: Path(p) for r, p in source.paths.items()},
                                                self.device, source.archs)
                from backend.perf import prepare
                prepare(loaded_model, engine, self.device, self.fast, self.activation_budget,
                        compile=self.compile)
                if engine_impl.shape_passes(loaded_model):
                    warm_meta()       # the shape passes' first-use cost belongs to loading
            except torch.OutOfMemoryError:
                self._evict(keep=None, budget=0)
                raise StyleTransferError(TOO_LARGE, f"Not enough {self.device.type} memory to "
                                                    f"load {source.name}.") from None
            loaded = LoadedModel(
                key=key, engine=engine, name=source.name,
                arch=str(getattr(loaded_model, "arch", engine)), model=loaded_model,
                nbytes=engine_impl.model_bytes(loaded_model), paths=dict(source.paths),
                loaded_at=time.time())
            # the same files changed on disk: the old version's entry goes
            for old_key in [k for k, m in self._models.items()
                            if m.engine == engine and m.paths == source.paths]:
                del self._models[old_key]
            self._models[key] = loaded
            self.stats["model_loads"] += 1
            self._evict(keep=key, budget=self.memory_budget)
            return loaded

    def _load_share(self, source: ModelSource, pixels: int) -> float:
        """The share of the progress bar the model's loading gets: 0 when it is loaded, else its
        expected seconds over the job's (measured in this Runtime when it can be)."""
        with self._lock:
            if source.key in self._models or not source.paths:
                return 0.0
        return self._rates.load_share(source, pixels)

    def _evict(self, keep: Optional[str], budget: int) -> None:
        """Drop least recently used models until the total fits the budget."""
        while sum(m.nbytes for m in self._models.values()) > budget:
            victim = next((k for k in self._models if k != keep), None)
            if victim is None:
                break
            del self._models[victim]
            self.stats["model_evictions"] += 1
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ jobs
    def stylize(self, job: StylizeJob, progress: ProgressFn = no_progress,
                cancelled: CancelledFn = never_cancelled,
                intermediate: Optional[IntermediateFn] = None) -> np.ndarray:
        """Run one job; returns pixels of the content's shape, channel count and dtype (a grey
        content with the color_output option gets 3 colour channels, + alpha if it had one).
        `intermediate(pixels, text)` gets the image so far in the same layout, from engines
        whose card has an intermediate option (every that option's N steps)."""
        progress = progress or no_progress
        cancelled = cancelled or never_cancelled
        job = checked_job(job)                 # a CheckedJob (the daemon's) is not re-checked
        engine = get_engine(job.engine)
        options = job.options
        content = job.content
        height, width = content.shape[:2]
        if cancelled():
            raise Cancelled()
        progress = Monotonic(progress)
        progress(0.0, "loading model")
        source = self.resolve_model(job.engine, job.model, job.checkpoints)
        start = self._load_share(source, height * width)
        load_started = time.monotonic()
        loaded = self.load_model(job.engine, job.model, job.checkpoints)
        if start:
            self._rates.loaded(source, time.monotonic() - load_started)
        if cancelled():
            raise Cancelled()
        rgb, alpha = to_float_rgb(content)
        compute_started = time.monotonic()
        colour = bool(options.get("color_output"))
        # the photorealistic smoothing after the network (cards with photo_radius) gets its
        # measured share of the bar
        end = start + (END_OF_ENGINE - start) * (
            1.0 - self._rates.smoothing_share(loaded.key)
            if smoothing.wanted(options) else 1.0)
        ctx = EngineContext(
            device=self.device,
            progress=lambda frac, text: progress(start + (end - start) * frac, text),
            cancelled=cancelled, style_cache=self.style_cache, model_key=loaded.key,
            stats=self.stats, budget=self.activation_budget,
            intermediate=None if intermediate is None or not engine.card.intermediate_option
            else lambda so_far, text: intermediate(
                from_float_rgb(so_far, content, alpha, colour), text))
        try:
            with self._run_lock, torch.inference_mode():
                out = engine.stylize(loaded.model, rgb, job, options, ctx)
                network_s = time.monotonic() - compute_started
                if out.shape == (height, width, 3) and smoothing.wanted(options):
                    out = self._smooth(rgb, out, options, ctx,
                                       lambda frac: progress(end + (END_OF_ENGINE - end) * frac,
                                                             "photorealistic smoothing"))
        except torch.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise StyleTransferError(
                TOO_LARGE, f"Not enough {self.device.type} memory for a {width}x{height} image; "
                           "set a smaller working_size.") from None
        if out.shape != (height, width, 3):
            raise StyleTransferError(BAD_REQUEST, f"The {job.engine} engine returned shape "
                                                  f"{out.shape} for a {width}x{height} image.")
        if cancelled():
            raise Cancelled()
        self._rates.computed(loaded.key, height * width, network_s)
        result = from_float_rgb(out, content, alpha, bool(options.get("color_output")))
        self.stats["runs"] += 1
        progress(1.0, "done")
        return result

    def estimate(self, engine: str, shape: tuple[int, int], styles: int = 1, mask: bool = False,
                 options: Optional[Mapping[str, Any]] = None, model: Optional[str] = None,
                 checkpoints: Optional[Mapping[str, str]] = None,
                 progress: ProgressFn = no_progress,
                 cancelled: CancelledFn = never_cancelled) -> Any:
        """How long `stylize` would take for a content of `shape` (H, W): a
        stclient.estimate.Estimate, from engines whose card `estimates` (bad_request for the
        others)."""
        implementation = get_engine(engine)
        if not implementation.card.estimates:
            raise StyleTransferError(BAD_REQUEST, f"The {implementation.card.title} engine "
                                                  "gives no run-time estimate.")
        resolved = resolve_options(engine, dict(options or {}))
        registry.check_inputs(engine, styles, mask, resolved)
        loaded = self.load_model(engine, model, checkpoints)
        ctx = EngineContext(device=self.device, progress=progress or no_progress,
                            cancelled=cancelled or never_cancelled, model_key=loaded.key,
                            stats=self.stats, budget=self.activation_budget)
        with self._run_lock, torch.inference_mode():
            return implementation.estimate(loaded.model, tuple(shape), styles, mask, resolved,
                                           ctx)

    def _smooth(self, rgb: np.ndarray, out: np.ndarray, options: dict[str, Any],
                ctx: EngineContext, report: Any) -> np.ndarray:
        """The shared post-processing step (backend/engines/smoothing.py), timed for the
        progress split of later jobs; cancellable between its strips."""
        ctx.step(1.0, "photorealistic smoothing")
        started = time.monotonic()

        def strip(fraction: float) -> None:
            ctx.check_cancelled()
            report(fraction)

        result = smoothing.smooth(rgb, out, options, self.device, strip)
        self._rates.smoothed(rgb.shape[0] * rgb.shape[1], time.monotonic() - started)
        return result

    def sample(self, model: Optional[str] = None, count: int = 1, seed: int = 0,
               options: Optional[Mapping[str, Any]] = None, progress: ProgressFn = no_progress,
               cancelled: CancelledFn = never_cancelled,
               checkpoints: Optional[Mapping[str, str]] = None,
               engine: Optional[str] = None) -> list[np.ndarray]:
        """`count` new images (H x W x 3 uint8) from the prior of `model`, seeded; for engines
        whose card can sample (`engine` None: the one that can)."""
        progress = progress or no_progress
        cancelled = cancelled or never_cancelled
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise StyleTransferError(BAD_REQUEST, f"'count' must be a positive whole number, "
                                                  f"not {count!r}.")
        name = registry.sampling_engine(engine)
        options = resolve_options(name, {**dict(options or {}), "seed": seed})
        implementation = get_engine(name)
        progress(0.0, "loading model")
        loaded = self.load_model(name, model, checkpoints)
        if cancelled():
            raise Cancelled()
        ctx = EngineContext(
            device=self.device, progress=lambda frac, text: progress(0.05 + 0.95 * frac, text),
            cancelled=cancelled, model_key=loaded.key, stats=self.stats)
        with torch.inference_mode():
            images = implementation.sample(loaded.model, count, options["seed"], options, ctx)
        self.stats["runs"] += 1
        return images

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        from backend.perf import native
        with self._lock:
            models = [{"engine": m.engine, "name": m.name, "arch": m.arch, "bytes": m.nbytes,
                       "files": dict(m.paths)} for m in self._models.values()]
        info: dict[str, Any] = {
            "device": str(self.device),
            "device_name": _device_name(self.device),
            "threads": torch.get_num_threads(),
            "compile": self.compile,
            "native_kernels": native.describe(self.device.type),
            "models": models,
            "model_bytes": sum(m["bytes"] for m in models),
            "memory_budget": self.memory_budget,
            "style_cache_entries": len(self.style_cache),
            "stats": dict(self.stats),
        }
        if self.device.type == "cuda":
            info["cuda_allocated"] = int(torch.cuda.memory_allocated(self.device))
            info["cuda_reserved"] = int(torch.cuda.memory_reserved(self.device))
        return info


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return cpu_name()


def cpu_name() -> str:
    """The CPU's model name (Linux), else what the platform module knows."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"
