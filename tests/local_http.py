"""A real HTTP server on 127.0.0.1 for download tests: serves byte strings by path, answers Range
requests (206), 404 for unknown paths, can throttle, and records every request it receives."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".json": "application/json"}


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class LocalServer:
    files: dict[str, bytes] = field(default_factory=dict)  # "/a/b.mp4" -> bytes
    status: dict[str, int] = field(default_factory=dict)  # "/x" -> an error status to answer instead
    failures: dict[str, int] = field(default_factory=dict)  # "/x" -> how many more requests get a 503
    throttle_seconds: float = 0.0  # pause after each chunk
    chunk_bytes: int = 64 * 1024
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            server.requests.append(Request(self.command, path, self.headers.get("Range")))
            if server.failures.get(path, 0) > 0:
                server.failures[path] -= 1
                self.send_error(503)
                return
            if path in server.status or path not in server.files:
                self.send_error(server.status.get(path, 404))
                return
            data = server.files[path]
            start, status = 0, 200
            requested = self.headers.get("Range")
            if requested and requested.startswith("bytes=") and requested.endswith("-"):
                start = int(requested.removeprefix("bytes=").removesuffix("-"))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            self.send_response(status)
            suffix = path[path.rfind("."):] if "." in path else ""
            self.send_header("Content-Type", CONTENT_TYPES.get(suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            try:
                for position in range(start, len(data), server.chunk_bytes):
                    self.wfile.write(data[position:position + server.chunk_bytes])
                    self.wfile.flush()
                    if server.throttle_seconds:
                        time.sleep(server.throttle_seconds)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a killed download)

    return Handler
