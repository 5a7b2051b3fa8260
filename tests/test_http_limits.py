"""What an unauthenticated client can cost the HTTP process: a body larger than Slack ever sends
is refused before it is read, a slow client holds no thread, a request without Slack's
signature is refused before anything parses it. Raw sockets against the real process.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.web import BODY_DEADLINE, MAX_BODY_BYTES
from tests.fakes.slack import FakeSlack
from tests.slack_harness import AppProcess, sign, slack_env, slash_command_body

FIFTY_MB = 50 * 1024 * 1024
EVENT = b'{"type": "event_callback"}'


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture(scope="module")
def app(slack, tmp_path_factory) -> Iterator[AppProcess]:
    with AppProcess(slack_env(slack), workdir=tmp_path_factory.mktemp("limits")) as process:
        yield process


def worker_pids(app: AppProcess) -> list[int]:
    """gunicorn's worker processes: the children of the app's master."""
    assert app.process is not None
    pid = app.process.pid
    children: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children += [int(child) for child in f.read().split()]
    return children


def peak_rss_mb(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def connect(app: AppProcess, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", app.port), timeout=timeout)


def request_head(headers: dict[str, str], path: str = "/slack/events") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """(status, whole response) once the server has answered and closed, or sent a length."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = [h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")]
        if length and len(body) >= int(length[0].split(b":")[1]):
            break
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data.split(b" ")[1]), data


def signed_help(app: AppProcess) -> tuple[int, str, float]:
    return app.post_command("help")


# -- large bodies ----------------------------------------------------------------------------
def test_large_bodies_are_refused_before_they_are_read(app):
    """Eight clients each announce 50 MB: each is answered 413 at once, without its body being
    read (the worker's memory stays where it was), and /healthz answers meanwhile."""
    [worker] = worker_pids(app)
    before = peak_rss_mb(worker)

    def announce_fifty_mb(_: int) -> tuple[int, float]:
        with connect(app) as sock:
            head = {"Content-Type": "application/json", "Content-Length": str(FIFTY_MB)}
            sock.sendall(request_head(head) + b"x" * 65536)  # the start of the body
            started = time.monotonic()
            status, _ = read_response(sock)
            return status, time.monotonic() - started

    with ThreadPoolExecutor(8) as pool:
        answers = pool.map(announce_fifty_mb, range(8))
        health = [app.get("/healthz", timeout=2) for _ in range(5)]
        answers = list(answers)
    assert [status for status, _ in answers] == [413] * 8
    assert max(seconds for _, seconds in answers) < 2.0
    assert all(status == 200 and seconds < 1.0 for status, _, seconds in health)
    assert peak_rss_mb(worker) - before < 20, (before, peak_rss_mb(worker))


def test_a_client_pushing_a_whole_large_body_is_cut_off(app):
    """A client that sends its 50 MB regardless finds the connection closed long before."""
    [worker] = worker_pids(app)
    before = peak_rss_mb(worker)
    sent = 0
    with connect(app) as sock:
        sock.sendall(request_head({"Content-Length": str(FIFTY_MB)}))
        piece = b"x" * 65536
        try:
            while sent < FIFTY_MB:
                sent += sock.send(piece)
        except OSError:  # EPIPE / ECONNRESET: the server closed the connection
            pass
    assert sent < FIFTY_MB / 4, f"the server took {sent} bytes of a refused body"
    assert peak_rss_mb(worker) - before < 20


