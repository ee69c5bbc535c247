"""A real HTTP server on 127.0.0.1 for download tests: serves bytes the test registers, honours
Range requests, and can misbehave on purpose (drop the connection after N bytes, ignore Range,
answer 503) so resume and retry logic is exercised over real sockets."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional


@dataclass
class Served:
    data: bytes
    drop_after: list[int] = field(default_factory=list)  # per request: close after this many bytes
    ignore_range: bool = False
    failures: int = 0                                      # answer 503 this many times first


@dataclass
class RequestLog:
    path: str
    range: Optional[str]
    status: int


class FileServer:
    """`with FileServer() as server: server.add("/a.pth", data); server.url("/a.pth")`"""

    def __init__(self) -> None:
        self.files: dict[str, Served] = {}
        self.log: list[RequestLog] = []
        self._lock = threading.Lock()
        handler = self._handler_class()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, data: bytes, **behaviour) -> str:
        self.files[path] = Served(data, **behaviour)
        return self.url(path)

    def requests_for(self, path: str) -> list[RequestLog]:
        with self._lock:
            return [entry for entry in self.log if entry.path == path]

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _record(self, status: int) -> None:
                with server._lock:
                    server.log.append(RequestLog(self.path, self.headers.get("Range"), status))

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                served = server.files.get(self.path)
                if served is None:
                    self._record(404)
                    self.send_error(404)
                    return
                if served.failures > 0:
                    served.failures -= 1
                    self._record(503)
                    self.send_error(503, "try later")
                    return
                data, start, status = served.data, 0, 200
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and not served.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self._record(416)
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                self._record(status)
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                limit = served.drop_after.pop(0) if served.drop_after else None
                if limit is not None:
                    self.wfile.write(body[:limit])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # the "dropped connection"
                    return
                self.wfile.write(body)

        return Handler
