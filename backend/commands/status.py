"""`python -m backend status`: what the daemon is doing; exit 0 only when it answers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stclient.errors import StyleTransferError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="show the daemon's state (exit 1 when none answers)",
        description="Print the daemon's version, device, loaded models, memory, queue and "
                    "running job. Never starts a daemon.")
    parser.add_argument("--endpoint", help="daemon endpoint (default: the running one)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON status")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for it")
    parser.add_argument("--curve-keys", type=Path,
                        help="folder with server.key and client.key_secret (remote daemons)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stclient.client import Client
    client = Client(args.endpoint, timeout=args.timeout, autostart=False,
                    curve_keys=str(args.curve_keys) if args.curve_keys else None)
    try:
        status = client.status()
    except StyleTransferError as error:
        print(f"No daemon answers at {client.endpoint}: {error.message}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(format_status(status))
    return 0


def format_status(status: dict[str, Any]) -> str:
    runtime = status.get("runtime") or {}
    lines = [
        f"daemon     {status.get('version')} (protocol {status.get('protocol')}), "
        f"pid {status.get('pid')}, up {status.get('uptime_s')} s",
        f"endpoint   {status.get('endpoint')}",
        f"device     {status.get('device')}" + ("" if status.get("ready") else " (starting)"),
        f"memory     {_mib(status.get('rss_bytes'))} resident",
    ]
    models = runtime.get("models") or []
    loaded = ", ".join(f"{m.get('name')} ({m.get('engine')}, {_mib(m.get('bytes'))})"
                       for m in models if isinstance(m, dict))
    lines.append(f"models     {loaded or 'none loaded yet'}")
    for key in ("device_name", "threads", "compile", "native_kernels", "memory_budget",
                "style_cache_entries",
                "cuda_allocated", "cuda_reserved"):
        if key in runtime:
            value = runtime[key]
            shown = _mib(value) if key in ("memory_budget", "cuda_allocated",
                                           "cuda_reserved") else value
            lines.append(f"runtime    {key.replace('_', ' ')}: {shown}")
    running = status.get("running")
    if running:
        lines.append(f"running    {running.get('op')} {running.get('id')} "
                     f"{running.get('engine', '')} {running.get('model', '')} "
                     f"{100 * float(running.get('fraction', 0)):.0f}% {running.get('text', '')}")
    else:
        lines.append("running    nothing")
    queue = status.get("queue") or []
    lines.append(f"queue      {len(queue)} job(s)")
    for job in queue:
        lines.append(f"           {job.get('op')} {job.get('id')} ({job.get('priority')}, "
                     f"waiting {job.get('waiting_s')} s)")
    lines.append(f"jobs done  {status.get('jobs_done')}")
    return "\n".join(lines)


def _mib(value: Any) -> str:
    return f"{value / 2**20:.0f} MiB" if isinstance(value, (int, float)) else "?"
