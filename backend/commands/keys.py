"""`python -m backend keys DIR [--client NAME ...]`: CurveZMQ keys for a daemon on the network.

DIR gets the server's key pair (server.key, server.key_secret) and clients/ with the public keys
the daemon admits (`serve --curve-keys DIR`). Each --client NAME also gets DIR/client-NAME/ with
the server's public key and that client's key pair: copy that folder to the client machine and
pass it as `curve_keys` (Client) or `--curve-keys` (status, stop).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keys", help="create CurveZMQ keys for a networked daemon",
                                   description=__doc__.split("\n\n", 1)[1])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--client", action="append", default=[], metavar="NAME",
                        help="also create a key pair for this client (repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import zmq.auth
    directory: Path = args.directory.expanduser().resolve()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / "clients").mkdir(mode=0o700, exist_ok=True)
    if not (directory / "server.key_secret").exists():
        zmq.auth.create_certificates(str(directory), "server")
        os.chmod(directory / "server.key_secret", 0o600)
        print(f"server keys: {directory / 'server.key_secret'}")
    for name in args.client:
        folder = directory / f"client-{name}"
        folder.mkdir(mode=0o700, exist_ok=True)
        public, secret = zmq.auth.create_certificates(str(folder), "client")
        os.chmod(secret, 0o600)
        shutil.copy(directory / "server.key", folder / "server.key")
        shutil.copy(public, directory / "clients" / f"{name}.key")
        print(f"client {name}: copy {folder} to the client machine")
    return 0
