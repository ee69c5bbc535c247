"""Who may talk to the daemon, and what a connection may do.

- An ipc:// socket directly inside the user's 0700 runtime dir ("private"): only that user can
  connect; no token.
- Every other local endpoint (tcp:// on loopback, an abstract ipc://@name, a socket in another
  folder): another local user could connect, so the token from the 0600 token file is the
  ZeroMQ PLAIN password, checked by a ZAP handler at the handshake, before the daemon receives
  a single message (and requests must still carry it as "token").
- Any other address (0.0.0.0, *, a LAN interface): refused unless CurveZMQ is configured with a
  server key pair and a folder of allowed client public keys (pyzmq's ThreadAuthenticator admits
  only those, also at the handshake); the token is still required.

Each message is attributed to a `Peer`: who it is (the owner, or one CURVE key) and whether it
comes from this machine (only local peers may name files; see paths.py in this package).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import zmq

from stclient import paths
from stclient.errors import BAD_REQUEST, UNAUTHORIZED, StyleTransferError

SERVER_SECRET_FILE = "server.key_secret"
CLIENTS_DIR = "clients"
PLAIN_USER = paths.PLAIN_USER        # the PLAIN user name; the password is the token
ZAP_DOMAIN = b"style-transfer"
HANDSHAKE_MS = 5000                  # a peer must finish authenticating within this
OWNER = "owner"                      # principal of private and token connections

# How the ROUTER authenticates, from the endpoint and the flags.
PRIVATE = "private"                  # ipc in the runtime dir: the file system decides
TOKEN = "token"                      # PLAIN, password = token
CURVE = "curve"                      # CURVE keys (+ the token in requests)


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


def auth_mode(endpoint: str, runtime_dir: Path, curve: Optional[CurveKeys]) -> str:
    if curve is not None:
        return CURVE
    return PRIVATE if paths.is_private_endpoint(endpoint, runtime_dir) else TOKEN


def _token_authenticator_class():
    from zmq.auth.thread import ThreadAuthenticator

    class TokenAuthenticator(ThreadAuthenticator):
        """pyzmq's ZAP thread with a constant-time PLAIN check that never logs the password."""

        token: bytes = b""

        def _authenticate_plain(self, domain: str, username: str,
                                password: str) -> tuple[bool, bytes]:
            ok = username == PLAIN_USER and hmac.compare_digest(
                password.encode("utf-8", "replace"), self.token)
            return ok, b"OK" if ok else b"Wrong token"

    return TokenAuthenticator


def start_authenticator(context: zmq.Context, curve: Optional[CurveKeys],
                        token: Optional[str] = None):
    """Start a ZAP handler: CURVE admits only the allowed client public keys; without CURVE,
    PLAIN admits only the user name PLAIN_USER with the token as password."""
    if curve is not None:
        from zmq.auth.thread import ThreadAuthenticator
        auth = ThreadAuthenticator(context)
        auth.start()
        auth.configure_curve(domain=ZAP_DOMAIN.decode(), location=str(curve.clients_dir))
        return auth
    if not token:
        raise StyleTransferError(UNAUTHORIZED, "A daemon on a shared endpoint needs a token.")
    auth = _token_authenticator_class()(context)
    auth.token = token.encode("utf-8")
    auth.start()
    auth.configure_plain(domain=ZAP_DOMAIN.decode(), passwords={PLAIN_USER: ""})  # see above
    return auth


def apply_server_auth(socket: zmq.Socket, mode: str, curve: Optional[CurveKeys]) -> None:
    """Authenticate every connection at the handshake (ZAP required: no handler, no entry)."""
    socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
    if mode == PRIVATE:
        return
    socket.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
    if hasattr(zmq, "ZAP_ENFORCE_DOMAIN"):
        socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    if mode == CURVE:
        assert curve is not None
        socket.curve_secretkey = curve.secret
        socket.curve_publickey = curve.public
        socket.curve_server = True
    else:
        socket.plain_server = True


@dataclass(frozen=True)
class Peer:
    """Who sent a message: `principal` owns jobs (OWNER or "curve:<key>"), `local` may name
    files on this machine."""

    principal: str
    local: bool


def peer_of(frame: zmq.Frame, mode: str) -> Peer:
    """The Peer of a received frame, from the properties ZAP and libzmq attach to it."""
    if mode != CURVE:
        return Peer(OWNER, True)
    try:
        user = frame.get("User-Id") or ""
        address = frame.get("Peer-Address") or ""
    except (zmq.ZMQError, AttributeError, KeyError):
        user, address = "", ""
    return Peer(f"curve:{user}", _is_loopback(address))


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_private(socket: zmq.Socket, endpoint: str) -> None:
    """Bind; an ipc socket file is created 0600 whatever the umask (then chmod, to be sure)."""
    path = endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else ""
    if not path or path.startswith("@"):
        socket.bind(endpoint)
        return
    previous = os.umask(0o177)
    try:
        socket.bind(endpoint)
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)


def token_ok(expected: Optional[str], given: Optional[str]) -> bool:
    """Constant-time token check; no expected token (ipc) admits everyone who can connect."""
    if expected is None:
        return True
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode("utf-8", "replace"),
                               given.encode("utf-8", "replace"))
