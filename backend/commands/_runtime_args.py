"""Command-line flags that configure the Runtime a command runs (or the daemon it starts), defined
once for `serve`, `stylize` and `batch`."""

from __future__ import annotations

import argparse

from stclient import settings

PRECISIONS = ("default", "fast")


def add_compile_argument(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """--compile: torch.compile the networks (None when absent: $STYLE_TRANSFER_COMPILE decides,
    read by backend.perf.fast; not imported here so that --help needs no torch). `scope`
    prefixes the help, e.g. "with --in-process: "."""
    parser.add_argument(
        "--compile", action="store_true", default=None,
        help=f"{scope}torch.compile the networks (same as STYLE_TRANSFER_COMPILE=1): for CUDA, "
             "or a CPU where the native kernels cannot be built; on the CPU the default path "
             "with the native kernels is faster. The first image per model waits ~30-70 s for "
             "the compiler")


def add_precision_argument(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """--precision default|fast (None when absent: $STYLE_TRANSFER_PRECISION decides)."""
    parser.add_argument(
        "--precision", choices=PRECISIONS, default=None,
        help=f"{scope}'fast': bfloat16 convolutions (AMX / AVX512-BF16 CPUs; CUDA autocast) "
             "with normalisation statistics and accumulation in float32, for previews; results "
             "differ from the default float32 ones by a few 8-bit levels (same as "
             "STYLE_TRANSFER_PRECISION=fast)")


def apply_precision(args: argparse.Namespace) -> None:
    """Make --precision this process's setting (and that of the daemon it starts)."""
    chosen = getattr(args, "precision", None)
    if chosen is not None:
        settings.override(precision="fast" if chosen == "fast" else "fp32")
