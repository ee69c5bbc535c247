"""Client of the style-transfer daemon: the one used by the GIMP plug-in, the CLI and the tests.

Standard library + pyzmq only (it runs inside GIMP's Python). A DEALER socket talks to the
daemon's ROUTER, so while a job runs the client receives progress, can send `cancel`, and sends a
heartbeat every second (the daemon drops jobs whose client went silent or vanished; GIMP kills a
plug-in on Cancel). When nothing answers and `autostart` is on, the daemon is started detached in
its own session, so killing the plug-in never kills the daemon.

One Client per thread: ZeroMQ sockets are not thread-safe. To cancel from another thread, pass a
`threading.Event` (or a `should_cancel` callable) to the call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import zmq

from . import paths
from .errors import CANCELLED, UNAUTHORIZED, UNAVAILABLE, Cancelled, StyleTransferError
from .estimate import Estimate
from .protocol import (BatchRequest, CancelRequest, Error, EstimateRequest, Heartbeat,
                       HeartbeatRequest, ImageFrame, Intermediate, IntermediateRequest,
                       ModelsRequest, Progress, ProtocolError, Request, Result, SampleRequest,
                       ShutdownRequest, StatusRequest, StylizeRequest, decode_reply)

ProgressCallback = Callable[[float, str], None]
# (image so far, fraction, text): called on the calling thread, between progress messages
IntermediateCallback = Callable[[ImageFrame, float, str], None]
HEARTBEAT_INTERVAL = 1.0     # seconds between heartbeats, both directions (see docs/protocol.md)
CANCEL_GRACE = 5.0           # how long to wait for the daemon to confirm a cancel
# The folder that holds this package: the installed plug-in folder (which has config.json), or the
# project root when the backend imports it from the repository.
PACKAGE_HOME = Path(__file__).resolve().parent.parent
CONFIG_FILE = PACKAGE_HOME / "config.json"

_AUTH_EVENTS = (getattr(zmq, "EVENT_HANDSHAKE_FAILED_AUTH", 0)
                | getattr(zmq, "EVENT_HANDSHAKE_FAILED_PROTOCOL", 0))
# A connection that drops while we wait means the daemon is gone: the kernel closes the socket
# of a killed process at once, and ZeroMQ's own PING/PONG (below) closes one to a process that
# stopped answering. Either shows up as EVENT_DISCONNECTED on the socket monitor.
_GONE_EVENTS = zmq.EVENT_DISCONNECTED
ZMQ_HEARTBEAT_MS = 1000       # PING the daemon this often while connected ...
ZMQ_HEARTBEAT_TIMEOUT_MS = 2000   # ... and drop the connection after this much silence


def load_config() -> dict[str, Any]:
    """The plug-in's config.json written by install.py: {"python", "project_root", "endpoint"}."""
    try:
        data = json.loads(CONFIG_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Client:
    """Talks to one daemon endpoint. All failures raise StyleTransferError (Cancelled on cancel)."""

    def __init__(self, endpoint: Optional[str] = None, timeout: float = 30.0,
                 autostart: bool = True, python: Optional[str] = None,
                 project_root: Optional[str] = None, token: Optional[str] = None,
                 runtime_dir: Optional[str] = None, curve_keys: Optional[str] = None,
                 start_timeout: float = 120.0, serve_args: Sequence[str] = ()) -> None:
        config = load_config()
        self.runtime_dir = Path(runtime_dir) if runtime_dir else paths.runtime_dir()
        if os.path.lexists(self.runtime_dir):     # whoever owns it picks the daemon we talk to
            paths.check_runtime_dir(self.runtime_dir)
        self.endpoint = paths.resolve_endpoint(endpoint or config.get("endpoint") or None,
                                               self.runtime_dir)
        self.timeout = float(timeout)
        self.autostart = autostart
        self.python = python or config.get("python") or None
        self.project_root = project_root or config.get("project_root") or None
        self.start_timeout = float(start_timeout)
        self.serve_args = list(serve_args)
        self._token = token
        self._curve_keys = curve_keys
        self._checked = not autostart
        self._context = zmq.Context.instance()
        self._socket: Optional[zmq.Socket] = None
        self._monitor: Optional[zmq.Socket] = None
        self._auth = "private"        # how the current socket authenticates: private|token|curve

    # ------------------------------------------------------------------ public operations

    def status(self) -> dict[str, Any]:
        """Daemon state: version, device, loaded models, memory, queue, running job."""
        return self._call(StatusRequest()).data

    def models(self) -> dict[str, Any]:
        """{"models": [{name, engine, display_name, installed, install_hint, options}, ...],
        "engines": {engine: [option spec, ...]}}."""
        return self._call(ModelsRequest()).data

    def stylize(self, content: ImageFrame, engine: str, model: Optional[str] = None,
                options: Optional[dict[str, Any]] = None,
                styles: Sequence[ImageFrame] = (), style_paths: Sequence[str] = (),
                mask: Optional[ImageFrame] = None,
                on_progress: Optional[ProgressCallback] = None,
                cancel_event: Optional[threading.Event] = None,
                should_cancel: Optional[Callable[[], bool]] = None,
                deadline_s: Optional[float] = None,
                request_id: Optional[str] = None,
                on_intermediate: Optional[IntermediateCallback] = None,
                ) -> tuple[ImageFrame, dict[str, Any]]:
        """Stylize `content`; returns the result image (same size, channels, dtype) and the
        result's data (engine, model, options used, timings). With `on_intermediate`, engines
        that have an intermediate option send their image so far (the newest only: the next
        is asked for once the callback has returned)."""
        request = StylizeRequest(
            engine=engine, content=content, model=model, options=dict(options or {}),
            styles=list(styles), style_paths=[os.path.abspath(p) for p in style_paths],
            mask=mask, deadline_s=deadline_s, intermediates=on_intermediate is not None)
        if request_id:
            request.id = request_id
        result = self._call(request, on_progress, _cancel_fn(cancel_event, should_cancel),
                            on_intermediate=on_intermediate)
        if len(result.images) != 1:
            raise StyleTransferError(UNAVAILABLE, "The daemon sent a stylize result without "
                                                  "exactly one image.")
        return result.images[0], result.data

    def estimate(self, engine: str, width: int, height: int, styles: int = 1,
                 mask: bool = False, model: Optional[str] = None,
                 options: Optional[dict[str, Any]] = None,
                 on_progress: Optional[ProgressCallback] = None,
                 cancel_event: Optional[threading.Event] = None) -> Estimate:
        """How long a stylize job would take (engines whose card `estimates`). The first one
        for an engine and device measures its speed (seconds); later ones answer at once."""
        request = EstimateRequest(engine=engine, width=int(width), height=int(height),
                                  styles=int(styles), mask=bool(mask), model=model,
                                  options=dict(options or {}))
        result = self._call(request, on_progress, _cancel_fn(cancel_event, None))
        return Estimate.from_json(result.data)

    def batch(self, spec: dict[str, Any], on_progress: Optional[ProgressCallback] = None,
              cancel_event: Optional[threading.Event] = None,
              should_cancel: Optional[Callable[[], bool]] = None,
              deadline_s: Optional[float] = None,
              request_id: Optional[str] = None) -> dict[str, Any]:
        """Run a folder job (spec = backend.batch.spec.BatchSpec as JSON); returns the report."""
        request = BatchRequest(spec=dict(spec), deadline_s=deadline_s)
        if request_id:
            request.id = request_id
        # A cancelled batch finishes the image in hand and then replies with its report, which
        # may take longer than CANCEL_GRACE: wait for it (heartbeats still prove the daemon alive).
        return self._call(request, on_progress, _cancel_fn(cancel_event, should_cancel),
                          cancel_grace=None).data

    def sample(self, model: Optional[str] = None, count: int = 1, seed: int = 0,
               options: Optional[dict[str, Any]] = None,
               on_progress: Optional[ProgressCallback] = None,
               cancel_event: Optional[threading.Event] = None,
               should_cancel: Optional[Callable[[], bool]] = None,
               deadline_s: Optional[float] = None,
               engine: Optional[str] = None) -> tuple[list[ImageFrame], dict[str, Any]]:
        """`count` new images from the model's prior, reproducible with `seed` (engines whose
        card can sample; `engine` None: the one that can)."""
        request = SampleRequest(model=model, count=count, seed=seed, options=dict(options or {}),
                                deadline_s=deadline_s, engine=engine)
        result = self._call(request, on_progress, _cancel_fn(cancel_event, should_cancel))
        return result.images, result.data

    def cancel(self, request_id: str) -> dict[str, Any]:
        """Cancel a job by id: any client of this user may cancel the user's jobs, a CURVE
        client only the jobs sent with its own key."""
        return self._call(CancelRequest(target=request_id)).data

    def shutdown(self) -> dict[str, Any]:
        """Ask the daemon to cancel its work and exit."""
        self._checked = True          # never auto-start a daemon just to stop it
        return self._call(ShutdownRequest()).data

    def ping(self, timeout: Optional[float] = None) -> bool:
        """True when a daemon answers `status` within `timeout` (never auto-starts)."""
        previous, self._checked = self._checked, True
        try:
            self._call(StatusRequest(), timeout=timeout)
            return True
        except StyleTransferError as error:
            if error.code == UNAUTHORIZED:
                raise
            return False
        finally:
            self._checked = previous

    def close(self) -> None:
        if self._monitor is not None:
            try:
                self._socket.disable_monitor()
            except (zmq.ZMQError, AttributeError):
                pass
            self._monitor.close(linger=0)
            self._monitor = None
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    @property
    def log_path(self) -> Path:
        return paths.log_path(self.runtime_dir)

    # --------------------------------------------------------------------------- transport

    def _connect(self) -> zmq.Socket:
        if self._socket is not None:
            return self._socket
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RECONNECT_IVL, 100)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        if hasattr(zmq, "HEARTBEAT_IVL"):               # libzmq >= 4.2
            socket.setsockopt(zmq.HEARTBEAT_IVL, ZMQ_HEARTBEAT_MS)
            socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, ZMQ_HEARTBEAT_TIMEOUT_MS)
        self._auth = "private"
        try:
            if self._curve_keys:
                self._setup_curve(socket, Path(self._curve_keys))
                self._auth = "curve"
            elif not paths.is_private_endpoint(self.endpoint, self.runtime_dir):
                self._setup_plain(socket)
                self._auth = "token"
            self._monitor = socket.get_monitor_socket(_AUTH_EVENTS | _GONE_EVENTS)
        except BaseException:
            socket.close(linger=0)
            raise
        socket.connect(self.endpoint)
        self._socket = socket
        return socket

    def _setup_plain(self, socket: zmq.Socket) -> None:
        """Shared endpoints authenticate at the ZeroMQ handshake: PLAIN, password = token."""
        token = self._token_for()
        if not token:
            raise StyleTransferError(
                UNAUTHORIZED, f"{self.endpoint} is not this user's private socket, so the daemon "
                              "there wants its token, and there is none: run the client as the "
                              f"daemon's user, or set {paths.TOKEN_ENV} to the content of the "
                              f"daemon's {paths.token_path(self.runtime_dir)}.")
        socket.plain_username = paths.PLAIN_USER.encode("utf-8")
        socket.plain_password = token.encode("utf-8")

    def _setup_curve(self, socket: zmq.Socket, directory: Path) -> None:
        """CURVE client: `directory` holds server.key (public) and client.key_secret."""
        import zmq.auth
        try:
            server_public, _ = zmq.auth.load_certificate(str(directory / "server.key"))
            client_public, client_secret = zmq.auth.load_certificate(
                str(directory / "client.key_secret"))
        except (OSError, ValueError) as error:
            raise StyleTransferError(UNAUTHORIZED, f"Cannot read the CURVE keys in {directory} "
                                                   f"({error}); it needs server.key and "
                                                   "client.key_secret.") from None
        if client_secret is None:
            raise StyleTransferError(UNAUTHORIZED, f"{directory / 'client.key_secret'} holds no "
                                                   "secret key.")
        socket.curve_serverkey = server_public
        socket.curve_publickey = client_public
        socket.curve_secretkey = client_secret

    def _reset(self) -> None:
        """Drop the socket after a timeout so stale replies never reach the next request."""
        self.close()

    def _token_for(self) -> Optional[str]:
        if paths.is_private_endpoint(self.endpoint, self.runtime_dir):
            return self._token
        return self._token or paths.read_token(self.runtime_dir)

    def _call(self, request: Request, on_progress: Optional[ProgressCallback] = None,
              cancelled: Optional[Callable[[], bool]] = None,
              timeout: Optional[float] = None,
              cancel_grace: Optional[float] = CANCEL_GRACE,
              on_intermediate: Optional[IntermediateCallback] = None) -> Result:
        self._drop_if_disconnected()
        if not self._checked:
            self._ensure_daemon()
        request.token = self._token_for()
        socket = self._connect()
        timeout = self.timeout if timeout is None else float(timeout)
        try:
            self._send_request(socket, request, timeout)
            return self._wait(socket, request, on_progress, cancelled, timeout, cancel_grace,
                              on_intermediate)
        except zmq.ZMQError as error:
            self._reset()
            raise StyleTransferError(UNAVAILABLE, f"Cannot talk to the daemon at {self.endpoint}: "
                                                  f"{error}.") from None
        except StyleTransferError:
            raise
        except BaseException:
            # Ctrl-C, an exception from on_progress, ...: do not leave the job running.
            self._send_cancel(request)
            raise

    def _drop_if_disconnected(self) -> None:
        """A connection that dropped between calls (the daemon restarted) is not this call's
        problem: start on a fresh socket rather than report it."""
        if self._monitor is None:
            return
        try:
            self._check_monitor()
        except StyleTransferError:
            self._reset()

    def _send_request(self, socket: zmq.Socket, request: Request, timeout: float) -> None:
        """Send without ever blocking for good: no connection within `timeout` is an error."""
        frames = request.check_size(request.to_frames())
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                return
            except zmq.Again:
                pass
            if self._monitor is not None and self._monitor.poll(0):
                self._check_monitor()
            if time.monotonic() > deadline:
                self._reset()
                raise StyleTransferError(
                    UNAVAILABLE, f"Cannot reach the style-transfer daemon at {self.endpoint} "
                                 f"(no connection within {timeout:g} s). Check `python -m "
                                 f"backend status` and the log {self.log_path}.")
            socket.poll(50, zmq.POLLOUT)

    def _wait(self, socket: zmq.Socket, request: Request,
              on_progress: Optional[ProgressCallback], cancelled: Optional[Callable[[], bool]],
              timeout: float,
              cancel_grace: Optional[float] = CANCEL_GRACE,
              on_intermediate: Optional[IntermediateCallback] = None) -> Result:
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)
        now = time.monotonic()
        last_heard = now            # anything from the daemon proves it alive
        next_heartbeat = now + HEARTBEAT_INTERVAL
        cancel_sent_at: Optional[float] = None
        while True:
            events = dict(poller.poll(100))
            now = time.monotonic()
            if socket in events:
                while socket.poll(0):
                    reply = self._decode(socket.recv_multipart(copy=False))
                    if reply is None:
                        continue
                    last_heard = time.monotonic()
                    if isinstance(reply, Error) and not reply.id:
                        raise reply.to_exception()   # the daemon could not even read our id
                    if isinstance(reply, Heartbeat) or reply.id != request.id:
                        continue            # liveness, or a stale reply to an abandoned request
                    if isinstance(reply, Progress):
                        if on_progress is not None:
                            on_progress(reply.fraction, reply.text)
                        continue
                    if isinstance(reply, Intermediate):
                        if on_intermediate is not None and cancel_sent_at is None:
                            on_intermediate(reply.image, reply.fraction, reply.text)
                            self._ask_next_intermediate(socket, request)
                        continue
                    if isinstance(reply, Error):
                        raise reply.to_exception()
                    return reply
                now = time.monotonic()
            if self._monitor is not None and self._monitor in events:
                self._check_monitor()        # after the replies: a last reply still counts
            if cancel_sent_at is None and cancelled is not None and cancelled():
                self._send_cancel(request)
                cancel_sent_at = now
            if cancel_sent_at is not None and cancel_grace is not None \
                    and now - cancel_sent_at > cancel_grace:
                self._reset()
                raise Cancelled("The job was cancelled (the daemon did not confirm in time).")
            if now - last_heard > timeout:
                self._reset()
                raise StyleTransferError(
                    UNAVAILABLE,
                    f"The style-transfer daemon at {self.endpoint} did not answer within "
                    f"{timeout:g} s. Check `python -m backend status` and the log "
                    f"{self.log_path}.")
            if now >= next_heartbeat:
                try:
                    socket.send_multipart(HeartbeatRequest(token=request.token).to_frames(),
                                          flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass            # not connected right now; the liveness timeout decides
                next_heartbeat = now + HEARTBEAT_INTERVAL

    def _decode(self, frames: list) -> Optional[Any]:
        try:
            return decode_reply([frame.buffer for frame in frames])
        except ProtocolError:
            return None        # a reply we cannot read is ignored, like noise

    def _check_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message
        while self._monitor is not None and self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)
            kind = event.get("event", 0)
            if kind & _AUTH_EVENTS:
                self._reset()
                raise StyleTransferError(UNAUTHORIZED, self._rejected_message())
            if kind & _GONE_EVENTS:
                self._reset()
                raise self._gone_error()

    def _gone_error(self) -> StyleTransferError:
        """The daemon's connection dropped: say what happened and what happens next."""
        state = paths.read_state(self.runtime_dir) or {}
        pid = state.get("pid") if state.get("endpoint") == self.endpoint else None
        self._checked = not self.autostart     # so this Client's next call starts it again
        if self.autostart:
            then = "the next run starts it again."
        else:
            then = "start it again with `python -m backend serve`."
        if pid is not None and paths.pid_alive(pid):
            return StyleTransferError(
                UNAVAILABLE, f"The style-transfer backend (pid {pid}) stopped answering and its "
                             f"connection was closed; its log is at {self.log_path}. Stop it "
                             f"with `python -m backend stop` (or kill {pid}); {then}")
        where = f" (pid {pid})" if pid is not None else ""
        return StyleTransferError(
            UNAVAILABLE, f"The style-transfer backend{where} stopped unexpectedly while working "
                         f"on this request; its log is at {self.log_path}; {then}")

    def _rejected_message(self) -> str:
        if self._auth == "curve":
            return (f"The daemon at {self.endpoint} rejected this client's CURVE key; ask its "
                    "owner to add your public key to its allowed clients.")
        if self._auth == "token":
            return (f"The daemon at {self.endpoint} rejected this client's token (the daemon's "
                    f"{paths.token_path(self.runtime_dir)}, or {paths.TOKEN_ENV}); it is "
                    "another user's daemon, or the token is out of date.")
        return (f"The daemon at {self.endpoint} wants authentication this client did not offer "
                "(a token or CURVE keys).")

    def _ask_next_intermediate(self, socket: zmq.Socket, request: Request) -> None:
        """The credit for one more intermediate frame: sent only after the last one was used,
        so a slow client never has more than one waiting for it."""
        try:
            socket.send_multipart(IntermediateRequest(target=request.id,
                                                      token=request.token).to_frames(),
                                  zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def _send_cancel(self, request: Request) -> None:
        if self._socket is None:
            return
        try:
            self._socket.send_multipart(
                CancelRequest(target=request.id, token=request.token).to_frames(), zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    # -------------------------------------------------------------------------- auto-start

    def _ensure_daemon(self) -> None:
        """Start the daemon when nothing answers, then wait until it does (bounded)."""
        self._checked = True
        if self._probably_running() and self.ping(min(self.timeout, 3.0)):
            return
        self._start_daemon()

    def _probably_running(self) -> bool:
        if self.endpoint.startswith("ipc://"):
            return os.path.exists(self.endpoint[len("ipc://"):])
        return True

    def launch_command(self) -> list[str]:
        python = self.python or sys.executable
        return [python, "-m", "backend", "serve", "--endpoint", self.endpoint,
                "--start-timeout", str(self.start_timeout), *self.serve_args]

    def _project_root(self) -> Optional[str]:
        if self.project_root:
            return self.project_root
        # <root>/stclient (the backend's own copy) or <root>/plugin/style_transfer/stclient (a
        # plug-in installed with --link)
        for candidate in (PACKAGE_HOME, PACKAGE_HOME.parent.parent):
            if (candidate / "backend" / "__init__.py").is_file():
                return str(candidate)
        return None

    def _start_daemon(self) -> None:
        root = self._project_root()
        if root is None:
            raise StyleTransferError(
                UNAVAILABLE, "No daemon is running and the plug-in does not know where the backend "
                             f"is installed ({CONFIG_FILE} is missing); run install.py again or "
                             "start it with `python -m backend serve`.")
        directory = paths.ensure_runtime_dir(self.runtime_dir)
        env = dict(os.environ)
        env[paths.RUNTIME_DIR_ENV] = str(directory)
        out_file = paths.output_path(directory)
        kwargs: dict[str, Any] = {}
        if paths.IS_WINDOWS:
            kwargs["creationflags"] = (subprocess.DETACHED_PROCESS
                                       | subprocess.CREATE_NEW_PROCESS_GROUP
                                       | getattr(subprocess, "CREATE_NO_WINDOW", 0))
        else:
            kwargs["start_new_session"] = True    # GIMP kills the plug-in's process group
        try:
            with open(out_file, "ab") as out:
                launcher = subprocess.Popen(self.launch_command(), cwd=root, env=env,
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                            close_fds=True, **kwargs)
        except OSError as error:
            raise StyleTransferError(UNAVAILABLE, f"Cannot start the daemon with "
                                                  f"{self.launch_command()[0]}: {error}.") from None
        # `serve` (without --foreground) returns once the daemon answers, or fails saying why.
        deadline = time.monotonic() + self.start_timeout + 5.0
        while launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if launcher.returncode is None:
            launcher.kill()
        if self.ping(min(self.timeout, 10.0)):
            return
        raise StyleTransferError(
            UNAVAILABLE, f"The style-transfer daemon did not start within {self.start_timeout:g} s"
                         f" ({_last_line(out_file)}). See the log {self.log_path} and "
                         f"{out_file}.")


def _cancel_fn(event: Optional[threading.Event],
               should_cancel: Optional[Callable[[], bool]]) -> Optional[Callable[[], bool]]:
    if event is None and should_cancel is None:
        return None
    return lambda: bool((event is not None and event.is_set())
                        or (should_cancel is not None and should_cancel()))


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1].strip()[:300] if lines else "no output"


__all__ = ["Client", "ImageFrame", "StyleTransferError", "Cancelled", "CANCELLED", "load_config"]
