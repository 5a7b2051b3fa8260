"""End-to-end helpers: run the app as a real process and talk to it exactly as Slack does.

`AppProcess` starts `python -m bot serve` in HTTP mode with a chosen environment, waits for
`GET /healthz`, and sends signed slash commands, events and button clicks to
`POST /slack/events`. The body builders produce the payloads Slack sends, field for field,
so Bolt's own parsing and signature checks run unmodified.

    with FakeSlack() as slack, AppProcess(slack_env(slack, DATABASE_URL=...)) as app:
        status, body, elapsed = app.post_command("imagen a red fox", response_url=...)
        slack.wait_for(lambda: slack.messages("C123"))
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk.signature import SignatureVerifier

from tests.fakes.slack import FakeSlack
from tests.fakes.vertex import service_account_info

REPO_ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "fake-signing-secret-8f14e45fceea167a5a36dedd4bea2543"
TEAM_ID = "T1"
TEAM_DOMAIN = "imagine-test"
API_APP_ID = "A0IMAGINE"
VERIFICATION_TOKEN = "legacy-verification-token"


# -- signing ------------------------------------------------------------------------------
def sign(
    body: bytes | str, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """The two headers Slack adds: `v0=` + HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    raw = body.encode() if isinstance(body, str) else body
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=raw)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


# -- payloads -----------------------------------------------------------------------------
def slash_command_body(
    text: str,
    user_id: str = "U123",
    channel_id: str = "C123",
    channel_name: str = "general",
    response_url: str = "https://hooks.slack.com/commands/T1/1/abc",
    command: str = "/imagine",
    team_id: str = TEAM_ID,
    trigger_id: str | None = None,
    user_name: str = "alice",
) -> bytes:
    """The form-encoded body of a slash command, with the fields in Slack's order."""
    fields = [
        ("token", VERIFICATION_TOKEN),
        ("team_id", team_id),
        ("team_domain", TEAM_DOMAIN),
        ("channel_id", channel_id),
        ("channel_name", channel_name),
        ("user_id", user_id),
        ("user_name", user_name),
        ("command", command),
        ("text", text),
        ("api_app_id", API_APP_ID),
        ("is_enterprise_install", "false"),
        ("response_url", response_url),
        ("trigger_id", trigger_id or f"1337.42.{uuid.uuid4().hex}"),
    ]
    return urlencode(fields).encode()


def event_body(
    event: dict[str, Any],
    event_id: str | None = None,
    team_id: str = TEAM_ID,
    bot_user_id: str = "UBOT",
    event_time: int | None = None,
) -> bytes:
    """Slack's `event_callback` envelope around `event`, as JSON bytes."""
    envelope = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": API_APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": event_time or int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }
    return json.dumps(envelope).encode()


def url_verification_body(
    challenge: str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
) -> bytes:
    return json.dumps(
        {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
    ).encode()


def _reaction_event(
    kind: str, user: str, reaction: str, channel: str, ts: str, item_user: str
) -> dict[str, Any]:
    return {
        "type": kind,
        "user": user,
        "reaction": reaction.strip(":"),
        "item_user": item_user,
        "item": {"type": "message", "channel": channel, "ts": ts},
        "event_ts": f"{time.time():.6f}",
    }


def reaction_added(
    user: str, reaction: str, channel: str, ts: str, item_user: str = "UBOT"
) -> dict[str, Any]:
    """A `reaction_added` event: `reaction` is the emoji name without colons."""
    return _reaction_event("reaction_added", user, reaction, channel, ts, item_user)


def reaction_removed(
    user: str, reaction: str, channel: str, ts: str, item_user: str = "UBOT"
) -> dict[str, Any]:
    return _reaction_event("reaction_removed", user, reaction, channel, ts, item_user)


def block_actions_payload(
    action_id: str,
    value: str = "",
    user_id: str = "U123",
    channel_id: str = "C123",
    message_ts: str = "1700000000.000100",
    response_url: str = "https://hooks.slack.com/actions/T1/1/abc",
    block_id: str = "actions",
    message: dict[str, Any] | None = None,
    team_id: str = TEAM_ID,
    is_ephemeral: bool = False,
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """The `block_actions` payload Slack sends when someone clicks a button."""
    container = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel_id,
        "is_ephemeral": is_ephemeral,
    }
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": "alice", "name": "alice", "team_id": team_id},
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": container,
        "trigger_id": trigger_id or f"1337.42.{uuid.uuid4().hex}",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "general"},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": action_id, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    if not is_ephemeral:
        payload["message"] = message or {
            "type": "message",
            "user": "UBOT",
            "ts": message_ts,
            "text": "",
            "blocks": [],
        }
    return payload


