"""Another local user, for tests of what a second account on the same machine can do.

    user = other_user()                 # (uid, gid) of a dedicated test account; skips unless root
    result = run_as(user, BODY, **values)   # runs BODY (Python) as that user; its stdout JSON
    process = start_as(user, BODY, **values)    # the same in the background

The child starts as root, imports what the body needs (the interpreter and the virtualenv may
live where the other user cannot read), then drops to the other uid/gid before running the body,
so everything the body does on the machine (connect, create files) it does as the other user.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from backend import PROJECT_ROOT

USER_NAME = "st-hardening-other"

PRELUDE = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {root!r})
    import zmq, zmq.auth, zmq.utils.monitor
    import backend
    from stclient import paths, protocol
    from stclient.protocol import decode_reply
    values = json.loads({values!r})
    os.setgroups([])
    os.setgid({gid})
    os.setuid({uid})
    os.umask(0o022)
    os.chdir("/tmp")
""")


def other_user() -> tuple[int, int]:
    """The test account's (uid, gid), created once; the test is skipped when we are not root."""
    if not hasattr(os, "getuid") or os.getuid() != 0:
        pytest.skip("simulating another local user needs root")
    try:
        entry = pwd.getpwnam(USER_NAME)
    except KeyError:
        created = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                                  "/usr/sbin/nologin", USER_NAME], capture_output=True, text=True)
        if created.returncode != 0:
            pytest.skip(f"cannot create a test user: {created.stderr.strip()}")
        entry = pwd.getpwnam(USER_NAME)
    return entry.pw_uid, entry.pw_gid


def _script(user: tuple[int, int], body: str, values: dict[str, Any]) -> list[str]:
    uid, gid = user
    script = PRELUDE.format(root=str(PROJECT_ROOT), uid=uid, gid=gid,
                            values=json.dumps(values)) + textwrap.dedent(body)
    return [sys.executable, "-c", script]


def start_as(user: tuple[int, int], body: str, **values: Any) -> subprocess.Popen:
    """Start `body` as `user` in the background (stdout is a text pipe); the caller stops it."""
    return subprocess.Popen(_script(user, body, values), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd="/tmp")


def run_as(user: tuple[int, int], body: str, timeout: float = 120, **values: Any) -> Any:
    """Run `body` as `user`; it reads `values` (a dict) and prints one JSON line as its result."""
    result = subprocess.run(_script(user, body, values), capture_output=True, text=True,
                            timeout=timeout, cwd="/tmp")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, result.stderr
    return json.loads(lines[-1])