def test_a_chunked_body_without_a_length_is_refused_past_the_limit(app):
    with connect(app) as sock:
        sock.sendall(
            request_head({"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        )
        piece = b"y" * 65536
        for _ in range(MAX_BODY_BYTES // len(piece)):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"1\r\nz\r\n")  # one byte past the limit, no terminating chunk
        status, _ = read_response(sock)
    assert status == 413


def test_a_body_at_the_limit_still_reaches_the_signature_check(app):
    body = b"token=x&text=" + b"a" * (MAX_BODY_BYTES - 13)
    assert len(body) == MAX_BODY_BYTES
    status, text, _ = app.post_signed(body, "application/x-www-form-urlencoded", secret="wrong")
    assert status == 401  # not 413: within the limit, judged by its signature


# -- slow clients ----------------------------------------------------------------------------
def test_slow_senders_hold_no_thread_and_are_cut_off(app, slack):
    """Forty clients trickle a byte a second (half still in their headers, half in a body):
    a signed command is acknowledged within Slack's 3 seconds all the while, and the ones
    stuck in their body are answered 408 after BODY_DEADLINE."""
    stop = threading.Event()
    in_body: list[socket.socket] = []
    sockets: list[socket.socket] = []
    head = request_head({"Content-Type": "application/json", "Content-Length": "200"})

    def trickle(sock: socket.socket, data: bytes) -> None:
        for byte in data:
            if stop.wait(1.0):
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return

    threads = []
    for i in range(40):
        sock = connect(app, timeout=BODY_DEADLINE + 10)
        sockets.append(sock)
        if i % 2:  # headers complete, then the body a byte a second
            sock.sendall(head)
            in_body.append(sock)
            data = b"{" * 200
        else:  # the headers themselves a byte a second
            data = head
        thread = threading.Thread(target=trickle, args=(sock, data), daemon=True)
        thread.start()
        threads.append(thread)
    try:
        time.sleep(1.5)  # every slow client is connected and sending
        started = time.monotonic()
        for _ in range(3):
            status, body, elapsed = signed_help(app)
            assert status == 200 and "Providers here" in body
            assert elapsed < 3.0, f"a signed command waited {elapsed:.1f}s behind slow clients"
            assert app.get("/healthz", timeout=3)[0] == 200
        # the clients stuck in a body are answered 408 once the deadline passes
        with ThreadPoolExecutor(len(in_body)) as pool:
            statuses = list(pool.map(lambda s: read_response(s)[0], in_body))
        assert statuses == [408] * len(in_body)
        assert time.monotonic() - started < BODY_DEADLINE + 5
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
    assert "Traceback" not in app.logs()


# -- signatures ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "content_type", "headers"),
    [
        (b"\xff\xfe not utf-8", "application/x-www-form-urlencoded", None),
        (b"payload=%7Bnot+json", "application/x-www-form-urlencoded", None),
        (b"{not json", "application/json", None),
        (b'{"type": "event_callback"}', "application/json", {"X-Slack-Request-Timestamp": "soon"}),
        (b'{"type": "event_callback"}', "application/json", {"X-Slack-Signature": ""}),
    ],
    ids=["not-utf8", "bad-payload", "bad-json", "bad-timestamp", "no-signature"],
)
def test_unsigned_requests_get_401_and_no_traceback(app, slack, body, content_type, headers):
    slack.reset()
    forged = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(int(time.time())),
        "X-Slack-Signature": "v0=" + "0" * 64,
        **(headers or {}),
    }
    status, text, _, _ = app.request("POST", "/slack/events", body, forged)
    assert status == 401 and text == "invalid request signature"
    time.sleep(0.1)
    assert "Traceback" not in app.logs()
    assert slack.methods_called() == []


def test_a_signed_body_that_is_not_a_payload_gets_400_and_no_traceback(app):
    body = b"payload=%7Bnot+json"
    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
    status, text, _, _ = app.request("POST", "/slack/events", body, headers)
    assert status == 400
    assert "Traceback" not in app.logs()


def test_a_signed_command_still_works(app):
    status, body, elapsed = signed_help(app)
    assert status == 200 and "Providers here" in body and elapsed < 1.0
    status, _, _ = app.post_signed(slash_command_body("help"), "application/x-www-form-urlencoded")
    assert status == 200


def test_a_burst_of_connections_waits_in_the_configured_backlog(app):
    """While the worker is busy (stopped here), the kernel queues new connections up to the
    listen backlog (2048) and drops the SYNs beyond it, which their clients send again only
    a second later: Slack's 3 s would then start with a lost second. gunicorn's asyncio
    worker set asyncio's default backlog, 100, over the configured one."""
    import selectors
    import signal

    workers = worker_pids(app)
    sockets: list[socket.socket] = []
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        with selectors.DefaultSelector() as selector:
            for _ in range(300):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", app.port))
                sockets.append(sock)
                selector.register(sock, selectors.EVENT_WRITE)
            established: set[socket.socket] = set()
            deadline = time.monotonic() + 0.8  # before a dropped SYN's first retry
            while len(established) < len(sockets) and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=0.1):
                    if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        established.add(key.fileobj)
                    selector.unregister(key.fileobj)
        assert len(established) == 300
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        for sock in sockets:
            sock.close()
    status, _ = app.get("/healthz")[:2]
    assert status == 200
