"""`python -m backend status`: what the daemon is doing; exit 0 only when it answers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from stclient.errors import StyleTransferError
from stclient.status import DaemonStatus, format_status


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
    from backend.commands._daemon import NO_DAEMON_HINT, endpoint_of, surely_absent
    if surely_absent(args.endpoint):
        print(f"No daemon is running at {endpoint_of(args.endpoint)}; {NO_DAEMON_HINT}.",
              file=sys.stderr)
        return 1
    from stclient.client import Client
    client = Client(args.endpoint, timeout=args.timeout, autostart=False,
                    curve_keys=str(args.curve_keys) if args.curve_keys else None)
    try:
        status = client.status()
    except StyleTransferError as error:
        print(f"No daemon answers at {client.endpoint}: {error.message} {NO_DAEMON_HINT[0].upper()}"
              f"{NO_DAEMON_HINT[1:]}.", file=sys.stderr)
        return 1
    finally:
        client.close()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(format_status(DaemonStatus.from_json(status)))
    return 0
