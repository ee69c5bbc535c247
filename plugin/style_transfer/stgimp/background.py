"""Daemon calls that never block a dialog: each runs on its own thread with its own Client (ZeroMQ
sockets are not thread-safe) and hands its outcome to a `deliver` function that the GTK side
wraps in GLib.idle_add, so widgets are only touched on GIMP's main thread.

Standard library + stclient only, so the behaviour (cancel, the latest request wins, what is
pending) is tested on the host against a real daemon (tests/daemon/test_plugin_background.py).

    calls = Background(deliver=lambda fn, *a: GLib.idle_add(fn, *a))
    calls.start("models", lambda client, cancel: client.models(), on_done, on_error)
    calls.restart("preview", work, on_done, on_error)   # cancels a running "preview" first
    calls.cancel("preview"); calls.pending() -> {"models"}
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from stclient.errors import CANCELLED, StyleTransferError

Work = Callable[[Any, threading.Event], Any]        # (client, cancel event) -> result
Deliver = Callable[..., Any]                         # (function, *args): run it on the UI side
ClientFactory = Callable[[], Any]


@dataclass
class Call:
    """One background call: its thread, cancel flag and when it began."""

    name: str
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    thread: Optional[threading.Thread] = None
    done: threading.Event = field(default_factory=threading.Event)


def _direct(function: Callable[..., Any], *args: Any) -> None:
    function(*args)


class Background:
    """Named background calls; at most one per name is current (a newer one supersedes it)."""

    def __init__(self, make_client: ClientFactory, deliver: Deliver = _direct) -> None:
        self.make_client = make_client
        self.deliver = deliver
        self._current: dict[str, Call] = {}
        self._lock = threading.Lock()

    def start(self, name: str, work: Work, on_done: Callable[[Any], None],
              on_error: Callable[[StyleTransferError], None]) -> Call:
        """Run `work(client, cancel)` on a thread; its result goes to `on_done`, a failure (a
        StyleTransferError, also for unexpected ones) to `on_error`, a cancelled call nowhere."""
        call = Call(name)
        with self._lock:
            self._current[name] = call

        def body() -> None:
            outcome: Any = None
            failure: Optional[StyleTransferError] = None
            client = None
            try:
                client = self.make_client()
                outcome = work(client, call.cancel)
            except StyleTransferError as error:
                failure = error
            except Exception as error:  # a bug must still reach the dialog, not kill a thread
                failure = StyleTransferError("internal", f"{type(error).__name__}: {error}")
            finally:
                if client is not None:
                    client.close()
            self.deliver(self._finish, call, outcome, failure, on_done, on_error)

        call.thread = threading.Thread(target=body, name=f"background-{name}", daemon=True)
        call.thread.start()
        return call

    def restart(self, name: str, work: Work, on_done: Callable[[Any], None],
                on_error: Callable[[StyleTransferError], None]) -> Call:
        """Cancel the current call of this name (its result is dropped), then start anew."""
        self.cancel(name)
        return self.start(name, work, on_done, on_error)

    def cancel(self, name: str) -> bool:
        with self._lock:
            call = self._current.pop(name, None)
        if call is None:
            return False
        call.cancel.set()
        return True

    def cancel_all(self) -> None:
        for name in list(self._current):
            self.cancel(name)

    def pending(self) -> set[str]:
        with self._lock:
            return set(self._current)

    def _finish(self, call: Call, outcome: Any, failure: Optional[StyleTransferError],
                on_done: Callable[[Any], None],
                on_error: Callable[[StyleTransferError], None]) -> bool:
        """On the UI side: only the current call of its name reports (never a superseded one)."""
        with self._lock:
            current = self._current.get(call.name) is call
            if current:
                del self._current[call.name]
        call.done.set()
        if current and not call.cancel.is_set():
            if failure is None:
                on_done(outcome)
            elif failure.code != CANCELLED:
                on_error(failure)
        return False          # GLib.idle_add: run once
