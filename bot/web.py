"""The HTTP mode: an ASGI app on gunicorn's asyncio worker, with `/healthz` and `/metrics`.

Why not a thread per connection (gunicorn's gthread worker): a thread there blocks while its
client sends, so forty clients sending a byte a second take every thread, and a body was read
whole (any size) and parsed before its signature was checked. Here the event loop reads every
request; a request reaches Bolt, on a thread, only when its body is complete, at most
`MAX_BODY_BYTES`, arrived within `BODY_DEADLINE`, and carries Slack's signature.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gunicorn.workers.gasgi import ASGIWorker
from slack_bolt import BoltResponse
from slack_bolt.request import BoltRequest
from slack_sdk.signature import SignatureVerifier

from bot import metrics
from bot.config import Config
from bot.slack.app import build_app, build_web_client, listener_pool, publisher_factory
from bot.wiring import build_for_slack

log = logging.getLogger("imagine.web")

EVENTS_PATH = "/slack/events"
MAX_BODY_BYTES = 1 << 20  # 1 MiB: Slack's payloads are a few KB; a wide margin
BODY_DEADLINE = 10.0  # seconds for a whole body once its headers are in; Slack sends at once
EXIT_GRACE = 1.0  # seconds after the drain for gunicorn to close the connections and exit

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Refused(Exception):
    """A request answered before Bolt sees it (413, 408, 401, 400)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class ImagineHttpApp:
    """`POST /slack/events` (Bolt), `GET /healthz`, `GET /metrics`, as one ASGI app.

    Built once, before gunicorn forks (`preload_app`); `after_fork()` runs in each worker
    process. `stop()` begins the drain at SIGTERM, `end()` ends the process after it.
    """

    def __init__(self, config: Config) -> None:
        assert config.slack.signing_secret, "HTTP mode needs SLACK_SIGNING_SECRET"
        client = build_web_client(config)
        self.services = build_for_slack(config, publisher_factory(config, client))
        self.listeners = listener_pool()
        self.bolt = build_app(config, self.services, client, self.listeners)
        self.commands = build_app(config, self.services, client, self.listeners, commands_only=True)
        self.verifier = SignatureVerifier(config.slack.signing_secret)
        self.stop_wait = config.jobs.stop_wait
        # Bolt's dispatch (parse, run the listener until it acknowledges) blocks: off the loop.
        self._dispatch = ThreadPoolExecutor(config.http.threads, thread_name_prefix="http")
        self._stopper: threading.Thread | None = None

    # -- ASGI --------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets here: returning closes the connection
        path, method = scope.get("path"), scope.get("method")
        if path == "/healthz":
            await _answer(send, 200, b"ok")
        elif path == "/metrics" and method == "GET":
            loop = asyncio.get_running_loop()
            body, content_type = await loop.run_in_executor(self._dispatch, metrics.exposition)
            await _answer(send, 200, body, content_type)
        elif path == EVENTS_PATH and method == "POST":
            await self._slack(scope, receive, send)
        else:
            await _answer(send, 404, b"not found")

    async def _slack(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        try:
            body = await read_body(headers, receive)
            text = self._signed(body, headers)
        except Refused as refused:
            log.info("refused a request to %s: %d %s", EVENTS_PATH, refused.status, refused.text)
            await _answer(send, refused.status, refused.text.encode(), close=True)
            return
        except ClientGone:
            return
        query = scope.get("query_string", b"").decode("latin-1")
        loop = asyncio.get_running_loop()
        with self.services.runner.gate.acknowledging():  # our jobs start once it is sent
            response = await loop.run_in_executor(self._dispatch, self._bolt, text, query, headers)
            content_type = response.headers.get("content-type", ["text/plain;charset=utf-8"])[0]
            extra = [
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, values in response.headers.items()
                if name not in ("content-type", "content-length")
                for value in values
            ]
            await _answer(send, response.status, response.body.encode(), content_type, extra)

    def _bolt(self, body: str, query: str, headers: dict[str, str]) -> BoltResponse:
        """Bolt parses the signed body and runs the listener until it acknowledges (a slash
        command's until it returns: `build_app(commands_only=True)`)."""
        try:
            request = BoltRequest(body=body, query=query, headers=headers)
        except Exception as err:  # signed by Slack, yet not a payload
            log.warning("a signed request is not a Slack payload: %s", type(err).__name__)
            return BoltResponse(status=400, body="bad request")
        app = self.commands if "command" in request.body else self.bolt  # a slash command
        return app.dispatch(request)

    def _signed(self, body: bytes, headers: dict[str, str]) -> str:
        """The body as text, when Slack signed it with our secret (and less than 5 minutes
        ago); else `Refused(401)`. Checked before anything parses the body."""
        timestamp = headers.get("x-slack-request-timestamp", "")
        try:
            text = body.decode("utf-8")
            int(timestamp)  # the verifier would raise on a timestamp that is not a number
        except ValueError:  # UnicodeDecodeError included: Slack sends UTF-8
            raise Refused(401, "invalid request signature") from None
        if not self.verifier.is_valid(text, timestamp, headers.get("x-slack-signature")):
            raise Refused(401, "invalid request signature")
        return text

    # -- the process's life ------------------------------------------------------------------
    def after_fork(self) -> None:
        """In each worker process, before it serves: nothing shared with the master."""
        self.services.after_fork()

    def stop(self) -> None:
        """SIGTERM: begin the drain at once (it has IMAGINE_WORKER_STOP_WAIT seconds) while
        gunicorn closes the connections; `end()`, from gunicorn's worker-exit hook, waits for
        it and ends the process."""
        if self._stopper is None:
            deadline = time.monotonic() + self.stop_wait
            self._stopper = threading.Thread(
                target=self._stop, args=(deadline,), name="stop", daemon=True
            )
            self._stopper.start()

    @property
    def stopping(self) -> bool:
        return self._stopper is not None

    def _stop(self, deadline: float) -> None:
        self.drain(deadline)
        # gunicorn ends the process once its connections are closed (`end`); slow clients can
        # hold them open until the SIGKILL, and a job still drawing must not post after its
        # person was told it was interrupted.
        time.sleep(EXIT_GRACE)
        _end_process()

    def end(self) -> None:
        """The worker is exiting after SIGTERM: let the drain finish, then end the process at
        once (job threads still drawing must not hold it open until the SIGKILL)."""
        if self._stopper is not None:
            self._stopper.join()
        _end_process()

    def drain(self, deadline: float | None = None) -> None:
        """Finish what was accepted, by `deadline` when given; tell the people whose pictures
        will not arrive. The runner stops first, so a job a listener hands over after it is
        told at once; then the listeners finish."""
        assert self.services.runner is not None
        self.services.runner.drain(deadline)
        self.listeners.shutdown(wait=True)
        self._dispatch.shutdown(wait=True)  # commands run their listener there
        self.services.close()


def _end_process() -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def create_app(config: Config | None = None) -> ImagineHttpApp:
    """`gunicorn -k bot.web.ImagineWorker 'bot.web:create_app()'` also works, for custom
    deployments (`python -m bot serve` sets the rest: preload, hooks, timeouts)."""
    return ImagineHttpApp(config or Config.from_env())


class ImagineWorker(ASGIWorker):
    """gunicorn's asyncio worker; on SIGTERM the app starts draining its jobs at once, rather
    than after the connections have closed (which slow clients can stretch to the kill)."""

    def _setup_event_loop(self) -> None:
        """gunicorn 27 serves the listening socket with asyncio's default backlog (100),
        which replaces the configured one on the socket: in a burst of more than 100
        connections while the loop was busy, the kernel dropped SYNs, which their clients
        send again only a second later (uvicorn's worker had the same bug, its #544). Every
        server this loop starts gets the configured backlog."""
        super()._setup_event_loop()
        create_server, backlog = self.loop.create_server, self.cfg.backlog

        async def create_server_with_backlog(*args: Any, **kwargs: Any) -> asyncio.Server:
            kwargs.setdefault("backlog", backlog)
            return await create_server(*args, **kwargs)

        self.loop.create_server = create_server_with_backlog  # type: ignore[method-assign]

    def handle_exit_signal(self) -> None:
        super().handle_exit_signal()
        stop = getattr(self.asgi, "stop", None)
        if stop is not None:
            stop()


class ClientGone(Exception):
    """The client closed the connection before its body was in."""


async def read_body(headers: dict[str, str], receive: Receive) -> bytes:
    """The request body, refusing (413) one larger than `MAX_BODY_BYTES` before reading it when
    it says its length, as soon as it passes the limit when it does not (chunked), and (408)
    one that takes longer than `BODY_DEADLINE` to arrive."""
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refused(400, "bad Content-Length")
        if int(declared) > MAX_BODY_BYTES:
            raise Refused(413, f"request body larger than {MAX_BODY_BYTES} bytes")
    return await _collect(receive, asyncio.get_running_loop().time() + BODY_DEADLINE)


async def _collect(receive: Receive, deadline: float) -> bytes:
    """Every chunk of the body, by `deadline` (the loop's clock). The deadline is checked
    after each chunk as well: on Python 3.11 a timeout that fires as a chunk arrives can be
    lost inside the server's own wait, and a client sending a byte a second would go on."""
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise Refused(408, "request body too slow")
        try:
            async with asyncio.timeout(remaining):
                message = await receive()
        except TimeoutError:
            raise Refused(408, "request body too slow") from None
        if message["type"] != "http.request":
            raise ClientGone  # http.disconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refused(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    """Header name (lower case) -> value; a repeated header keeps its first value."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    extra: list[tuple[bytes, bytes]] | None = None,
    *,
    close: bool = False,
) -> None:
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
        *(extra or ()),
    ]
    if close:  # a refused body may still be on its way: do not read it as the next request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start (the services are built before the fork) or to stop here (the worker's
    exit hook drains): acknowledge both."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
