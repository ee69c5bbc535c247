"""Is a daemon running? Answered fast, without starting one: `stylize` uses a running daemon and
computes here otherwise; `status` and `stop` answer "none" in well under a second (the quick
"nobody listens there" test is stclient.probe, shared with the plug-in).
"""

from __future__ import annotations

from typing import Any, Optional

from stclient import paths
from stclient.probe import surely_absent

PING_TIMEOUT = 3.0         # a daemon that is there answers `status` in milliseconds


def endpoint_of(endpoint: Optional[str]) -> str:
    return paths.resolve_endpoint(endpoint or None)


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
