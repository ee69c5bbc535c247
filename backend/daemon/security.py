"""Who may talk to the daemon.

- ipc:// endpoints live in the user's 0700 runtime dir: only that user can connect.
- tcp:// on a loopback address: any local user could connect, so every request must carry the
  per-user token from the 0600 token file.
- Any other address (0.0.0.0, *, a LAN interface): refused unless CurveZMQ is configured with a
  server key pair and a folder of allowed client public keys (pyzmq's ThreadAuthenticator admits
  only those); the token is still required.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import zmq

from stclient.errors import BAD_REQUEST, UNAUTHORIZED, StyleTransferError

SERVER_SECRET_FILE = "server.key_secret"
CLIENTS_DIR = "clients"


def endpoint_host(endpoint: str) -> Optional[str]:
    """The host part of a tcp:// endpoint (None for ipc/inproc)."""
    if not endpoint.startswith("tcp://"):
        return None
    rest = endpoint[len("tcp://"):]
    if ";" in rest:               # source;destination syntax: the bind address is what counts
        rest = rest.split(";", 1)[1]
    if rest.startswith("["):
        return rest[1:rest.find("]")] if "]" in rest else rest
    return rest.rsplit(":", 1)[0]


def check_endpoint_syntax(endpoint: str) -> None:
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        return
    if endpoint.startswith("tcp://"):
        rest = endpoint[len("tcp://"):]
        port = rest.rsplit(":", 1)[-1] if ":" in rest else ""
        if port == "*" or (port.isdigit() and 0 < int(port) < 65536):
            return
    raise StyleTransferError(BAD_REQUEST, f"Endpoint {endpoint!r} is not ipc://PATH or "
                                          "tcp://HOST:PORT.")


def is_local_endpoint(endpoint: str) -> bool:
    """ipc, or tcp bound to a loopback address. Names other than localhost count as remote."""
    host = endpoint_host(endpoint)
    if host is None:
        return endpoint.startswith(("ipc://", "inproc://"))
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class CurveKeys:
    """Server key pair + the folder of allowed client public keys (zmq.auth certificate files)."""

    public: bytes
    secret: bytes
    clients_dir: Path

    @classmethod
    def load(cls, directory: Path) -> "CurveKeys":
        import zmq.auth
        secret_file = directory / SERVER_SECRET_FILE
        clients = directory / CLIENTS_DIR
        try:
            public, secret = zmq.auth.load_certificate(str(secret_file))
        except (OSError, ValueError) as error:
            raise StyleTransferError(BAD_REQUEST, f"Cannot read the CURVE server key "
                                                  f"{secret_file} ({error}); create keys with "
                                                  "`python -m backend keys DIR`.") from None
        if not secret:
            raise StyleTransferError(BAD_REQUEST, f"{secret_file} holds no secret key.")
        if not clients.is_dir() or not any(clients.glob("*.key")):
            raise StyleTransferError(BAD_REQUEST, f"No allowed client keys: put the clients' "
                                                  f"public *.key files in {clients}.")
        return cls(public, secret, clients)


def check_bind_allowed(endpoint: str, curve: Optional[CurveKeys]) -> None:
    check_endpoint_syntax(endpoint)
    if not is_local_endpoint(endpoint) and curve is None:
        raise StyleTransferError(
            UNAUTHORIZED, f"Refusing to listen on {endpoint}: it is reachable from other "
                          "machines. Bind 127.0.0.1 or ipc://, or give --curve-keys DIR with a "
                          "server key pair and the allowed client keys.")


def start_authenticator(context: zmq.Context, curve: CurveKeys):
    """Start pyzmq's ZAP handler admitting only the allowed client public keys."""
    from zmq.auth.thread import ThreadAuthenticator
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(curve.clients_dir))
    return auth


def apply_curve_server(socket: zmq.Socket, curve: CurveKeys) -> None:
    socket.curve_secretkey = curve.secret
    socket.curve_publickey = curve.public
    socket.curve_server = True


def token_ok(expected: Optional[str], given: Optional[str]) -> bool:
    """Constant-time token check; no expected token (ipc) admits everyone who can connect."""
    if expected is None:
        return True
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode("utf-8", "replace"),
                               given.encode("utf-8", "replace"))
