"""`python -m backend serve`: start the daemon (detached by default, or in the foreground).

Without --foreground this process is only a launcher: it starts `serve --foreground` in a new
session (so closing the terminal or GIMP killing a plug-in never kills the daemon), waits until
the daemon answers and its Runtime is ready, prints where it listens and returns 0; if the daemon
dies or does not come up in time it prints why (with the log path) and returns 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from stclient import paths, settings
from stclient.errors import StyleTransferError

from backend import PROJECT_ROOT, __version__, PROTOCOL_VERSION
from backend.commands._runtime_args import (add_compile_argument, add_precision_argument,
                                            apply_precision)


def register(subparsers: argparse._SubParsersAction) -> None:
    from backend.daemon import config as defaults
    parser = subparsers.add_parser(
        "serve", help="start the backend daemon",
        description="Start the style-transfer daemon that the GIMP plug-in, `batch` and scripts "
                    "talk to. It detaches and returns once it is ready, unless --foreground.")
    parser.add_argument("--endpoint", help="where to listen: ipc://PATH or tcp://HOST:PORT "
                                           "(default: an ipc socket in the runtime directory; "
                                           "loopback TCP on Windows)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int,
                        help="CPU threads for the networks (default: all CPUs); fewer keeps the "
                             "desktop responsive")
    add_compile_argument(parser)
    add_precision_argument(parser)
    parser.add_argument("--foreground", action="store_true",
                        help="stay in the foreground and log to the console")
    parser.add_argument("--models-dir", type=Path, help="folder with installed models")
    parser.add_argument("--max-pixels", type=int, default=defaults.DEFAULT_MAX_PIXELS,
                        help="largest image (width x height) accepted; default %(default)s")
    parser.add_argument("--job-timeout", type=float, default=defaults.DEFAULT_JOB_TIMEOUT,
                        help="seconds an interactive job may take, queue included")
    parser.add_argument("--batch-timeout", type=float, default=defaults.DEFAULT_BATCH_TIMEOUT,
                        help="seconds a batch job may take")
    parser.add_argument("--client-timeout", type=float, default=defaults.DEFAULT_CLIENT_TIMEOUT,
                        help="seconds of client silence after which its job is dropped")
    parser.add_argument("--curve-keys", type=Path,
                        help="folder with server.key_secret and clients/*.key: enables CurveZMQ "
                             "(required to listen on a non-loopback address)")
    parser.add_argument("--allow-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="let remote (CURVE) clients name files below DIR (style files, "
                             "batch folders; repeatable). Without it they send pixels only")
    parser.add_argument("--max-job-memory", metavar="BYTES",
                        help="memory (e.g. 8G) the whole images of one job may need; larger "
                             "jobs are refused with out_of_memory before they start (default: "
                             "60%% of the memory available at the time)")
    parser.add_argument("--max-queue", type=int, default=defaults.DEFAULT_MAX_QUEUE,
                        help="jobs queued or running at once, all clients together; more are "
                             "answered 'busy' (default %(default)s)")
    parser.add_argument("--max-queue-per-client", type=int,
                        default=defaults.DEFAULT_MAX_QUEUE_PER_CLIENT,
                        help="jobs one connection may have queued or running (default "
                             "%(default)s)")
    parser.add_argument("--log-file", type=Path, help="log to this file (rotating) instead of "
                                                      "the console / the runtime directory")
    parser.add_argument("--start-timeout", type=float, default=120.0,
                        help="seconds to wait for the detached daemon to become ready")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    apply_precision(args)
    if args.max_pixels < 1:
        raise StyleTransferError("bad_request", "--max-pixels must be positive.")
    if args.threads is not None and args.threads < 1:
        raise StyleTransferError("bad_request", "--threads must be at least 1.")
    if args.max_job_memory is not None:
        from backend.perf.budget import parse_bytes
        try:
            args.max_job_memory = parse_bytes(args.max_job_memory)
        except ValueError as error:
            raise StyleTransferError("bad_request", f"--max-job-memory: {error}.") from None
    if args.max_queue < 1 or args.max_queue_per_client < 1:
        raise StyleTransferError("bad_request", "--max-queue and --max-queue-per-client must be "
                                                "at least 1.")
    directory = paths.ensure_runtime_dir()
    endpoint = args.endpoint or paths.default_endpoint(directory)
    from backend.daemon import security
    security.check_endpoint_syntax(endpoint)
    if args.foreground:
        return run_foreground(args, directory, endpoint)
    return launch_detached(args, directory, endpoint)


# ----------------------------------------------------------------------------- foreground

def run_foreground(args: argparse.Namespace, directory: Path, endpoint: str) -> int:
    from backend.daemon.config import DaemonConfig
    from backend.daemon.logsetup import setup_logging
    from backend.daemon.server import DaemonServer
    from backend.daemon.state import InstanceLock, ensure_token, remove_state, write_state

    lock = InstanceLock(paths.lock_path(directory))
    if not lock.acquire():
        print(already_running_message(directory), file=sys.stderr)
        return 1
    try:
        if args.models_dir is not None:
            models_dir = args.models_dir.expanduser().resolve()
            settings.override(models_dir=str(models_dir))
        else:
            models_dir = None
        config = DaemonConfig(
            endpoint=endpoint, runtime_dir=directory, device=args.device, threads=args.threads,
            compile=args.compile,
            models_dir=models_dir,
            max_pixels=args.max_pixels, job_timeout=args.job_timeout,
            batch_timeout=args.batch_timeout, client_timeout=args.client_timeout,
            curve_keys=args.curve_keys, log_file=args.log_file,
            allow_dirs=tuple(path.expanduser() for path in args.allow_dir),
            max_job_memory=args.max_job_memory, max_queue=args.max_queue,
            max_queue_per_client=args.max_queue_per_client)
        log = setup_logging(args.log_file)
        token = ensure_token(directory)
        server = DaemonServer(config, token=token)
        bound = server.bind()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: server.request_stop())
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)   # a closed terminal must not stop it
        state = {"endpoint": bound, "pid": os.getpid(), "version": __version__,
                 "protocol": PROTOCOL_VERSION, "started": time.time(), "ready": False,
                 "log": str(args.log_file) if args.log_file else None}
        write_state(directory, state)

        def announce_ready() -> None:
            write_state(directory, {**state, "ready": True})
            log.info("ready; state in %s", paths.state_path(directory))

        server.on_ready = announce_ready
        try:
            server.serve_forever()
        finally:
            remove_state(directory, os.getpid())
            _remove_socket_file(bound)
        if server.worker.startup_error is not None:
            print(f"error: the backend could not start: {server.worker.startup_error}",
                  file=sys.stderr)
            return 1
        return 0
    finally:
        lock.release()


def _remove_socket_file(endpoint: str) -> None:
    if endpoint.startswith("ipc://"):
        try:
            os.unlink(endpoint[len("ipc://"):])
        except OSError:
            pass


def already_running_message(directory: Path) -> str:
    state = paths.read_state(directory) or {}
    return (f"A style-transfer daemon is already running (endpoint "
            f"{state.get('endpoint', '?')}, pid {state.get('pid', '?')}); stop it with "
            "`python -m backend stop`.")


# -------------------------------------------------------------------------------- launcher

def launch_detached(args: argparse.Namespace, directory: Path, endpoint: str) -> int:
    from backend.daemon.state import InstanceLock

    probe = InstanceLock(paths.lock_path(directory))
    if not probe.acquire():
        print(already_running_message(directory), file=sys.stderr)
        return 1
    probe.release()          # the daemon takes it for good; a race there is caught by it
    log_file = args.log_file or paths.log_path(directory)
    command = [sys.executable, "-m", "backend", "serve", "--foreground", "--endpoint", endpoint,
               "--log-file", str(log_file), *_forwarded_flags(args)]
    out_file = paths.output_path(directory)
    kwargs: dict = {}
    if sys.platform.startswith("win"):
        kwargs["creationflags"] = (subprocess.DETACHED_PROCESS
                                   | subprocess.CREATE_NEW_PROCESS_GROUP)
    else:
        kwargs["start_new_session"] = True
    env = settings.child_env()
    env[paths.RUNTIME_DIR_ENV] = str(directory)
    with open(out_file, "wb") as out:
        child = subprocess.Popen(command, cwd=str(PROJECT_ROOT), env=env,
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 close_fds=True, **kwargs)
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            print(f"error: the daemon exited with status {code}: "
                  f"{_tail(out_file) or _tail(log_file)} (log: {log_file})", file=sys.stderr)
            return 1
        state = paths.read_state(directory) or {}
        if state.get("pid") == child.pid and state.get("ready"):
            print(f"daemon started: endpoint {state.get('endpoint', endpoint)}, pid {child.pid}, "
                  f"log {log_file}")
            return 0
        time.sleep(0.1)
    print(f"error: the daemon did not become ready within {args.start_timeout:g} s; it keeps "
          f"starting in the background (pid {child.pid}). See {log_file}.", file=sys.stderr)
    return 1


def _forwarded_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--device", args.device, "--max-pixels", str(args.max_pixels),
             "--job-timeout", str(args.job_timeout), "--batch-timeout", str(args.batch_timeout),
             "--client-timeout", str(args.client_timeout), "--max-queue", str(args.max_queue),
             "--max-queue-per-client", str(args.max_queue_per_client)]
    if args.threads is not None:
        flags += ["--threads", str(args.threads)]
    if args.compile:
        flags += ["--compile"]
    if args.precision is not None:
        flags += ["--precision", args.precision]
    if args.models_dir is not None:
        flags += ["--models-dir", str(args.models_dir.expanduser().resolve())]
    if args.curve_keys is not None:
        flags += ["--curve-keys", str(args.curve_keys.expanduser().resolve())]
    if args.max_job_memory is not None:
        flags += ["--max-job-memory", str(args.max_job_memory)]
    for directory in args.allow_dir:
        flags += ["--allow-dir", str(directory.expanduser().resolve())]
    return flags


def _tail(path: Path, lines: int = 3) -> Optional[str]:
    try:
        text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return " | ".join(text[-lines:]) if text else None
