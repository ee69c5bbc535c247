"""Is a daemon running? Answered fast, without starting one: `stylize` uses a running daemon and
computes here otherwise; `status` and `stop` answer "none" in well under a second.

A local daemon leaves a state file with its pid and an ipc socket in the runtime directory: when
the pid is gone or the socket is missing nothing can answer, and no timeout needs to pass. A TCP
endpoint with nothing listening refuses the connection at once.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Optional
from urllib.parse import urlsplit

from stclient import paths

PROBE_TIMEOUT = 0.5        # seconds for a TCP connect to a named endpoint
PING_TIMEOUT = 3.0         # a daemon that is there answers `status` in milliseconds


def endpoint_of(endpoint: Optional[str]) -> str:
    return paths.resolve_endpoint(endpoint or None)


def surely_absent(endpoint: Optional[str] = None) -> bool:
    """True when no daemon can be listening at `endpoint` (default: this user's daemon)."""
    target = endpoint_of(endpoint)
    if target.startswith("ipc://") and hasattr(socket, "AF_UNIX"):
        path = target[len("ipc://"):]
        if not os.path.exists(path):
            return True
        return _refused(socket.AF_UNIX, path)        # a socket file left by a killed daemon
    if target.startswith("tcp://"):
        parts = urlsplit(target)
        return _refused(socket.AF_INET6 if ":" in (parts.hostname or "") else socket.AF_INET,
                        (parts.hostname or "127.0.0.1", parts.port or paths.DEFAULT_TCP_PORT))
    return False


def _refused(family: int, address: Any) -> bool:
    """True when nothing listens at `address` (connection refused, no such host...)."""
    probe = socket.socket(family, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(address)
        return False
    except socket.timeout:
        return False                 # something is there, only slow: let the client decide
    except OSError:
        return True
    finally:
        probe.close()


def running_daemon(endpoint: Optional[str] = None, timeout: float = 30.0) -> Optional[Any]:
    """A Client of the daemon at `endpoint` when one answers, else None. Never starts one."""
    if surely_absent(endpoint):
        return None
    from stclient.client import Client
    client = Client(endpoint or None, timeout=timeout, autostart=False)
    if client.ping(PING_TIMEOUT):
        return client
    client.close()
    return None


NO_DAEMON_HINT = "start one with `python -m backend serve` (GIMP's filters start it themselves)"
