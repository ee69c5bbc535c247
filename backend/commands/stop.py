"""`python -m backend stop`: cancel the current job and shut the daemon down cleanly."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from stclient import paths
from stclient.errors import StyleTransferError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stop", help="stop the daemon (its current job is cancelled)",
        description="Ask the daemon to cancel its work and exit, and wait until it has. Batch "
                    "outputs are written atomically, so nothing is left half-written.")
    parser.add_argument("--endpoint", help="daemon endpoint (default: the running one)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the daemon to exit")
    parser.add_argument("--curve-keys", type=Path,
                        help="folder with server.key and client.key_secret (remote daemons)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.commands._daemon import endpoint_of, surely_absent
    if surely_absent(args.endpoint):
        print(f"No daemon is running at {endpoint_of(args.endpoint)}: nothing to stop.")
        return 0
    from stclient.client import Client
    client = Client(args.endpoint, timeout=min(args.timeout, 10.0), autostart=False,
                    curve_keys=str(args.curve_keys) if args.curve_keys else None)
    try:
        reply = client.shutdown()
    except StyleTransferError as error:
        print(f"No daemon is running at {client.endpoint} ({error.message}).")
        return 0
    finally:
        client.close()
    pid = reply.get("pid")
    deadline = time.monotonic() + args.timeout
    while paths.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if paths.pid_alive(pid):
        print(f"error: the daemon (pid {pid}) is still running after {args.timeout:g} s.",
              file=sys.stderr)
        return 1
    print(f"daemon stopped (pid {pid}).")
    return 0

