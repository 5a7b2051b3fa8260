"""A small scriptable HTTP server on 127.0.0.1 that the fakes build on.

Each fake subclasses `FakeServer` and implements `answer(request)`. Tests script what the
next calls answer with `enqueue(...)` (a `Reply`, or a callable taking the request and
returning one), set `latency`, and read back every call from `requests`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


HANG_UP = 0  # a Reply with this status closes the connection without answering


@dataclass
class Reply:
    status: int = 200
    body: Any = b""  # bytes, str, or anything JSON-serialisable
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # sent chunk by chunk as it is produced (Transfer-Encoding: chunked), as a server streams
    # server-sent events; `body` is then ignored
    stream: Iterable[bytes] | None = None

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            return self.body, headers
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return self.body.encode(), headers
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(self.body).encode(), headers


Script = Reply | Callable[[RecordedRequest], Reply]


class WindowQuota:
    """At most `limit` calls in any `window` seconds, as Azure OpenAI and Vertex AI evaluate a
    per-minute quota over 10-second windows. Sliding, so never kinder than a fixed window:
    any 10 seconds hold at most `limit` accepted calls. Refused calls are counted."""

    def __init__(self, limit: int, window: float = 10.0) -> None:
        self.limit = limit
        self.window = window
        self.accepted: list[float] = []  # monotonic times of every accepted call
        self.refused = 0
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()

    @classmethod
    def per_minute(cls, requests_per_minute: float, window: float = 10.0) -> WindowQuota:
        return cls(int(requests_per_minute * window / 60), window)

    def take(self) -> float | None:
        """None when the call may go ahead; else the seconds until one may."""
        with self._lock:
            now = time.monotonic()
            while self._recent and self._recent[0] <= now - self.window:
                self._recent.popleft()
            if len(self._recent) < self.limit:
                self._recent.append(now)
                self.accepted.append(now)
                return None
            self.refused += 1
            return self._recent[0] + self.window - now

    def max_in_any_window(self) -> int:
        """The most accepted calls that fell in one window (the check that nothing slipped)."""
        times, best, start = sorted(self.accepted), 0, 0
        for end, moment in enumerate(times):
            while times[start] <= moment - self.window:
                start += 1
            best = max(best, end - start + 1)
        return best


class FakeServer:
    """Threaded HTTP server with a script of replies and a record of requests."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.latency = 0.0
        self._script: deque[tuple[str | None, Script]] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, port: int = 0) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = RecordedRequest(
                    method=self.command,
                    path=parts.path,
                    query={k: v[0] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                reply = fake._dispatch(request)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.status == HANG_UP:  # the connection is lost before any answer
                    self.close_connection = True
                    return
                if reply.stream is not None:
                    self._stream(reply)
                    return
                payload, headers = reply.encoded()
                try:
                    self.send_response(reply.status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test); nothing to answer

            def _stream(self, reply: Reply) -> None:
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for chunk in reply.stream or ():
                        if chunk:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away mid-stream
                except ConnectionAbortedError:  # the server cuts it: no last chunk, closed
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 512

        self._server = Server(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeServer:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server, "start() the fake first"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting ------------------------------------------------------------------------
    def enqueue(self, *replies: Script, path_contains: str | None = None) -> None:
        """The next matching calls answer these, in order; then the default answer resumes."""
        with self._lock:
            self._script.extend((path_contains, r) for r in replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
        self.latency = 0.0

    def quiesce(self, idle: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until no request has arrived for `idle` seconds: the app under test has
        finished what an earlier test started (so it cannot leak into the next one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                last = self.requests[-1].at if self.requests else 0.0
            if time.monotonic() - last >= idle:
                return
            time.sleep(0.05)

    def calls(self, path_contains: str = "") -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if path_contains in r.path]

    def _dispatch(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            scripted = None
            for i, (match, script) in enumerate(self._script):
                if match is None or match in request.path:
                    scripted = script
                    del self._script[i]
                    break
        if self.latency:
            time.sleep(self.latency)
        if scripted is None:
            return self.answer(request)
        return scripted(request) if callable(scripted) else scripted

    def answer(self, request: RecordedRequest) -> Reply:
        """The default answer when nothing is scripted. Subclasses override."""
        return Reply(404, {"error": "not found"})
