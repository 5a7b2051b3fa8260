"""A fake Slack Web API for the real `slack_sdk.WebClient(base_url=fake.url + "/api/")`.

It answers like Slack (HTTP 200 with `{"ok": true, ...}` or `{"ok": false, "error": ...}`,
HTTP 429 with `Retry-After` when scripted), keeps the state the app can observe (messages,
ephemerals, reactions, uploaded files, `response_url` posts) and records every call, so an
end-to-end test can assert on exactly what Slack would have received.

Channel behaviour follows the id: `C...` public, `G...` private, `D...` a DM; the bot is a
member of each unless a test says otherwise with `not_member(...)`. `missing(...)` makes a
channel not exist. As on Slack, `chat.postMessage` posts in a public channel the bot is not in
when the token has `chat:write.public`, but the bot receives events only from conversations it
is a member of: `delivers_events_from(channel)` says whether a person's reaction there reaches
the app (the harness's `AppProcess.react` sends the event only then). The token's scopes
(`scopes`, the manifest's by default) are checked per method (`missing_scope`).
Scripting: `rate_limit(method, times)`, `server_error(method, times)` (also for the upload
URL and `response_url` posts: `UPLOAD`, `RESPONSE_URL`) and `fail(method, error, times)`.
"""

from __future__ import annotations

import itertools
import json
import math
import mimetypes
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from tests.fakes._http import HANG_UP, FakeServer, RecordedRequest, Reply

DEFAULT_TOKEN = "xoxb-fake-bot-token-0123456789"
JSON_FIELDS = ("blocks", "attachments", "files", "metadata", "unfurl", "channels_json")
RESPONSE_URL_LIMIT = 5  # Slack accepts five posts per response_url
# The bot scopes manifest.yml asks for (tests/test_fake_slack.py keeps the two in step).
DEFAULT_SCOPES = frozenset(
    {
        "commands",
        "chat:write",
        "chat:write.public",
        "channels:join",
        "channels:read",
        "files:write",
        "files:read",
        "reactions:read",
        "reactions:write",
        "im:write",
        "im:history",
        "channels:history",
        "groups:history",
    }
)
# The scope each Web API method needs (conversations.info: by the conversation's type).
METHOD_SCOPES = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.delete": "chat:write",
    "reactions.add": "reactions:write",
    "reactions.remove": "reactions:write",
    "reactions.get": "reactions:read",
    "conversations.join": "channels:join",
    "conversations.open": "im:write",  # a bot opening a DM with one person
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "files.info": "files:read",
    "files.delete": "files:write",
}
TRIGGER_SECONDS = 3.0  # a trigger_id opens one view, within 3 seconds of the click or command
VIEW_BLOCKS = 100
VIEW_TITLE_LIMIT = 24
PRIVATE_METADATA_LIMIT = 3000
UPLOAD = "upload"  # `server_error` / `rate_limit` target: the POST of the bytes to upload_url
RESPONSE_URL = "response_url"  # ... and posts to a command's response_url

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class SlackError(Exception):
    """Raised inside a method handler to answer `{"ok": false, "error": code}`."""

    def __init__(self, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


@dataclass
class Channel:
    id: str
    name: str
    private: bool = False
    im: bool = False
    member: bool = True
    exists: bool = True

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.private and not self.im,
            "is_group": self.private,
            "is_im": self.im,
            "is_mpim": False,
            "is_private": self.private or self.im,
            "is_member": self.member,
            "is_archived": False,
            "is_general": self.name == "general",
            "created": 1600000000,
        }


@dataclass
class UploadedFile:
    id: str
    filename: str
    length: int
    data: bytes | None = None  # None until the bytes reach upload_url
    content_type: str = ""
    title: str | None = None
    alt_txt: str | None = None
    channel: str | None = None
    initial_comment: str | None = None
    thread_ts: str | None = None
    share_ts: str | None = None
    completed: bool = False
    completed_at: float = 0.0  # monotonic
    user: str | None = None  # who shared it; None: the bot


@dataclass
class ResponsePost:
    """One post to a `response_url` (Bolt's `respond()`)."""

    token: str
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str | None:
        return self.body.get("text")

    @property
    def blocks(self) -> list[dict[str, Any]] | None:
        return self.body.get("blocks")


def parse_body(request: RecordedRequest) -> dict[str, Any]:
    """Arguments of a Web API call: query string, then a JSON, form or multipart body.

    Form bodies carry `blocks`, `attachments` and `files` as JSON strings (slack_sdk encodes
    them that way); they are decoded here so tests see the same shape either way.
    """
    args: dict[str, Any] = dict(request.query)
    ctype = request.headers.get("content-type", "")
    if request.body:
        if ctype.startswith("application/json"):
            args.update(json.loads(request.body))
        elif ctype.startswith("multipart/form-data"):
            args.update(_multipart_fields(request))
        else:
            text = request.body.decode("utf-8")
            args.update({k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()})
    for name in JSON_FIELDS:
        value = args.get(name)
        if isinstance(value, str) and value[:1] in "[{":
            try:
                args[name] = json.loads(value)
            except ValueError:
                pass  # leave it; the method handler reports invalid_arguments if it matters
    return args


def shared_words(args: dict[str, Any]) -> str:
    """What a files.completeUploadExternal call (its parsed `args`) says next to the files:
    its `initial_comment`, else the texts of its blocks (not their buttons), one per line."""
    if args.get("initial_comment"):
        return args["initial_comment"]
    words = []
    for block in args.get("blocks") or []:
        for part in [
            block.get("text"),
            *(block.get("elements") or []),
            *(block.get("fields") or []),
        ]:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                words.append(part["text"])
    return "\n".join(words)


def _edge_error(status: int) -> Reply:
    """What Slack's edge answers when it is failing: `status` with an HTML page."""
    page = f"<html><body><h1>{status} {HTTPStatus(status).phrase}</h1></body></html>"
    return Reply(status, page, headers={"Content-Type": "text/html; charset=utf-8"})


def _multipart_fields(request: RecordedRequest) -> dict[str, Any]:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is None:
            fields[name] = payload.decode("utf-8")
        else:
            fields[name] = payload
    return fields


