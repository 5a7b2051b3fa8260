"""Slack's Socket Mode on 127.0.0.1, for the real slack_sdk Socket Mode client.

As with Slack: the app calls the Web API method `apps.connections.open` with its app-level
token (answered here through `FakeSlack.handle`), gets a one-time websocket URL with a
ticket, connects, receives `{"type": "hello"}`, then envelopes (`slash_commands`,
`events_api`, `interactive`) that it acknowledges with `{"envelope_id", "payload"?}`.
The websocket framing is the `websockets` library's; this file only speaks the envelopes.

    with FakeSlack() as slack, FakeSocketMode(slack) as socket_mode:
        ...start the app with SLACK_APP_TOKEN=socket_mode.app_token...
        session = socket_mode.wait_for_session()
        ack = socket_mode.slash_command("imagen a red fox")
        assert "Drawing" in ack.text and ack.seconds < 1
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from tests.fakes.slack import FakeSlack, SlackError
from tests.slack_harness import API_APP_ID, event_body, slash_command_body

DEFAULT_APP_TOKEN = "xapp-1-A0IMAGINE-1234567890-fakeapplevelsecret"


@dataclass
class Ack:
    """What the app answered to one envelope, and how long it took."""

    envelope_id: str
    payload: dict[str, Any] | None
    seconds: float

    @property
    def text(self) -> str:
        return (self.payload or {}).get("text", "")


@dataclass
class Session:
    """One websocket connection from the app."""

    ticket: str
    connection: ServerConnection
    received: list[dict[str, Any]] = field(default_factory=list)  # every message, in order
    closed: threading.Event = field(default_factory=threading.Event)
    close_code: int | None = None


class FakeSocketMode:
    """`apps.connections.open` on `slack`, plus the websocket server its URLs point at."""

    def __init__(self, slack: FakeSlack, app_token: str = DEFAULT_APP_TOKEN) -> None:
        self.slack = slack
        self.app_token = app_token
        self.sessions: list[Session] = []
        self.tickets: list[str] = []  # issued by apps.connections.open, in order
        self._sent_at: dict[str, float] = {}
        self._acks: dict[str, Ack] = {}
        self._changed = threading.Condition()
        self._server: Server | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> FakeSocketMode:
        # Slack pings and the client pongs; the client's own pings are answered by the
        # library. No server pings here, so a paused test never drops the connection.
        self._server = serve(
            self._serve, "127.0.0.1", 0, ping_interval=None, compression=None, logger=None
        )
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.slack.tokens.add(self.app_token)  # FakeSlack's auth check; _open checks the kind
        self.slack.handle("apps.connections.open", self._open)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> FakeSocketMode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server, "start() the fake first"
        return self._server.socket.getsockname()[1]

    def reset(self) -> None:
        with self._changed:
            self._acks.clear()
            self._sent_at.clear()
            for session in self.sessions:
                session.received.clear()

    # -- Web API: apps.connections.open ---------------------------------------------------
    def _open(self, args: dict[str, Any]) -> dict[str, Any]:
        """Only an app-level token may open a connection (Slack: not_allowed_token_type)."""
        request = self.slack.calls("/api/apps.connections.open")[-1]
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else args.get("token")
        if token != self.app_token:
            raise SlackError("not_allowed_token_type")
        ticket = uuid.uuid4().hex
        with self._changed:
            self.tickets.append(ticket)
        return {"url": f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={API_APP_ID}"}

    # -- the websocket --------------------------------------------------------------------
    def _serve(self, connection: ServerConnection) -> None:
        """One connection: a known ticket gets hello, then its acks are recorded."""
        url = urlsplit(connection.request.path)
        ticket = parse_qs(url.query).get("ticket", [""])[0]
        with self._changed:
            known = url.path == "/link/" and ticket in self.tickets
        if not known:
            connection.close(1008, "invalid ticket")
            return
        session = Session(ticket=ticket, connection=connection)
        with self._changed:
            self.sessions.append(session)
            self._changed.notify_all()
        hello = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {
                "host": "applink-fake-1",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": API_APP_ID},
        }
        try:
            connection.send(json.dumps(hello))
            for raw in connection:
                message = json.loads(raw)
                now = time.monotonic()
                with self._changed:
                    session.received.append(message)
                    envelope_id = message.get("envelope_id")
                    if envelope_id in self._sent_at:
                        self._acks[envelope_id] = Ack(
                            envelope_id, message.get("payload"), now - self._sent_at[envelope_id]
                        )
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            session.close_code = connection.close_code
            session.closed.set()
            with self._changed:
                self._changed.notify_all()

    def wait_for_session(self, timeout: float = 10.0, after: int = 0) -> Session:
        """The newest open connection among `sessions[after:]`, waiting for one."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._open_session(after), timeout):
                raise AssertionError(f"the app did not connect within {timeout}s")
            return self._open_session(after)

    def _open_session(self, after: int = 0) -> Session | None:
        live = [s for s in self.sessions[after:] if not s.closed.is_set()]
        return live[-1] if live else None

    # -- envelopes ------------------------------------------------------------------------
    def send(
        self, kind: str, payload: dict[str, Any], session: Session | None = None, **extra: Any
    ) -> str:
        """Send one envelope on `session` (default: the newest); returns its envelope_id."""
        envelope_id = str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "payload": payload, "type": kind, **extra}
        session = session or self.wait_for_session()
        with self._changed:
            self._sent_at[envelope_id] = time.monotonic()
        session.connection.send(json.dumps(envelope))
        return envelope_id

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> Ack:
        with self._changed:
            if not self._changed.wait_for(lambda: envelope_id in self._acks, timeout):
                raise AssertionError(f"no ack for envelope {envelope_id} within {timeout}s")
            return self._acks[envelope_id]

    def slash_command(
        self, text: str, timeout: float = 5.0, session: Session | None = None, **fields: Any
    ) -> Ack:
        """`/imagine text` as Slack delivers it over Socket Mode, and its acknowledgement."""
        return self.wait_for_ack(self.send_slash_command(text, session, **fields), timeout)

    def send_slash_command(self, text: str, session: Session | None = None, **fields: Any) -> str:
        """`/imagine text` sent, not waited for: the HTTP form's fields; the envelope's id."""
        form = dict(parse_qsl(slash_command_body(text, **fields).decode(), keep_blank_values=True))
        return self.send("slash_commands", form, session, accepts_response_payload=True)

    def event(
        self,
        event: dict[str, Any],
        timeout: float = 5.0,
        session: Session | None = None,
        **fields: Any,
    ) -> Ack:
        """An Events API delivery: the `event_callback` body inside an `events_api` envelope."""
        body = json.loads(event_body(event, **fields))
        envelope_id = self.send(
            "events_api",
            body,
            session,
            accepts_response_payload=False,
            retry_attempt=0,
            retry_reason="",
        )
        return self.wait_for_ack(envelope_id, timeout)