def view_submission_payload(
    view: dict[str, Any],
    values: dict[str, Any],
    user_id: str = "U123",
    team_id: str = TEAM_ID,
) -> dict[str, Any]:
    """The `view_submission` payload: the view as Slack keeps it (`FakeSlack.views()`), with
    `values` (block_id -> what was typed or chosen) as its state, in Slack's shape."""
    state: dict[str, Any] = {}
    for block in view.get("blocks") or []:
        if block.get("type") != "input":
            continue
        element = block["element"]
        given = values.get(block["block_id"])
        if element["type"] == "static_select":
            chosen = next((o for o in element["options"] if o["value"] == given), None)
            if given is None:
                chosen = element.get("initial_option")
            entry = {"type": "static_select", "selected_option": chosen}
        else:
            entry = {"type": "plain_text_input", "value": given}
            if given is None:
                entry["value"] = element.get("initial_value")
        state[block["block_id"]] = {element["action_id"]: entry}
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": {"id": user_id, "username": "alice", "name": "alice", "team_id": team_id},
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": f"1337.42.{uuid.uuid4().hex}",
        "view": {**view, "state": {"values": state}},
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def message_action_payload(
    text: str,
    trigger_id: str,
    user_id: str = "U123",
    channel_id: str = "C123",
    message_ts: str = "1700000000.000200",
    author: str = "U999",
    response_url: str = "https://hooks.slack.com/app/T1/1/abc",
    callback_id: str = "imagine_this",
    team_id: str = TEAM_ID,
) -> dict[str, Any]:
    """The `message_action` payload of a message shortcut."""
    return {
        "type": "message_action",
        "token": VERIFICATION_TOKEN,
        "action_ts": f"{time.time():.6f}",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": {"id": user_id, "username": "alice", "name": "alice", "team_id": team_id},
        "channel": {"id": channel_id, "name": "general"},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id,
        "response_url": response_url,
        "message_ts": message_ts,
        "message": {"type": "message", "user": author, "ts": message_ts, "text": text},
    }


