"""`python -m backend kernels`: build or check the native CPU kernels (backend/perf/native.py).

    python -m backend kernels build [NAME ...]     compile now unless built (install.py runs this)
    python -m backend kernels check [NAME ...]     built or not, and why not

Without a build the toolkit works the same, on PyTorch's own convolutions; the first model
load then starts the build in the background.
"""

from __future__ import annotations

import argparse
import sys
import time


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "kernels", help="build or check the native CPU kernels (fast convolutions)",
        description="Build (compile with this machine's C++ compiler) or check the native CPU "
                    "kernels. They make 3x3 convolutions on the CPU about 2-3x faster.")
    parser.add_argument("action", choices=("build", "check"))
    parser.add_argument("names", nargs="*", metavar="NAME", help="kernels (default: all)")
    parser.add_argument("--force", action="store_true",
                        help="build again even if this machine's library exists")
    parser.add_argument("--lock", action="store_true",
                        help=argparse.SUPPRESS)     # the background builder's own flag
    parser.set_defaults(func=run)


def run(args) -> int:
    from backend.perf import native
    names = args.names or sorted(native.SOURCES)
    unknown = [name for name in names if name not in native.SOURCES]
    if unknown:
        print(f"error: unknown kernel(s) {', '.join(unknown)} "
              f"(known: {', '.join(sorted(native.SOURCES))})", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        files = native.KernelFiles.of(name)
        if args.action == "check":
            built = files.library.exists()
            print(f"{name}: {'built' if built else 'not built'} ({files.library})")
            if not native.enabled():
                print(f"  switched off by ${native.NATIVE_ENV}=0")
            if files.failure.exists():
                print("  last build failed: "
                      + files.failure.read_text(errors="replace").strip()[-800:])
            status |= 0 if built else 1
            continue
        if files.library.exists() and not args.force:
            print(f"{name}: already built ({files.library})")
            continue
        if args.lock and not native.take_build_lock(files):
            print(f"{name}: another build is running ({files.lock})")
            continue
        started = time.monotonic()
        try:
            path = native.build(name)
            print(f"{name}: built in {time.monotonic() - started:.0f} s: {path}")
        except RuntimeError as error:
            print(f"{name}: {str(error)[-1500:]}", file=sys.stderr)
            if "missing" in str(error):
                print("  Install those, then run `python -m backend kernels build` again; "
                      "everything works without the kernels, only slower on the CPU.",
                      file=sys.stderr)
            status = 1
        finally:
            if args.lock:
                files.lock.unlink(missing_ok=True)
    return status

