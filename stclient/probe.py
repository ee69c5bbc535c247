"""Can a daemon be listening at an endpoint? Answered at once, without a request: a missing ipc
socket file, or a socket (ipc or TCP) that refuses the connection, means nobody is there, so no
client has to wait for a timeout to say "not running". Standard library only (the plug-in and
the CLI both ask). A daemon that is there, busy or slow, is never reported absent."""

from __future__ import annotations

import os
import socket
from typing import Any, Optional
from urllib.parse import urlsplit

from . import paths

PROBE_TIMEOUT = 0.5        # seconds for a connect to answer


def surely_absent(endpoint: Optional[str] = None) -> bool:
    """True when no daemon can be listening at `endpoint` (default: this user's daemon)."""
    target = paths.resolve_endpoint(endpoint or None)
    if target.startswith("ipc://") and hasattr(socket, "AF_UNIX"):
        path = target[len("ipc://"):]
        if not os.path.exists(path):
            return True
        return _refused(socket.AF_UNIX, path)        # a socket file left by a killed daemon
    if target.startswith("tcp://"):
        parts = urlsplit(target)
        host = parts.hostname or "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return _refused(family, (host, parts.port or paths.DEFAULT_TCP_PORT))
    return False


def _refused(family: int, address: Any) -> bool:
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