# Slack's documented limits (Block Kit reference, files.getUploadURLExternal)
BLOCKS_PER_MESSAGE = 50
TEXT_OBJECT_LIMIT = 3000  # any text object, and a section's text
SECTION_FIELD_LIMIT = 2000
SECTION_FIELDS = 10
HEADER_LIMIT = 150
IMAGE_URL_LIMIT = 3000
ALT_TEXT_LIMIT = 2000  # an image block's alt_text, and its title
CONTEXT_ELEMENTS = 10
ACTIONS_ELEMENTS = 25
BUTTON_TEXT_LIMIT = 75
BUTTON_VALUE_LIMIT = 2000
ID_LIMIT = 255  # block_id, action_id
ALT_TXT_LIMIT = 1000  # files.getUploadURLExternal `alt_txt`: alt_txt_too_large beyond it
MESSAGE_TEXT_LIMIT = 40000  # a message's top-level text: msg_too_long beyond it


def _too_long(value: Any, limit: int, where: str) -> list[str]:
    if isinstance(value, str) and len(value) > limit:
        return [f"must be less than {limit + 1} characters [json-pointer:{where}]"]
    return []


def _text_errors(text: Any, limit: int, where: str, plain_only: bool = False) -> list[str]:
    """A text object: a type, 1 to `limit` characters."""
    if not isinstance(text, dict) or not isinstance(text.get("text"), str):
        return [f"must provide an object [json-pointer:{where}]"]
    kinds = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if text.get("type") not in kinds:
        return [f"must be a valid enum value [json-pointer:{where}/type]"]
    if not text["text"]:
        return [f"must be more than 0 characters [json-pointer:{where}/text]"]
    return _too_long(text["text"], limit, f"{where}/text")


def _element_errors(element: Any, where: str) -> list[str]:
    if not isinstance(element, dict):
        return [f"must provide an object [json-pointer:{where}]"]
    errors = _too_long(element.get("action_id"), ID_LIMIT, f"{where}/action_id")
    if element.get("type") == "button":
        errors += _text_errors(element.get("text"), BUTTON_TEXT_LIMIT, f"{where}/text", True)
        errors += _too_long(element.get("value"), BUTTON_VALUE_LIMIT, f"{where}/value")
    return errors


def block_errors(blocks: Any, limit: int = BLOCKS_PER_MESSAGE) -> list[str]:
    """The Block Kit limits Slack enforces on what an app sends (the error strings are Slack's
    `invalid_blocks` messages): counts, required fields and every text length. `limit`: 50
    blocks in a message, 100 in a view."""
    if not isinstance(blocks, list):
        return ["blocks must be a list"]
    errors = []
    if len(blocks) > limit:
        errors.append(f"no more than {limit} items allowed [json-pointer:/blocks]")
    for i, block in enumerate(blocks):
        where = f"/blocks/{i}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind is None:
            errors.append(f"missing required field: type [json-pointer:{where}]")
            continue
        errors += _too_long(block.get("block_id"), ID_LIMIT, f"{where}/block_id")
        if kind == "section":
            fields = block.get("fields") or []
            if not block.get("text") and not fields:
                errors.append(f"must provide text or fields [json-pointer:{where}]")
            if block.get("text"):
                errors += _text_errors(block["text"], TEXT_OBJECT_LIMIT, f"{where}/text")
            if len(fields) > SECTION_FIELDS:
                errors.append(
                    f"no more than {SECTION_FIELDS} items allowed [json-pointer:{where}/fields]"
                )
            for j, text in enumerate(fields):
                errors += _text_errors(text, SECTION_FIELD_LIMIT, f"{where}/fields/{j}")
        elif kind == "header":
            errors += _text_errors(block.get("text"), HEADER_LIMIT, f"{where}/text", True)
        elif kind == "image":
            if not block.get("alt_text"):
                errors.append(f"missing required field: alt_text [json-pointer:{where}]")
            errors += _too_long(block.get("alt_text"), ALT_TEXT_LIMIT, f"{where}/alt_text")
            if not block.get("image_url") and not block.get("slack_file"):
                errors.append(f"must provide image_url or slack_file [json-pointer:{where}]")
            errors += _too_long(block.get("image_url"), IMAGE_URL_LIMIT, f"{where}/image_url")
            if "title" in block:
                errors += _text_errors(block["title"], ALT_TEXT_LIMIT, f"{where}/title", True)
        elif kind == "context":
            elements = block.get("elements") or []
            if not elements:
                errors.append(f"must provide at least 1 item [json-pointer:{where}/elements]")
            if len(elements) > CONTEXT_ELEMENTS:
                errors.append(
                    f"no more than {CONTEXT_ELEMENTS} items allowed [json-pointer:{where}/elements]"
                )
            for j, element in enumerate(elements):
                if isinstance(element, dict) and element.get("type") in ("mrkdwn", "plain_text"):
                    errors += _text_errors(element, TEXT_OBJECT_LIMIT, f"{where}/elements/{j}")
        elif kind == "actions":
            elements = block.get("elements") or []
            if len(elements) > ACTIONS_ELEMENTS:
                errors.append(
                    f"no more than {ACTIONS_ELEMENTS} items allowed [json-pointer:{where}/elements]"
                )
            for j, element in enumerate(elements):
                errors += _element_errors(element, f"{where}/elements/{j}")
    return errors


VIEW_BLOCKS = 100  # a modal's or a Home tab's blocks
VIEW_BYTES = 250_000  # views.publish: view_too_large beyond about 250 kB
PRIVATE_METADATA_LIMIT = 3000
SELECT_OPTIONS = 100
OPTION_TEXT_LIMIT = 75
OPTION_VALUE_LIMIT = 150


def _select_errors(select: dict[str, Any], where: str) -> list[str]:
    """A static_select accessory: its options, and an initial option that is one of them."""
    errors = _too_long(select.get("action_id"), ID_LIMIT, f"{where}/action_id")
    options = select.get("options")
    if not isinstance(options, list) or not options:
        return [*errors, f"must provide at least 1 item [json-pointer:{where}/options]"]
    if len(options) > SELECT_OPTIONS:
        errors.append(f"no more than {SELECT_OPTIONS} items allowed [json-pointer:{where}/options]")
    for k, option in enumerate(options):
        at = f"{where}/options/{k}"
        errors += _text_errors(option.get("text"), OPTION_TEXT_LIMIT, f"{at}/text", True)
        errors += _too_long(option.get("value"), OPTION_VALUE_LIMIT, f"{at}/value")
    if "initial_option" in select and select["initial_option"] not in options:
        errors.append(f"must match one of the options [json-pointer:{where}/initial_option]")
    return errors


