"""End to end in Socket Mode: `python -m bot serve` with SLACK_APP_TOKEN as a real process.

The real slack_sdk Socket Mode client (the one Bolt's SocketModeHandler uses) opens its
connection with `apps.connections.open` at SLACK_API_URL, then talks over a real websocket
on 127.0.0.1 to tests/fakes/socket_mode.py; pictures go to FakeSlack as in HTTP mode.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping

import pytest

from bot.generation.types import ImageRequest
from bot.slack import buttons
from bot.slack.app import LISTENER_THREADS
from bot.votes.db import VoteStore
from tests.fakes.images import png_bytes
from tests.fakes.slack import FakeSlack, shared_words
from tests.fakes.socket_mode import FakeSocketMode
from tests.fakes.vertex import FakeVertexAI, service_account_info
from tests.slack_harness import AppProcess, block_actions_payload, event_body, reaction_added

POSITIONS = {
    "A": {"provider": "imagen", "model": "gemini-3.1-flash-image"},
    "B": {"provider": "dalle3", "model": "gpt-image-2"},
}


class SocketModeApp(AppProcess):
    """AppProcess without HTTP: started once its websocket reaches the fake."""

    def __init__(self, env: Mapping[str, str], socket_mode: FakeSocketMode, **kwargs) -> None:
        super().__init__(env, **kwargs)
        self.env.pop("PORT")  # Socket Mode listens on nothing
        self.socket_mode = socket_mode

    def start(self) -> SocketModeApp:
        self._known = len(self.socket_mode.sessions)  # another app may be connected already
        super().start()
        return self

    def ready(self) -> bool:
        """Socket Mode is ready when the app's websocket reaches the fake."""
        try:
            self.session = self.socket_mode.wait_for_session(timeout=0.1, after=self._known)
            return True
        except AssertionError:
            return False


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeSlack, FakeVertexAI, FakeSocketMode]]:
    with FakeSlack() as slack, FakeVertexAI() as vertex, FakeSocketMode(slack) as socket_mode:
        yield slack, vertex, socket_mode


def socket_env(slack: FakeSlack, vertex: FakeVertexAI, socket_mode: FakeSocketMode) -> dict:
    """Socket Mode settings: an app-level token and no signing secret."""
    key = service_account_info(token_uri=vertex.url + "/token")
    return {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_APP_TOKEN": socket_mode.app_token,
        "SLACK_API_URL": slack.url + "/api/",
        "GOOGLE_CLOUD_PROJECT": "test-project",
        "GOOGLE_SERVICE_ACCOUNT_JSON": json.dumps(key),
        "VERTEX_AI_BASE_URL": vertex.url,
        "IMAGINE_RETRY_BACKOFF": "0.01",
        "IMAGINE_PROVIDER_TIMEOUT": "5",
    }


@pytest.fixture(scope="module")
def app(fakes, tmp_path_factory) -> Iterator[SocketModeApp]:
    slack, vertex, socket_mode = fakes
    process = SocketModeApp(
        socket_env(*fakes), socket_mode, workdir=tmp_path_factory.mktemp("socket-app")
    )
    with process:
        yield process


@pytest.fixture(autouse=True)
def clean(fakes):
    slack, vertex, _ = fakes
    slack.quiesce()  # the previous test's job may still be finishing its upload
    for fake in fakes:
        fake.reset()


def test_connects_with_the_app_token_through_slack_api_url(app, fakes):
    slack, _, socket_mode = fakes
    session = app.session
    assert session.ticket in socket_mode.tickets  # the URL apps.connections.open gave
    assert not session.closed.is_set()
    assert socket_mode.app_token not in app.logs() and slack.token not in app.logs()


def test_help_is_acknowledged_over_the_websocket(app, fakes):
    slack, vertex, socket_mode = fakes
    ack = socket_mode.slash_command("help", session=app.session)
    assert "*Providers here:*" in ack.text and "--ar" in ack.text
    assert "`imagen` (default) — also google, gemini: ready" in ack.text  # the one configured
    assert "`dalle3` — also dalle, dall-e, openai, gpt-image: not configured" in ack.text
    assert ack.payload["blocks"][0]["text"]["text"] == ack.text  # Block Kit, as in HTTP mode
    sent = [m for m in app.session.received if m.get("envelope_id") == ack.envelope_id]
    assert sent == [{"envelope_id": ack.envelope_id, "payload": ack.payload}]
    time.sleep(0.2)
    assert slack.methods_called() == [] and not vertex.requests


