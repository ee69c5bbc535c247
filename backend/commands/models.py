"""`python -m backend models`: list, install and verify models (the model store's front end).

    python -m backend models [--json] [--engine E] [--installed]
    python -m backend models install NAME[,NAME...]|recommended|all [--mirror URL_OR_DIR] [--force]
    python -m backend models verify [NAME ...] [--deep] [--json]

install.py runs the same `install` sub-command inside the project's virtual environment.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stclient import registry as engine_registry


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models", help="list, install and verify models",
        description="List the known models with their status; install or verify them.")
    _add_list_flags(parser, argparse.SUPPRESS)
    parser.set_defaults(func=run_list, json=False, engine=None, installed_only=False)
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")

    listing = sub.add_parser("list", help="list models (the default action)")
    _add_list_flags(listing, argparse.SUPPRESS)
    listing.set_defaults(func=run_list)

    install = sub.add_parser(
        "install", help="download, check and install models from the manifest",
        description="Download (resuming interrupted downloads), verify and install models. Every "
                    "file is checked (sha256 when known, then its structure) before it is moved "
                    "into place.")
    install.add_argument("names", nargs="+", metavar="NAME",
                         help="model names (comma or space separated), 'recommended' or 'all'")
    install.add_argument("--mirror", metavar="URL_OR_DIR",
                         help="take files from this folder or base URL instead of the official "
                              "hosts (looked up as NAME/FILE, the official URL path, or FILE)")
    install.add_argument("--force", action="store_true",
                         help="download again even if the files are already installed")
    install.add_argument("--retries", type=int, default=4, metavar="N",
                         help="attempts per file (each resumes the last one; default 4)")
    install.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                         help="give up on a silent connection after this long (default 30)")
    install.add_argument("--quiet", action="store_true", help="no progress bars")
    install.add_argument("--models-dir", type=Path, help=argparse.SUPPRESS)
    install.set_defaults(func=run_install)

    verify = sub.add_parser("verify", help="check installed model files structurally")
    verify.add_argument("names", nargs="*", metavar="NAME", help="models to check (default: all "
                                                                 "installed)")
    verify.add_argument("--deep", action="store_true",
                        help="re-read every file even if it passed before and is unchanged")
    verify.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    verify.set_defaults(func=run_verify)


def _add_list_flags(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("--json", action="store_true", default=default,
                        help="machine-readable output")
    parser.add_argument("--engine", choices=engine_registry.engine_names(),
                        default=default, help="only this engine's models")
    parser.add_argument("--installed", dest="installed_only", action="store_true",
                        default=default, help="only installed models")


def run_list(args: argparse.Namespace) -> int:
    from backend.modelstore import ModelRegistry, install_command

    registry = ModelRegistry()
    engines = None if args.engine is None else engine_registry.model_engines(args.engine)
    models = [m for m in registry.models
              if (engines is None or m.engine in engines)
              and (not args.installed_only or m.installed)]
    if args.json:
        json.dump({"models_dir": str(registry.models_dir),
                   "manifest": str(registry.manifest.path),
                   "models": [m.to_json() for m in models],
                   "problems": registry.problems}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    if args.engine is not None and not engine_registry.card(args.engine).takes_model:
        print(f"{engine_registry.card(args.engine).title} uses no model: nothing to install.")
        return 0
    rows = [("NAME", "ENGINE", "STATUS", "SOURCE", "DISPLAY NAME")]
    for m in models:
        also = [name for name in engine_registry.engine_names()
                if name != m.engine and m.engine in engine_registry.model_engines(name)]
        rows.append((m.name + (" *" if m.recommended else ""), m.engine,
                     "installed" if m.installed else "missing", m.source,
                     m.display_name + (f" (also runs {', '.join(also)})" if also else "")))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    installed = sum(m.installed for m in models)
    print(f"\n{installed} installed, {len(models) - installed} missing "
          f"(* = recommended). Models folder: {registry.models_dir}")
    missing_recommended = [m.name for m in models
                           if m.recommended and not m.installed
                           and m.source in ("manifest", "package")]
    if missing_recommended:
        print(f"Install the recommended ones: {install_command('recommended')}")
    print(f"Install any other: {install_command('NAME[,NAME...]')}  (or --models all)")
    for problem in registry.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def run_install(args: argparse.Namespace) -> int:
    from backend.modelstore import install_models
    from backend.modelstore.download import RetryPolicy

    names = [n for n in args.names]
    policy = RetryPolicy(attempts=max(1, args.retries), timeout=args.timeout)
    report = install_models(names, mirror=args.mirror, force=args.force,
                            models_dir=args.models_dir, policy=policy, progress=not args.quiet)
    summary = []
    if report.installed:
        summary.append(f"installed: {', '.join(report.installed)}")
    if report.present:
        summary.append(f"already installed: {', '.join(report.present)}")
    if report.failed:
        summary.append(f"FAILED: {', '.join(report.failed)}")
    print("; ".join(summary) or "nothing to do")
    if report.installed or report.present:
        from backend.commands.sheet import make_installed_sheets
        make_installed_sheets(report.installed + report.present,
                              log=lambda text: print(text, file=sys.stderr))
    if report.manual:
        print(report.manual_instructions(sorted({s.model for s in report.manual})),
              file=sys.stderr)
    return 0 if report.ok else 1


def run_verify(args: argparse.Namespace) -> int:
    from backend.modelstore import verify_models

    results = verify_models(args.names or None, deep=args.deep)
    if getattr(args, "json", False):
        json.dump([{"name": r.name, "ok": r.ok, "message": r.message} for r in results],
                  sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for result in results:
            print(f"{'ok  ' if result.ok else 'BAD '} {result.name}: {result.message}")
        if not results:
            print("no installed models to verify")
    return 0 if all(r.ok for r in results) else 1