def view_errors(view: Any) -> list[str]:
    """A Home tab view as Slack checks it: type, at most 100 valid blocks, accessories."""
    if not isinstance(view, dict):
        return ["must provide an object [json-pointer:/view]"]
    errors = []
    if view.get("type") != "home":
        errors.append("must be a valid enum value [json-pointer:/view/type]")
    blocks = view.get("blocks")
    errors += [
        e.replace("[json-pointer:/", "[json-pointer:/view/")
        for e in block_errors(blocks, VIEW_BLOCKS)
    ]
    errors += _too_long(
        view.get("private_metadata"), PRIVATE_METADATA_LIMIT, "/view/private_metadata"
    )
    errors += _too_long(view.get("callback_id"), ID_LIMIT, "/view/callback_id")
    for i, block in enumerate(blocks if isinstance(blocks, list) else []):
        accessory = block.get("accessory") if isinstance(block, dict) else None
        if isinstance(accessory, dict) and accessory.get("type") == "static_select":
            errors += _select_errors(accessory, f"/view/blocks/{i}/accessory")
    return errors


class FakeSlack(FakeServer):
    """Slack's Web API, `response_url`s and the v2 file upload endpoint on 127.0.0.1."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        team_id: str = "T1",
        team: str = "Imagine Test",
        scopes: Iterable[str] = DEFAULT_SCOPES,
    ) -> None:
        super().__init__()
        self._installed_scopes = frozenset(scopes)
        self.scopes = set(scopes)  # the bot token's; a test may take one away (reset restores)
        self.tokens = {token}
        self.token = token
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_id = team_id
        self.team = team
        self._state = threading.RLock()
        self.missing_users: set[str] = set()  # user ids Slack does not know (deleted accounts)
        # Slack shares an upload asynchronously: files.info lists no share for this long after
        # files.completeUploadExternal (a moment on a real workspace; 0 here unless a test asks)
        self.share_delay = 0.0
        self._lost_answers: dict[str, list[int]] = {}  # method: statuses, see lose_answer
        self._late_answers: dict[str, list[float]] = {}  # method: delays, see answer_late
        self._channels: dict[str, Channel] = {}
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._ephemerals: list[dict[str, Any]] = []
        self._reactions: dict[tuple[str, str], dict[str, list[str]]] = {}
        self._files: dict[str, UploadedFile] = {}
        self._responses: list[ResponsePost] = []
        self._last_ts = 0  # microseconds: every message's ts is later than the last one's
        self._ids = itertools.count(1)
        self._handlers: dict[str, Handler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.delete": self._delete,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "reactions.get": self._reactions_get,
            "conversations.join": self._join,
            "conversations.info": self._info,
            "conversations.open": self._open,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "files.info": self._file_info,
            "files.delete": self._files_delete,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "chat.getPermalink": self._get_permalink,
        }
        self._triggers: dict[str, float] = {}  # trigger_id -> when issued; popped when used
        self._used_triggers: set[str] = set()
        self._views: dict[str, dict[str, Any]] = {}  # view id -> the view as Slack keeps it
        self._users: set[str] = set()  # people in the workspace (`add_user`)
        self._home_views: dict[str, dict[str, Any]] = {}  # user -> their published Home tab
        self.home_tab_enabled = True  # the manifest's features.app_home.home_tab_enabled

    def __enter__(self) -> FakeSlack:
        super().__enter__()
        return self

    # -- knobs ----------------------------------------------------------------------------
    def channel(self, channel_id: str) -> Channel:
        """The channel's settings (created on first use from the id's prefix)."""
        with self._state:
            if channel_id not in self._channels:
                prefix = channel_id[:1]
                self._channels[channel_id] = Channel(
                    id=channel_id,
                    name=channel_id.lower(),
                    private=prefix == "G",
                    im=prefix == "D",
                )
            return self._channels[channel_id]

    def add_channel(self, channel_id: str, name: str | None = None, **settings: Any) -> Channel:
        """Declare a channel: `private=`, `im=`, `member=`, `exists=`."""
        with self._state:
            chan = self.channel(channel_id)
            if name:
                chan.name = name
            for key, value in settings.items():
                setattr(chan, key, value)
            return chan

    def not_member(self, *channel_ids: str) -> None:
        """The bot is not in these channels until it calls conversations.join (public ones)."""
        for channel_id in channel_ids:
            self.add_channel(channel_id, member=False)

    def missing(self, *channel_ids: str) -> None:
        """These channel ids answer channel_not_found everywhere."""
        for channel_id in channel_ids:
            self.add_channel(channel_id, exists=False)

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """The next `times` calls of `method` (a Web API method, `UPLOAD` or `RESPONSE_URL`)
        answer HTTP 429 with `Retry-After`, as Slack does."""
        reply = Reply(
            429,
            {"ok": False, "error": "ratelimited"},
            headers={"Retry-After": str(retry_after)},
        )
        self.enqueue(*([reply] * times), path_contains=_path_of(method))

    def server_error(self, method: str, times: int = 1, status: int = 503) -> None:
        """The next `times` calls of `method` (a Web API method, `UPLOAD` or `RESPONSE_URL`)
        answer `status` with an HTML page, as Slack's edge does when it is failing; nothing
        is posted or stored."""
        self.enqueue(*([_edge_error(status)] * times), path_contains=_path_of(method))

    def lose_answer(self, method: str, times: int = 1, status: int = 504) -> None:
        """The next `times` calls of `method` are carried out, but answered `status` with an
        HTML page: Slack's edge gave up waiting while the call went through behind it.
        `status=HANG_UP`: no answer at all, the connection is lost."""
        with self._state:
            self._lost_answers.setdefault(method, []).extend([status] * times)

    def answer_late(self, method: str, seconds: float, times: int = 1) -> None:
        """The next `times` calls of `method` are carried out at once and answered `seconds`
        later (a client that gives up sooner never learns they went through)."""
        with self._state:
            self._late_answers.setdefault(method, []).extend([seconds] * times)

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """The next `times` calls of `method` answer `{"ok": false, "error": error}`."""
        reply = Reply(200, {"ok": False, "error": error})
        self.enqueue(*([reply] * times), path_contains=f"/api/{method}")

    def handle(self, method: str, handler: Handler) -> None:
        """Answer `method` with `handler(args) -> dict` (merged into `{"ok": true}`)."""
        self._handlers[method] = handler

    def response_url(self, token: str | None = None) -> str:
        """A fresh `response_url` that records what is posted to it."""
        return f"{self.url}/response/{token or f'R{next(self._ids):06d}'}"

    def reset(self) -> None:
        super().reset()
        with self._state:
            self.scopes = set(self._installed_scopes)
            self._channels.clear()
            self._messages.clear()
            self._ephemerals.clear()
            self._reactions.clear()
            self._files.clear()
            self._responses.clear()
            self.missing_users.clear()
            self.share_delay = 0.0
            self._lost_answers.clear()
            self._late_answers.clear()
            self._triggers.clear()
            self._used_triggers.clear()
            self._views.clear()
            self._users.clear()
            self._home_views.clear()
            self.home_tab_enabled = True

    def trigger(self, age: float = 0.0) -> str:
        """A trigger_id as Slack puts in a command, a click or a shortcut (`age` seconds old):
        views.open takes it once, within 3 seconds."""
        trigger_id = f"{next(self._ids)}.42.{uuid.uuid4().hex}"
        with self._state:
            self._triggers[trigger_id] = time.monotonic() - age
        return trigger_id

    def person_says(self, channel: str, user: str, text: str) -> str:
        """A person's message in `channel` (not the bot's: it cannot edit or delete it)."""
        with self._state:
            ts = self._next_ts()
            message = {"type": "message", "user": user, "ts": ts, "text": text}
            self._messages.setdefault(channel, []).append(message)
            return ts

    def views(self) -> list[dict[str, Any]]:
        """The views opened (and updated), oldest first."""
        with self._state:
            return [dict(v) for v in self._views.values()]

    def add_user(self, *user_ids: str) -> None:
        """People who exist in the workspace (views.publish refuses anyone else)."""
        with self._state:
            self._users.update(user_ids)

    def home_view(self, user_id: str) -> dict[str, Any] | None:
        """The Home tab last published for `user_id`, as Slack keeps it."""
        with self._state:
            return self._home_views.get(user_id)

    # -- what the app did -----------------------------------------------------------------
    def calls_to(self, method: str) -> list[dict[str, Any]]:
        """The parsed arguments of every call to `method`, including rate-limited ones."""
        return [parse_body(r) for r in self.calls(f"/api/{method}") if r.path == f"/api/{method}"]

    def methods_called(self) -> list[str]:
        """Web API method names in call order."""
        return [r.path[len("/api/") :] for r in self.calls("/api/") if r.path.startswith("/api/")]

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages currently in `channel` (or all channels), oldest first, as Slack keeps them."""
        with self._state:
            if channel is not None:
                return [dict(m) for m in self._messages.get(channel, [])]
            found = [dict(m) for msgs in self._messages.values() for m in msgs]
        return sorted(found, key=lambda m: float(m["ts"]))

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self._state:
            found = self._find(channel, ts)
            return dict(found) if found else None

    def ephemerals(self, user: str | None = None) -> list[dict[str, Any]]:
        with self._state:
            return [dict(e) for e in self._ephemerals if user is None or e["user"] == user]

    def reactions(self, channel: str, ts: str) -> dict[str, list[str]]:
        """Reaction name -> users who reacted, on one message."""
        with self._state:
            return {k: list(v) for k, v in self._reactions.get((channel, ts), {}).items()}

    def add_user_reaction(self, channel: str, ts: str, name: str, user: str) -> None:
        """Record a person's reaction (the harness then sends the matching event, if Slack
        would: see `delivers_events_from`)."""
        with self._state:
            users = self._reactions.setdefault((channel, ts), {}).setdefault(name, [])
            if user not in users:
                users.append(user)

    def remove_user_reaction(self, channel: str, ts: str, name: str, user: str) -> None:
        with self._state:
            users = self._reactions.get((channel, ts), {}).get(name, [])
            if user in users:
                users.remove(user)

    def delivers_events_from(self, channel_id: str) -> bool:
        """Whether Slack sends the bot a person's reaction in this channel: only from
        conversations the bot is a member of, and only with `reactions:read`."""
        with self._state:
            chan = self.channel(channel_id)
            return chan.exists and chan.member and "reactions:read" in self.scopes

    @property
    def responses(self) -> list[ResponsePost]:
        with self._state:
            return list(self._responses)

    def responses_to(self, url_or_token: str) -> list[ResponsePost]:
        token = url_or_token.rstrip("/").rsplit("/", 1)[-1]
        return [r for r in self.responses if r.token == token]

    @property
    def uploaded_files(self) -> list[UploadedFile]:
        """Files whose upload was completed, in upload order."""
        with self._state:
            return [f for f in self._files.values() if f.completed]

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02
    ) -> Any:
        """Poll until `predicate()` is truthy and return its value; fail the test on timeout.

        A LookupError (`messages(c)[0]` before anything arrived) counts as "not yet".
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = predicate()
            except LookupError:
                value = None
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"condition not met within {timeout}s; Slack calls so far: "
                    f"{self.methods_called()}; response_url posts: {len(self.responses)}"
                )
            time.sleep(interval)

    # -- dispatch -------------------------------------------------------------------------
    def answer(self, request: RecordedRequest) -> Reply:
        path = request.path
        if path.startswith("/api/"):
            return self._api(path[len("/api/") :], request)
        if path.startswith("/upload/"):
            return self._upload(path[len("/upload/") :], request)
        if path.startswith("/response/"):
            return self._respond(path[len("/response/") :], request)
        if path.startswith("/files-pri/") and request.method == "GET":
            return self._download(path[len("/files-pri/") :], request)
        return Reply(404, "not found")

    def _api(self, method: str, request: RecordedRequest) -> Reply:
        args = parse_body(request)
        auth = request.headers.get("authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else args.pop("token", None)
        if not token:
            return Reply(200, {"ok": False, "error": "not_authed"})
        if token not in self.tokens:
            return Reply(200, {"ok": False, "error": "invalid_auth"})
        handler = self._handlers.get(method)
        if handler is None:
            return Reply(404, {"ok": False, "error": "unknown_method", "req_method": method})
        scopes = {"X-OAuth-Scopes": ",".join(sorted(self.scopes))}
        try:
            with self._state:
                self._require_scope(METHOD_SCOPES.get(method))
                result = handler(args)
        except SlackError as err:
            return Reply(200, {"ok": False, "error": err.code, **err.extra}, headers=scopes)
        with self._state:
            lost = self._lost_answers.get(method)
            status = lost.pop(0) if lost else None
            late = self._late_answers.get(method)
            delay = late.pop(0) if late else 0.0
        if status == HANG_UP:
            return Reply(HANG_UP)
        if status is not None:
            return _edge_error(status)
        return Reply(200, {"ok": True, **result}, headers=scopes, delay=delay)

    # -- helpers (called with self._state held) -------------------------------------------
    def _next_ts(self) -> str:
        """Now, as Slack's ts says it (epoch seconds, six decimals), unique and increasing."""
        self._last_ts = tick = max(int(time.time() * 1_000_000), self._last_ts + 100)
        return f"{tick // 1_000_000}.{tick % 1_000_000:06d}"

    def _find(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self._messages.get(channel, []) if m["ts"] == ts), None)

    def _require_scope(self, scope: str | None) -> None:
        if scope is not None and scope not in self.scopes:
            provided = ",".join(sorted(self.scopes))
            raise SlackError("missing_scope", needed=scope, provided=provided)

    def _require(self, args: dict[str, Any], *names: str) -> None:
        for name in names:
            if not args.get(name):
                raise SlackError("invalid_arguments", response_metadata={"messages": [name]})

    def _writable(self, channel_id: str, *, public_write: bool = False) -> Channel:
        """The channel, if the bot may post there; else the error Slack gives.

        `public_write`: the method honours `chat:write.public` (chat.postMessage does; file
        uploads and ephemerals need membership), which lets the bot post in a public channel
        it is not in, without joining it."""
        chan = self.channel(channel_id)
        if not chan.exists:
            raise SlackError("channel_not_found")
        if not chan.member:
            if chan.private or chan.im:
                raise SlackError("channel_not_found")
            if not (public_write and "chat:write.public" in self.scopes):
                raise SlackError("not_in_channel")
        return chan

    def _visible(self, channel_id: str) -> Channel:
        chan = self.channel(channel_id)
        if not chan.exists or (chan.private and not chan.member):
            raise SlackError("channel_not_found")
        return chan

    def _content(self, args: dict[str, Any]) -> dict[str, Any]:
        """text/blocks/attachments of a message, checked as Slack checks them."""
        blocks = args.get("blocks")
        if blocks is not None:
            errors = block_errors(blocks)
            if errors:
                raise SlackError(
                    "invalid_blocks", errors=errors, response_metadata={"messages": errors}
                )
        text = args.get("text")
        if not text and not blocks and not args.get("attachments"):
            raise SlackError("no_text")
        if text and len(text) > MESSAGE_TEXT_LIMIT:
            raise SlackError("msg_too_long")
        content = {"text": text or ""}
        if blocks is not None:
            content["blocks"] = blocks
        if args.get("attachments") is not None:
            content["attachments"] = args["attachments"]
        return content

    # -- methods --------------------------------------------------------------------------
    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://imagine-test.slack.com/",
            "team": self.team,
            "user": "imagine",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "channel")
        chan = self._writable(args["channel"], public_write=True)
        message = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "ts": self._next_ts(),
            "channel": chan.id,
            **self._content(args),
        }
        if args.get("thread_ts"):
            message["thread_ts"] = args["thread_ts"]
        if args.get("metadata"):
            metadata = args["metadata"]
            if not (
                isinstance(metadata, dict)
                and isinstance(metadata.get("event_type"), str)
                and metadata["event_type"]
                and isinstance(metadata.get("event_payload"), dict)
            ):
                raise SlackError("invalid_metadata_format")
            message["metadata"] = metadata
        self._messages.setdefault(chan.id, []).append(message)
        public = {k: v for k, v in message.items() if k != "channel"}
        return {"channel": chan.id, "ts": message["ts"], "message": public}

    def _own_message(self, args: dict[str, Any], not_ours: str) -> dict[str, Any]:
        """The bot's own message at (channel, ts), as chat.update and chat.delete need it."""
        self._require(args, "channel", "ts")
        self._visible(args["channel"])
        message = self._find(args["channel"], args["ts"])
        if message is None:
            raise SlackError("message_not_found")
        if message.get("user") != self.bot_user_id:
            raise SlackError(not_ours)
        return message

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._own_message(args, "cant_update_message")
        content = self._content(args)
        message["text"] = content["text"]
        for key in ("blocks", "attachments"):
            if key in content:
                message[key] = content[key]
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        public = {k: v for k, v in message.items() if k != "channel"}
        return {
            "channel": args["channel"],
            "ts": args["ts"],
            "text": message["text"],
            "message": public,
        }

    def _post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "channel", "user")
        chan = self._writable(args["channel"])
        ephemeral = {"channel": chan.id, "user": args["user"], "ts": self._next_ts()}
        ephemeral.update(self._content(args))
        if args.get("thread_ts"):
            ephemeral["thread_ts"] = args["thread_ts"]
        self._ephemerals.append(ephemeral)
        return {"message_ts": ephemeral["ts"]}

    def _delete(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._own_message(args, "cant_delete_message")
        self._messages[args["channel"]].remove(message)
        self._reactions.pop((args["channel"], args["ts"]), None)
        return {"channel": args["channel"], "ts": args["ts"]}

    def _reaction_target(self, args: dict[str, Any]) -> tuple[tuple[str, str], str]:
        self._require(args, "channel", "timestamp", "name")
        self._visible(args["channel"])
        if self._find(args["channel"], args["timestamp"]) is None:
            raise SlackError("message_not_found")
        name = str(args["name"]).strip(":")
        if not name or " " in name:
            raise SlackError("invalid_name")
        return (args["channel"], args["timestamp"]), name

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        key, name = self._reaction_target(args)
        users = self._reactions.setdefault(key, {}).setdefault(name, [])
        if self.bot_user_id in users:
            raise SlackError("already_reacted")
        users.append(self.bot_user_id)
        return {}

    def _reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        key, name = self._reaction_target(args)
        users = self._reactions.get(key, {}).get(name, [])
        if self.bot_user_id not in users:
            raise SlackError("no_reaction")
        users.remove(self.bot_user_id)
        if not users:
            del self._reactions[key][name]
        return {}

    def _reactions_get(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "channel", "timestamp")
        self._visible(args["channel"])
        message = self._find(args["channel"], args["timestamp"])
        if message is None:
            raise SlackError("message_not_found")
        reactions = [
            {"name": name, "users": list(users), "count": len(users)}
            for name, users in self._reactions.get((args["channel"], args["timestamp"]), {}).items()
        ]
        body = {k: v for k, v in message.items() if k != "channel"}
        if reactions:
            body["reactions"] = reactions
        return {"type": "message", "channel": args["channel"], "message": body}

    def _join(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "channel")
        chan = self.channel(args["channel"])
        if not chan.exists:
            raise SlackError("channel_not_found")
        if chan.private or chan.im:
            raise SlackError("method_not_supported_for_channel_type")
        result: dict[str, Any] = {}
        if chan.member:
            result["warning"] = "already_in_channel"
            result["response_metadata"] = {"warnings": ["already_in_channel"]}
        chan.member = True
        return {"channel": chan.info(), **result}

    def _open(self, args: dict[str, Any]) -> dict[str, Any]:
        """A bot's DM with one person (`users`): the same D… id every time. Slack refuses an
        id that names no user (`user_not_found`) and needs `im:write`."""
        self._require(args, "users")
        users = [u.strip() for u in str(args["users"]).split(",") if u.strip()]
        if len(users) != 1:
            raise SlackError("not_enough_users" if not users else "too_many_users")
        user = users[0]
        if not re.fullmatch(r"[UW][A-Z0-9]+", user) or user in self.missing_users:
            raise SlackError("user_not_found")
        channel_id = f"D{user[1:]}"
        with self._state:
            already = channel_id in self._channels
            chan = self.add_channel(channel_id, im=True, member=True)
        reply: dict[str, Any] = {"channel": {"id": chan.id}}
        if already:
            reply |= {"no_op": True, "already_open": True}
        return reply

    def _info(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "channel")
        chan = self.channel(args["channel"])
        if chan.exists:  # the scope of the conversation's type (inferred: checked first)
            self._require_scope(
                "im:read" if chan.im else "groups:read" if chan.private else "channels:read"
            )
        return {"channel": self._visible(args["channel"]).info()}

    def _readable(self, channel_id: str) -> Channel:
        """The conversation whose history the bot may read: the `*:history` scope of its type,
        and membership (a bot token reads only where the bot is)."""
        chan = self.channel(channel_id)
        if chan.exists:
            kind = "im" if chan.im else "groups" if chan.private else "channels"
            self._require_scope(f"{kind}:history")
        if not chan.exists or ((chan.private or chan.im) and not chan.member):
            raise SlackError("channel_not_found")
        if not chan.member:
            raise SlackError("not_in_channel")
        return chan

    @staticmethod
    def _page(
        args: dict[str, Any], found: list[dict[str, Any]], newest_first: bool
    ) -> dict[str, Any]:
        """One page of `found` (oldest first) between `oldest` and `latest` (exclusive unless
        `inclusive`), `limit` long, with the cursor to the next; metadata only when asked."""
        try:
            oldest = float(args.get("oldest") or 0)
            latest = float(args["latest"]) if args.get("latest") else math.inf
            limit = int(args.get("limit") or 100)
            start = int(args.get("cursor") or 0)
        except ValueError:
            raise SlackError("invalid_arguments") from None
        if limit < 1:
            raise SlackError("invalid_limit")
        limit = min(limit, 999)
        inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")

        def within(ts: float) -> bool:
            if inclusive:
                return oldest <= ts <= latest
            return oldest < ts < latest

        chosen = [m for m in found if within(float(m["ts"]))]
        if newest_first:
            chosen.reverse()
        page, more = chosen[start : start + limit], len(chosen) > start + limit
        metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        messages = [
            {k: v for k, v in m.items() if k != "channel" and (metadata or k != "metadata")}
            for m in page
        ]
        return {
            "messages": messages,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        """conversations.history: the conversation's messages, newest first; thread replies
        are not among them (conversations.replies reads a thread)."""
        self._require(args, "channel")
        chan = self._readable(args["channel"])
        top = [
            m
            for m in self._messages.get(chan.id, [])
            if m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast"
        ]
        return self._page(args, top, newest_first=True)

    def _replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """conversations.replies: a thread's parent and its replies, oldest first."""
        self._require(args, "channel", "ts")
        chan = self._readable(args["channel"])
        thread = args["ts"]
        found = [
            m
            for m in self._messages.get(chan.id, [])
            if m["ts"] == thread or m.get("thread_ts") == thread
        ]
        if not any(m["ts"] == thread for m in found):
            raise SlackError("thread_not_found")
        return self._page(args, found, newest_first=False)

    def _get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "filename", "length")
        try:
            length = int(args["length"])
        except ValueError:
            raise SlackError("invalid_arguments") from None
        if len(args.get("alt_txt") or "") > ALT_TXT_LIMIT:
            raise SlackError("alt_txt_too_large")
        file_id = f"F{next(self._ids):08d}"
        self._files[file_id] = UploadedFile(
            id=file_id, filename=args["filename"], length=length, alt_txt=args.get("alt_txt")
        )
        return {"upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _upload(self, file_id: str, request: RecordedRequest) -> Reply:
        """Step 2 of files_upload_v2: slack_sdk POSTs raw bytes; a multipart form also works."""
        ctype = request.headers.get("content-type", "")
        data = request.body
        if ctype.startswith("multipart/form-data"):
            parts = _multipart_fields(request)
            data = next((v for v in parts.values() if isinstance(v, bytes)), b"")
        with self._state:
            upload = self._files.get(file_id)
            if upload is None or upload.completed:
                return Reply(404, "Not Found")
            upload.data = data
            upload.content_type = ctype
        return Reply(200, f"OK - {len(data)}")

    def _file_object(self, upload: UploadedFile) -> dict[str, Any]:
        base = f"{self.url}/files-pri/{self.team_id}-{upload.id}"
        shares: dict[str, Any] = {}
        if upload.channel and upload.share_ts:
            chan = self.channel(upload.channel)
            share = {"ts": upload.share_ts, "channel_name": chan.name, "reply_count": 0}
            if upload.thread_ts:
                share["thread_ts"] = upload.thread_ts
            shares["private" if chan.private or chan.im else "public"] = {chan.id: [share]}
        return {
            "id": upload.id,
            "name": upload.filename,
            "title": upload.title or upload.filename,
            "size": len(upload.data or b""),
            "user": upload.user or self.bot_user_id,
            "mimetype": mimetypes.guess_type(upload.filename)[0] or "application/octet-stream",
            "is_external": False,
            "url_private": f"{base}/{upload.filename}",
            "url_private_download": f"{base}/download/{upload.filename}",
            "permalink": f"https://imagine-test.slack.com/files/{self.bot_user_id}/{upload.id}/"
            f"{upload.filename}",
            "channels": [upload.channel] if upload.channel else [],
            "shares": shares,
            "alt_txt": upload.alt_txt,
        }

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        if not isinstance(files, list) or not files:
            raise SlackError("invalid_arguments")
        uploads = []
        for item in files:
            upload = self._files.get(item.get("id", ""))
            if upload is None or upload.completed or upload.data is None:
                raise SlackError("file_not_found")
            if len(upload.data) != upload.length:
                raise SlackError("file_upload_size_mismatch")  # (inferred name)
            uploads.append((upload, item.get("title")))
        channel_id = args.get("channel_id") or None
        if args.get("channels"):
            channel_id = str(args["channels"]).split(",")[0]
        if channel_id:
            self._writable(channel_id)
        blocks = None if args.get("initial_comment") else self._share_blocks(args.get("blocks"))
        thread_ts = args.get("thread_ts") or None
        share_ts = self._next_ts() if channel_id else None
        for upload, title in uploads:
            upload.title = title or upload.filename
            upload.completed = True
            upload.completed_at = time.monotonic()
            upload.channel = channel_id
            upload.initial_comment = args.get("initial_comment")
            upload.thread_ts = thread_ts
            upload.share_ts = share_ts
        objects = [self._file_object(u) for u, _ in uploads]
        # Slack shares files asynchronously and answers only ids and titles here: where a
        # file was shared is for files.info to tell
        answered = [{"id": o["id"], "title": o["title"]} for o in objects]
        if channel_id:
            message = {
                "type": "message",
                "subtype": "file_share",
                "user": self.bot_user_id,
                "ts": share_ts,
                "channel": channel_id,
                "text": args.get("initial_comment") or "",
                "files": objects,
                "upload": True,
            }
            if blocks:
                message["blocks"] = blocks
            if thread_ts:
                message["thread_ts"] = thread_ts
            self._messages.setdefault(channel_id, []).append(message)
        return {"files": answered}

    @staticmethod
    def _share_blocks(blocks: Any) -> list[dict[str, Any]] | None:
        """The blocks of a file's share message (ignored by Slack when `initial_comment` is
        given), checked as chat.postMessage checks them; a `markdown` block, which
        chat.postMessage takes, is answered `internal_error` here (slackapi/python-slack-sdk
        #1756, node-slack-sdk #2564)."""
        if blocks is None:
            return None
        if not isinstance(blocks, list):
            raise SlackError("invalid_blocks_format")
        errors = block_errors(blocks)
        if errors:
            raise SlackError(
                "invalid_blocks", errors=errors, response_metadata={"messages": errors}
            )
        if any(isinstance(b, dict) and b.get("type") == "markdown" for b in blocks):
            raise SlackError("internal_error")
        return blocks

    def _file_info(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "file")
        upload = self._files.get(args["file"])
        if upload is None or not upload.completed:
            raise SlackError("file_not_found")
        listed = self._file_object(upload)
        if time.monotonic() < upload.completed_at + self.share_delay:
            listed["shares"] = {}  # not shared yet, as far as files.info can tell
        return {"file": listed}

    def _files_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        """A bot token deletes only the files the bot uploaded (`cant_delete_file`)."""
        self._require(args, "file")
        upload = self._files.get(args["file"])
        if upload is None or not upload.completed:
            raise SlackError("file_not_found")
        del self._files[upload.id]
        for channel, kept in self._messages.items():
            for message in list(kept):
                if any(f.get("id") == upload.id for f in message.get("files") or []):
                    kept.remove(message)
                    self._reactions.pop((channel, message["ts"]), None)
        return {}

    # -- views (modals) -------------------------------------------------------------------
    def _view_errors(self, view: Any) -> list[str]:
        if not isinstance(view, dict):
            return ["must provide an object [json-pointer:/view]"]
        errors = []
        if view.get("type") not in ("modal", "home"):
            errors.append("must be a valid enum value [json-pointer:/view/type]")
        if view.get("type") == "modal":
            errors += _text_errors(view.get("title"), VIEW_TITLE_LIMIT, "/view/title", True)
            for key in ("submit", "close"):
                if key in view:
                    errors += _text_errors(view[key], VIEW_TITLE_LIMIT, f"/view/{key}", True)
            inputs = [b for b in view.get("blocks") or [] if b.get("type") == "input"]
            if inputs and "submit" not in view:
                errors.append("must provide submit with input blocks [json-pointer:/view]")
        blocks = view.get("blocks") or []
        if len(blocks) > VIEW_BLOCKS:
            errors.append(f"no more than {VIEW_BLOCKS} items allowed [json-pointer:/view/blocks]")
        errors += _too_long(view.get("private_metadata"), PRIVATE_METADATA_LIMIT, "/view/pm")
        errors += _too_long(view.get("callback_id"), ID_LIMIT, "/view/callback_id")
        for i, block in enumerate(blocks):
            if block.get("type") == "input":
                errors += _text_errors(block.get("label"), 2000, f"/view/blocks/{i}/label", True)
                element = block.get("element") or {}
                if element.get("type") not in ("plain_text_input", "static_select"):
                    errors.append(f"unsupported element [json-pointer:/view/blocks/{i}]")
                initial = element.get("initial_option")
                if initial is not None and initial not in (element.get("options") or []):
                    errors.append(f"initial_option not in options [json-pointer:/view/blocks/{i}]")
            else:
                errors += block_errors([block])
        return errors

    def _keep_view(self, view: dict[str, Any], view_id: str) -> dict[str, Any]:
        errors = self._view_errors(view)
        if errors:
            raise SlackError("invalid_arguments", response_metadata={"messages": errors})
        kept = {
            **view,
            "id": view_id,
            "team_id": self.team_id,
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "state": {"values": {}},
            "bot_id": self.bot_id,
        }
        self._views[view_id] = kept
        return kept

    def _download(self, rest: str, request: RecordedRequest) -> Reply:
        """`url_private` (and `url_private_download`): the file's bytes for a request with the
        bot token of an install that has `files:read`; anything else gets what Slack gives a
        browser that is not signed in: a redirect to the sign-in page, never the file."""
        file_id = rest.split("/", 1)[0].removeprefix(f"{self.team_id}-")
        auth = request.headers.get("authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
        with self._state:
            upload = self._files.get(file_id)
            allowed = token in self.tokens and "files:read" in self.scopes
            if not allowed:
                return Reply(302, b"", {"Location": "https://imagine-test.slack.com/?redir=1"})
            if upload is None or not upload.completed or upload.data is None:
                return Reply(404, "Not Found")
            kind = mimetypes.guess_type(upload.filename)[0] or "application/octet-stream"
            return Reply(200, upload.data, {"Content-Type": kind})

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "trigger_id", "view")
        view = args["view"]
        if isinstance(view, str):
            view = json.loads(view)
        issued = self._triggers.pop(args["trigger_id"], None)
        if issued is None:
            used = args["trigger_id"] in self._used_triggers
            raise SlackError("exchanged_trigger_id" if used else "invalid_trigger_id")
        self._used_triggers.add(args["trigger_id"])
        if time.monotonic() - issued > TRIGGER_SECONDS:
            raise SlackError("expired_trigger_id")
        return {"view": self._keep_view(view, f"V{next(self._ids):08d}")}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "view")
        view = args["view"]
        if isinstance(view, str):
            view = json.loads(view)
        view_id = args.get("view_id")
        if not view_id and args.get("external_id"):
            view_id = next(
                (k for k, v in self._views.items() if v.get("external_id") == args["external_id"]),
                None,
            )
        current = self._views.get(view_id or "")
        if current is None:
            raise SlackError("not_found")
        if args.get("hash") and args["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        return {"view": self._keep_view(view, current["id"])}

    # -- what people do (for the harness) ---------------------------------------------------
    def new_trigger(self) -> str:
        """A trigger_id as Slack puts in a shortcut's payload: one views.open, within 3 s."""
        return self.trigger()

    def share_file(
        self,
        channel: str,
        user: str,
        data: bytes,
        filename: str = "photo.png",
        thread_ts: str | None = None,
    ) -> dict[str, Any]:
        """A person uploads a picture into `channel`: the `file_share` message it becomes."""
        with self._state:
            file_id = f"F{next(self._ids):08d}"
            upload = UploadedFile(
                id=file_id,
                filename=filename,
                length=len(data),
                data=data,
                channel=channel,
                thread_ts=thread_ts,
                share_ts=self._next_ts(),
                completed=True,
                user=user,
            )
            self._files[file_id] = upload
            message = {
                "type": "message",
                "subtype": "file_share",
                "user": user,
                "ts": upload.share_ts,
                "channel": channel,
                "text": "",
                "files": [self._file_object(upload)],
                "upload": True,
            }
            if thread_ts:
                message["thread_ts"] = thread_ts
            self._messages.setdefault(channel, []).append(message)
            return dict(message)

    def delete_file(self, file_id: str) -> None:
        """Someone deleted the file: files.info answers file_not_found, its URLs 404."""
        with self._state:
            upload = self._files.get(file_id)
            if upload is not None:
                upload.data = None
                upload.completed = False

    # -- App Home -------------------------------------------------------------------------
    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        """views.publish: a real user, a valid view (Slack's `invalid_arguments` carries the
        block errors for views), `hash` must match the current one when it is given."""
        self._require(args, "user_id", "view")
        user = args["user_id"]
        if user not in self._users:
            raise SlackError(
                "invalid_arguments",
                response_metadata={
                    "messages": ["[ERROR] invalid `user_id` [json-pointer:/user_id]"]
                },
            )
        raw = args["view"]
        size = len((raw if isinstance(raw, str) else json.dumps(raw)).encode())
        if size > VIEW_BYTES:
            raise SlackError("view_too_large")
        try:
            view = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            raise SlackError("invalid_arguments") from None
        if not self.home_tab_enabled:
            raise SlackError("not_enabled")
        errors = view_errors(view)
        if errors:
            raise SlackError("invalid_arguments", response_metadata={"messages": errors})
        current = self._home_views.get(user)
        if args.get("hash") and (current is None or args["hash"] != current["hash"]):
            raise SlackError("hash_conflict")
        stored = {
            "id": current["id"] if current else f"V{next(self._ids):08d}",
            "team_id": self.team_id,
            "type": "home",
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{time.time():.0f}.{next(self._ids):08d}",
            "app_id": "AFAKE",
            "bot_id": self.bot_id,
        }
        self._home_views[user] = stored
        return {"view": stored}

    def _get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "channel", "message_ts")
        chan = self._visible(args["channel"])
        if self._find(chan.id, args["message_ts"]) is None:
            raise SlackError("message_not_found")
        ts = args["message_ts"].replace(".", "")
        return {
            "channel": chan.id,
            "permalink": f"https://imagine-test.slack.com/archives/{chan.id}/p{ts}",
        }

    # -- response_url ---------------------------------------------------------------------
    def _respond(self, token: str, request: RecordedRequest) -> Reply:
        """Bolt's `respond()` POSTs JSON here; Slack takes at most five per URL."""
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return Reply(400, {"ok": False, "error": "invalid_payload"})
        with self._state:
            used = sum(1 for r in self._responses if r.token == token)
            if used >= RESPONSE_URL_LIMIT:
                return Reply(404, {"ok": False, "error": "used_url"})  # (inferred status)
            if body.get("blocks") is not None and block_errors(body["blocks"]):
                return Reply(400, {"ok": False, "error": "invalid_blocks"})
            self._responses.append(ResponsePost(token=token, body=body))
        return Reply(200, {"ok": True})


def _path_of(method: str) -> str:
    """The request path a scripted answer applies to."""
    if method == UPLOAD:
        return "/upload/"
    if method == RESPONSE_URL:
        return "/response/"
    return f"/api/{method}"
