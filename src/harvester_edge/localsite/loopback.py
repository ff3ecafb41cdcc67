"""A small threaded JSON-over-HTTP server for loopback API gateways.

Gateways only implement ``handle(request) -> (status, payload) | None``; this module owns the
HTTP plumbing that is easy to get wrong in tests: a server thread that can always be stopped
(even with requests deliberately hanging), open keep-alive connections torn down on stop so
clients see a disconnect instead of waiting forever, bounded request bodies, and request logs
that go to ``logging`` at debug level (paths only; headers, where tokens live, are never logged).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

MAX_BODY = 32 * 1024 * 1024


class _NoContent:
    """Type of :data:`NO_CONTENT`."""

    def __repr__(self) -> str:
        return "NO_CONTENT"


#: A payload meaning "no body at all" (for 204 answers): no Content-Type, no Content-Length.
NO_CONTENT = _NoContent()

#: ``(status, JSON payload)``, or ``(status, payload, extra headers)``.
Response = tuple[int, Any] | tuple[int, Any, dict[str, str]]


@dataclass(frozen=True)
class HttpRequest:
    """What a gateway needs from one HTTP request."""

    method: str
    path: str
    query: str
    headers: Message
    body: bytes
    client_ip: str


class App(Protocol):
    """A gateway: answers a request, or returns None to drop the connection unanswered."""

    def handle(self, request: HttpRequest) -> Response | None: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never join handler threads: some hang on purpose
    #: bursts of parallel submits (16 at a time per thread): socketserver's default backlog
    #: of 5 made the kernel drop connections, which clients saw as resets
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self.stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Disconnect every open client so no handler or client keeps waiting after stop."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real services behind a proxy
    timeout = 120  # idle keep-alive connections end eventually
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s " + format, self.client_address[0], *args)

    def _dispatch(self, method: str) -> None:
        if self.server.stopping.is_set():
            self.close_connection = True
            return
        body = self._read_body()
        if body is None:
            return
        url = urlsplit(self.path)
        request = HttpRequest(
            method, url.path, url.query, self.headers, body, self.client_address[0]
        )
        try:
            response = self.server.app.handle(request)
        except Exception:
            log.exception("internal error answering %s %s", method, url.path)
            response = (500, {"detail": "internal server error"})
        if response is None or self.server.stopping.is_set():
            self.close_connection = True  # dropped on purpose (hang/stop): no answer at all
            return
        self._send(*response)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._send(411, {"detail": "chunked bodies are not supported"})
            self.close_connection = True
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._send(413, {"detail": "request body too large or malformed"})
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        if payload is NO_CONTENT:
            self._send_empty(status, headers)
            return
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            if not any(name.lower() == "content-type" for name in headers or {}):
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True  # the client gave up (e.g. its read timeout)

    def _send_empty(self, status: int, headers: dict[str, str] | None) -> None:
        """An answer without a body (204): RFC 9110 forbids Content-Length there."""
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True


class LoopbackServer:
    """Run an ``App`` on ``host:port`` (port 0 = any free port) in a daemon thread."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def host(self) -> str:
        return self._address[0]

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve in the background (binding here, not in __init__)."""
        if self._server is not None:
            return
        self._server = _Server(self._address, self._app)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"loopback-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, disconnect clients; never waits for hanging handlers."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout)
        self._server = None
        self._thread = None


_G = TypeVar("_G", bound="GatewayBook")


class GatewayBook:
    """What every loopback gateway keeps for tests and the demo: per-route request counts and
    the Slurm jobs it created, and its serving lifecycle.  The gateway sets ``_lock``,
    ``_counters``, ``_jobs_created``, ``knobs``, ``_server`` and ``_stop`` in its
    constructor; ``state()`` is its ``GET /_admin/state`` answer, which a gateway extends with
    its own keys."""

    _lock: threading.Lock
    _counters: Counter[str]
    _jobs_created: list[str]
    knobs: Any
    _server: LoopbackServer
    _stop: threading.Event

    # ------------------------------------------------------------------ lifecycle
    def start(self: _G) -> _G:
        """Bind and serve in a background thread; returns self for chaining."""
        if not self._server.running:
            if self._stop.is_set():  # restarted after stop(): a fresh stop flag
                self._stop = threading.Event()
                self._restarted()
            self._server.start()
        return self

    def stop(self) -> None:
        """Stop at once: hung and stalled requests are dropped unanswered."""
        self._stop.set()
        self.knobs.wake()
        self._server.stop()
        self._stopped()

    def _restarted(self) -> None:
        """Hook: what a gateway renews when started again after ``stop()``."""

    def _stopped(self) -> None:
        """Hook: what a gateway releases after its server stopped."""

    def __enter__(self: _G) -> _G:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self._server.base_url

    @property
    def counters(self) -> Counter[str]:
        """Copy of the per-route request counts (counted on arrival, before any fault)."""
        with self._lock:
            return Counter(self._counters)

    def reset_counters(self) -> None:
        with self._lock:
            self._counters.clear()

    @property
    def jobs_created(self) -> list[str]:
        """Slurm ids of every job this gateway submitted, in submit order."""
        with self._lock:
            return list(self._jobs_created)

    def state(self) -> dict[str, Any]:
        """Knobs, counters and created jobs (``GET /_admin/state``)."""
        return {
            "knobs": self.knobs.snapshot(),
            "counters": dict(self.counters),
            "jobs_created": self.jobs_created,
        }