def payload_body(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def block_actions_body(**kwargs: Any) -> bytes:
    """Interactivity arrives form-encoded as `payload=<json>`."""
    return urlencode({"payload": json.dumps(block_actions_payload(**kwargs))}).encode()


def channel_message(
    text: str,
    channel: str = "C123",
    user: str = "U123",
    thread_ts: str | None = None,
    channel_type: str = "channel",
    **extra: Any,
) -> dict[str, Any]:
    """A `message` event (message.channels / message.groups): a person's message, a reply in
    a thread with `thread_ts`; `extra` adds or overrides fields (subtype, bot_id...)."""
    ts = f"{time.time():.6f}"
    event: dict[str, Any] = {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": ts,
        "event_ts": ts,
        "channel_type": channel_type,
        "client_msg_id": str(uuid.uuid4()),
        "team": TEAM_ID,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = "UBOT"
    event.update(extra)
    return event


def message_action_body(
    callback_id: str,
    message: dict[str, Any],
    trigger_id: str,
    channel_id: str = "C123",
    user_id: str = "U123",
    response_url: str = "https://hooks.slack.com/app/T1/1/abc",
) -> bytes:
    """A message shortcut (`message_action`) as Slack sends it, form-encoded."""
    payload = {
        "type": "message_action",
        "token": VERIFICATION_TOKEN,
        "action_ts": f"{time.time():.6f}",
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "user": {"id": user_id, "username": "alice", "name": "alice", "team_id": TEAM_ID},
        "channel": {"id": channel_id, "name": "general"},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id,
        "response_url": response_url,
        "message_ts": message["ts"],
        "message": {k: v for k, v in message.items() if k != "channel"},
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def view_submission_body(
    view: dict[str, Any], values: dict[str, dict[str, Any]], user_id: str = "U123"
) -> bytes:
    """The `view_submission` Slack sends when a person submits the modal `view` (as opened,
    with its `id`), `values` being its state: {block_id: {action_id: element state}}."""
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "user": {"id": user_id, "username": "alice", "name": "alice", "team_id": TEAM_ID},
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": f"1337.42.{uuid.uuid4().hex}",
        "view": {
            **view,
            "team_id": TEAM_ID,
            "state": {"values": values},
            "hash": uuid.uuid4().hex[:16],
            "app_id": API_APP_ID,
            "bot_id": "BBOT",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


# -- the app as a process -----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slack_env(slack: FakeSlack, **extra: str) -> dict[str, str]:
    """The Slack settings that point the app at `slack` (HTTP mode: no SLACK_APP_TOKEN)."""
    return {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.url + "/api/",
        **extra,
    }


def vertex_env(vertex) -> dict[str, str]:
    """The settings that point Vertex AI at the fake, with a service-account key it trusts."""
    key = service_account_info(token_uri=vertex.url + "/token")
    return {
        "GOOGLE_CLOUD_PROJECT": "test-project",
        "GOOGLE_SERVICE_ACCOUNT_JSON": json.dumps(key),
        "VERTEX_AI_BASE_URL": vertex.url,
    }


def providers_env(
    vertex, openai, key: dict[str, str], deployment: str = "img", model: str = "gpt-image-2"
) -> dict[str, str]:
    """The settings that point both providers at the fakes: Vertex AI with a service-account
    key it trusts, and an Azure OpenAI deployment."""
    return {
        "GOOGLE_CLOUD_PROJECT": "test-project",
        "GOOGLE_SERVICE_ACCOUNT_JSON": json.dumps(key),
        "VERTEX_AI_BASE_URL": vertex.url,
        "AZURE_OPENAI_ENDPOINT": openai.url,
        "AZURE_OPENAI_API_KEY": openai.azure_api_key,
        "AZURE_OPENAI_IMAGE_DEPLOYMENT": deployment,
        "OPENAI_IMAGE_MODEL": model,
    }


class AppProcess:
    """`python -m bot serve` as a subprocess, with its output captured to a file."""

    def __init__(
        self,
        env: Mapping[str, str],
        args: tuple[str, ...] = ("-m", "bot", "serve"),
        startup_timeout: float = 30.0,
        python: str = sys.executable,
        workdir: Path | None = None,
    ) -> None:
        self.port = int(env.get("PORT") or free_port())
        self.signing_secret = env.get("SLACK_SIGNING_SECRET", SIGNING_SECRET)
        # Its own working directory and HOME: no stray .env, database, gunicorn control
        # socket or the developer's cloud credentials leak into (or out of) the test.
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="imagine-app-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "app.log"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "LANG": "C.UTF-8",
            **dict(env),
            "PORT": str(self.port),
        }
        self.args = args
        self.python = python
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AppProcess:
        """Launch the app and wait until `ready()` says it serves."""
        log = self.log_path.open("wb")
        try:
            self.process = subprocess.Popen(
                [self.python, *self.args],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()  # the child holds its own descriptor
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.returncode = self.process.returncode
                raise RuntimeError(
                    f"the app exited with status {self.returncode} before it was ready; "
                    f"its output:\n{self.logs()}"
                )
            if self.ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"the app was not ready within {self.startup_timeout}s; its output:\n{self.logs()}"
        )

    def ready(self) -> bool:
        """HTTP mode is ready when GET /healthz answers 200."""
        try:
            return self.get("/healthz", timeout=1)[0] == 200
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (as Heroku and Cloud Run send), then SIGKILL if it lingers."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            self.returncode = proc.returncode if proc else None
            return self.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        self.returncode = proc.returncode
        return self.returncode

    def logs(self) -> str:
        """Everything the app wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> AppProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- talking to it --------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, str, float, dict[str, str]]:
        """(status, body text, elapsed seconds, response headers); HTTP errors are returned."""
        req = urllib.request.Request(
            self.url + path, data=body, method=method, headers=dict(headers or {})
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw, got = resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            status, raw, got = err.code, err.read(), dict(err.headers)
        return status, raw.decode("utf-8", "replace"), time.monotonic() - started, got

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, str, float]:
        status, text, elapsed, _ = self.request("GET", path, timeout=timeout)
        return status, text, elapsed

    def post_signed(
        self,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
        secret: str | None = None,
        timestamp: int | None = None,
        path: str = "/slack/events",
    ) -> tuple[int, str, float]:
        """POST `body` signed as Slack signs it (pass another `secret` to forge a bad one)."""
        all_headers = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            **sign(body, secret or self.signing_secret, timestamp),
            **dict(headers or {}),
        }
        status, text, elapsed, _ = self.request("POST", path, body, all_headers)
        return status, text, elapsed

    def post_command(self, text: str, **fields: Any) -> tuple[int, str, float]:
        """A slash command; `fields` go to `slash_command_body` (user_id, response_url...)."""
        signing = {k: fields.pop(k) for k in ("secret", "timestamp") if k in fields}
        body = slash_command_body(text, **fields)
        return self.post_signed(body, "application/x-www-form-urlencoded", **signing)

    def post_event(
        self,
        event: dict[str, Any],
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        **fields: Any,
    ) -> tuple[int, str, float]:
        """An Events API delivery; `retry_num` adds the headers of Slack's redelivery."""
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason}
        body = event_body(event, **fields)
        return self.post_signed(body, "application/json", headers=headers)

    def react(
        self,
        slack: FakeSlack,
        user: str,
        reaction: str,
        channel: str,
        ts: str,
        added: bool = True,
        retry_num: int | None = None,
        **fields: Any,
    ) -> int | None:
        """A person reacts (or, `added=False`, removes a reaction) in `slack`; the event is
        sent to the app only if Slack would send it (the bot is a member of the channel).
        Returns the app's HTTP status, or None when Slack sends nothing. `fields` go to
        `event_body` (event_id ...); `event_ts=` sets the event's own timestamp."""
        event_ts = fields.pop("event_ts", None)
        if added:
            slack.add_user_reaction(channel, ts, reaction, user)
            event = reaction_added(user, reaction, channel, ts)
        else:
            slack.remove_user_reaction(channel, ts, reaction, user)
            event = reaction_removed(user, reaction, channel, ts)
        if event_ts:
            event["event_ts"] = event_ts
        if not slack.delivers_events_from(channel):
            return None
        return self.post_event(event, retry_num=retry_num, **fields)[0]

    def post_payload(self, payload: dict[str, Any]) -> tuple[int, str, float]:
        """Any interactivity payload (a view submission, a shortcut), form-encoded and signed."""
        return self.post_signed(payload_body(payload), "application/x-www-form-urlencoded")

    def post_action(self, **fields: Any) -> tuple[int, str, float]:
        """A button click; `fields` go to `block_actions_payload`."""
        return self.post_signed(block_actions_body(**fields), "application/x-www-form-urlencoded")


class WorkerProcess(AppProcess):
    """`python -m bot worker`, serving /metrics on its port; ready when that answers."""

    def __init__(self, env: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(env, args=("-m", "bot", "worker"), **kwargs)
        self.env["IMAGINE_METRICS_PORT"] = str(self.port)

    def ready(self) -> bool:
        try:
            return self.get("/metrics", timeout=1)[0] == 200
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in an OOM kill or a lost host."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(5)
        self.returncode = self.process.returncode


# -- pytest fixtures (import them into a test module, or move them into conftest.py) -------
@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A started FakeSlack, stopped after the test."""
    with FakeSlack() as slack:
        yield slack


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., AppProcess]]:
    """`start_app(env)` starts an AppProcess (`cls=WorkerProcess` for a worker); every one
    started is stopped after the test."""
    started: list[AppProcess] = []

    def start(env: Mapping[str, str], cls: type[AppProcess] = AppProcess, **kwargs: Any):
        kwargs.setdefault("workdir", tmp_path / f"app{len(started)}")
        app = cls(env, **kwargs)
        started.append(app)
        return app.start()

    yield start
    for app in started:
        app.stop()