def test_imagen_is_acknowledged_at_once_then_uploaded(app, fakes):
    slack, vertex, socket_mode = fakes
    url = slack.response_url()
    ack = socket_mode.slash_command("imagen a red fox", session=app.session, response_url=url)
    assert ack.seconds < 1.0, f"ack took {ack.seconds:.2f}s"
    assert "Drawing" in ack.text and "gemini-3.1-flash-image" in ack.text
    files = slack.wait_for(lambda: slack.uploaded_files)
    assert files[0].data == png_bytes("a red fox") or files[0].data[:8] == b"\x89PNG\r\n\x1a\n"
    complete = slack.calls_to("files.completeUploadExternal")[0]
    assert complete["channel_id"] == "C123"
    assert "a red fox" in shared_words(complete) and "<@U123>" in shared_words(complete)
    assert vertex.api_calls()[0].json()["contents"][0]["parts"][0]["text"] == "a red fox"
    assert not slack.responses_to(url)
    # Every Web API call of the bot used the bot token, never the app-level one.
    auths = {r.headers.get("authorization") for r in slack.calls("/api/")}
    assert auths == {f"Bearer {slack.token}"}


def test_a_command_is_answered_while_every_listener_thread_waits_on_slack(app, fakes):
    """A slash command runs on its envelope's own thread (the commands-only app, as in HTTP
    mode): with every listener thread held by clicks waiting on a slow Slack (people opening
    the form from Edit prompt), a command is still answered at once."""
    slack, _, socket_mode = fakes
    ref = buttons.PictureRef("U123", ImageRequest(prompt="a slow morning"), provider="imagen")
    slack.latency = 2.0
    try:
        for i in range(LISTENER_THREADS):  # by different people: each click is its own
            click = block_actions_payload(
                buttons.EDIT_ACTION,
                buttons.encode(ref),
                user_id=f"U{i:03d}",
                trigger_id=slack.trigger(),
            )
            socket_mode.send("interactive", click, app.session, accepts_response_payload=False)
        slack.wait_for(lambda: len(slack.calls_to("views.open")) == LISTENER_THREADS)
        ack = socket_mode.slash_command("help", session=app.session)
        assert "*Providers here:*" in ack.text
        assert ack.seconds < 1.0, f"ack took {ack.seconds:.2f}s"
    finally:
        slack.latency = 0.0
        time.sleep(2.5)  # the slow calls end and free their threads before the next test


def test_a_job_waits_for_the_envelopes_being_answered_but_no_longer_than_the_hold(app, fakes):
    """Acknowledgements first, as in HTTP mode: a picture accepted while another envelope is
    still being answered (a bare `/imagine` waiting 2 s on `views.open`) is acknowledged at
    once, and its drawing starts after the hold, not before it nor only once the slow
    envelope is answered."""
    slack, vertex, socket_mode = fakes
    socket_mode.slash_command("imagen a warm up", session=app.session)
    slack.wait_for(lambda: slack.uploaded_files)  # the token and connections are ready
    slack.latency = 2.0
    try:
        form = socket_mode.send_slash_command("", app.session, trigger_id=slack.trigger())
        slack.wait_for(lambda: slack.calls_to("views.open"))
        before = len(vertex.api_calls())
        sent = time.monotonic()  # the job is accepted after this, and held 0.25 s from then
        ack = socket_mode.slash_command("imagen a quiet harbour", session=app.session)
        assert "Drawing" in ack.text and ack.seconds < 1.0
        drawn = slack.wait_for(lambda: vertex.api_calls()[before:], timeout=10)[0]
        assert 0.24 <= drawn.at - sent < 1.5  # the form's envelope ends ~2 s after `sent`
        socket_mode.wait_for_ack(form)
    finally:
        slack.latency = 0.0
        time.sleep(2.5)  # the picture's slow upload ends before the next test


def test_events_arrive_and_are_acknowledged(app, fakes):
    slack, _, socket_mode = fakes
    # a thumb on somebody else's message
    reaction = reaction_added("U9", "thumbsup", "C123", "1700000000.000100", item_user="U5")
    ack = socket_mode.event(reaction, session=app.session)
    assert ack.payload is None and ack.seconds < 1.0  # an empty ack: {"envelope_id": ...}
    time.sleep(0.2)
    assert slack.methods_called() == []  # not one of our posts: no vote, no call


def test_a_vote_the_database_cannot_take_is_not_acknowledged(fakes, tmp_path):
    """Over Socket Mode an event is acknowledged with its envelope_id; a vote that could not be
    stored must not be, so that Slack delivers it again (a new envelope, the same event_id)."""
    slack, _, socket_mode = fakes
    path = tmp_path / "votes.db"
    store = VoteStore(f"sqlite:///{path}")
    ts = "1700000000.000500"
    cid = store.register_comparison("C123", ts, "U1", "a fox", POSITIONS)
    env = {**socket_env(*fakes), "DATABASE_URL": f"sqlite:///{path}?timeout=0.5"}
    app = SocketModeApp(env, socket_mode, workdir=tmp_path / "app").start()
    try:
        vote = json.loads(event_body(reaction_added("U9", "a", "C123", ts), event_id="EvSOCK1"))
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            first = socket_mode.send("events_api", vote, app.session, retry_attempt=0)
            with pytest.raises(AssertionError, match="no ack"):
                socket_mode.wait_for_ack(first, timeout=2.0)
        finally:
            locker.execute("COMMIT")
            locker.close()
        again = socket_mode.send(
            "events_api", vote, app.session, retry_attempt=1, retry_reason="timeout"
        )
        assert socket_mode.wait_for_ack(again, timeout=5.0).payload is None
        assert store.votes(cid) == {"U9": "A"}
    finally:
        app.stop()
        store.close()


def test_sigterm_finishes_the_pictures_in_flight_then_exits_0(fakes, tmp_path):
    """Heroku restarts dynos daily with SIGTERM (then SIGKILL 30 s later): a picture whose
    "Drawing…" was already acknowledged must still be delivered, then the process exits 0."""
    slack, vertex, socket_mode = fakes
    app = SocketModeApp(socket_env(*fakes), socket_mode, workdir=tmp_path).start()
    session = app.session
    vertex.latency = 1.0  # the picture is still being drawn when SIGTERM arrives
    ack = socket_mode.slash_command("imagen a lighthouse", session=session)
    assert "Drawing" in ack.text
    started = time.monotonic()
    code = app.stop(timeout=10)
    stopped_in = time.monotonic() - started
    assert session.closed.wait(5), "the websocket stayed open after the app stopped"
    logs = app.logs()
    assert "Traceback" not in logs, logs
    assert slack.uploaded_files, f"the acknowledged picture was lost (exit status {code}):\n{logs}"
    assert "a lighthouse" in shared_words(slack.calls_to("files.completeUploadExternal")[0])
    assert code == 0, f"exit status {code} after SIGTERM:\n{logs}"
    assert stopped_in < 8


@pytest.mark.parametrize(
    ("app_token", "error"),
    [
        ("xapp-1-A0IMAGINE-1-revoked-token-secret", "invalid_auth"),
        (None, "not_allowed_token_type"),  # the bot token pasted into SLACK_APP_TOKEN
    ],
    ids=["revoked", "bot-token"],
)
def test_a_refused_app_token_stops_start_up_with_one_line(fakes, tmp_path, app_token, error):
    slack, _, socket_mode = fakes
    token = app_token or slack.token
    app = SocketModeApp(
        {**socket_env(*fakes), "SLACK_APP_TOKEN": token}, socket_mode, workdir=tmp_path
    )
    with pytest.raises(RuntimeError):
        app.start()
    assert app.returncode == 2, app.logs()
    logs = app.logs()
    assert "Traceback" not in logs and token not in logs, logs
    last = [line for line in logs.splitlines() if line.strip()][-1]
    assert last.startswith(f"error: Slack refused SLACK_APP_TOKEN ({error}): "), logs
