"""Host memory for the layer-by-layer runner: RAM while it fits, disk-backed pages beyond.

The layer-by-layer path (tiling.py) keeps every layer's whole output on the host. On a CUDA
machine that is the host's RAM next to the card's memory; on a CPU-only machine it is the same
RAM the convolution tiles use, and a 8192² CycleGAN layer alone is 16 GiB. So the runner asks
this arena for its full-size tensors: while the live ones fit the host budget they are ordinary
tensors; beyond it they are memory-mapped from an unlinked temporary file (shared mapping), so
the kernel can write their pages back to disk and drop them instead of running out of memory.
The arithmetic is unchanged: results are bit-identical, only slower when pages go to disk.

$STYLE_TRANSFER_SPILL_DIR picks the folder (default: the system temp folder; it must be on a
disk, not a tmpfs, to help). Not enough free space there is a clear MemoryError, before any
work is lost.
"""

from __future__ import annotations

import math
import os
import tempfile
import weakref
from dataclasses import dataclass, field

import torch

from stclient import settings

SPILL_ENV = settings.ENV["spill_dir"]


def spill_dir() -> str:
    return settings.current().spill_dir or tempfile.gettempdir()


@dataclass
class HostArenaStats:
    """What one layer-by-layer call allocated (read by tests and the benchmark)."""

    resident_peak: int = 0        # bytes of live RAM-backed tensors at most
    spilled: int = 0              # bytes allocated disk-backed in all
    spilled_tensors: int = 0


@dataclass
class HostArena:
    """Allocates full-size host tensors within `budget` bytes of RAM; the rest disk-backed."""

    budget: int
    directory: str = field(default_factory=spill_dir)
    stats: HostArenaStats = field(default_factory=HostArenaStats)
    resident: int = 0

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32,
              channels_last: bool = False) -> torch.Tensor:
        """`channels_last`: a 4-D N,C,H,W tensor laid out N,H,W,C (the layout of the network's
        own activations, so tiles go in and out without transposing copies)."""
        channels_last = channels_last and len(shape) == 4
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if self.resident + nbytes <= self.budget:
            tensor = torch.empty(shape, dtype=dtype, memory_format=torch.channels_last
                                 if channels_last else torch.contiguous_format)
            self.resident += nbytes
            self.stats.resident_peak = max(self.stats.resident_peak, self.resident)
            weakref.finalize(tensor, self._release, nbytes)
            return tensor
        if channels_last:
            n, c, h, w = shape
            return self._disk_backed((n, h, w, c), dtype, count, nbytes).permute(0, 3, 1, 2)
        return self._disk_backed(shape, dtype, count, nbytes)

    def empty_like(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.empty(tuple(tensor.shape), tensor.dtype, is_channels_last(tensor))

    def copy(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.empty_like(tensor).copy_(tensor)

    def _release(self, nbytes: int) -> None:
        self.resident -= nbytes

    def _disk_backed(self, shape: tuple[int, ...], dtype: torch.dtype, count: int,
                     nbytes: int) -> torch.Tensor:
        os.makedirs(self.directory, exist_ok=True)
        free = _free_bytes(self.directory)
        if free is not None and free < nbytes:
            raise MemoryError(
                f"image too large for this machine: a layer needs {nbytes / 2**30:.1f} GiB, "
                f"more than the memory budget allows and more than the "
                f"{free / 2**30:.1f} GiB free in {self.directory} (set ${SPILL_ENV} to a "
                f"folder on a larger disk, or use a smaller image)")
        handle, path = tempfile.mkstemp(prefix="style-transfer-spill-", dir=self.directory)
        try:
            os.ftruncate(handle, nbytes)        # sparse: blocks are taken as pages are written
            flat = torch.from_file(path, shared=True, size=count, dtype=dtype)
        finally:
            os.close(handle)
            os.unlink(path)                     # the mapping lives on; the name is gone
        self.stats.spilled += nbytes
        self.stats.spilled_tensors += 1
        return flat.view(shape)


def is_channels_last(tensor: torch.Tensor) -> bool:
    return tensor.dim() == 4 and not tensor.is_contiguous() \
        and tensor.is_contiguous(memory_format=torch.channels_last)


def _free_bytes(directory: str) -> int | None:
    try:
        info = os.statvfs(directory)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize
