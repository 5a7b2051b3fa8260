"""Edit by reply: words in the thread of one of the bot's pictures edit the newest picture there.

Only people's replies in channel threads count: the bot's own messages, message subtypes
(edits, deletions, file shares, bots), plain channel chat and threads not under a picture are
ignored without a word. The listener takes every `message` event from channels and private
channels (and only those: direct messages are another listener's), so none goes unanswered.
Events are acknowledged as the listener starts; the look-up of the picture runs after.
"""

from __future__ import annotations

import logging
import time

from slack_bolt import App
from slack_sdk import WebClient

from bot import metrics
from bot.core.jobs import EditJob, new_request_id
from bot.core.runner import Admission, Runner
from bot.generation.providers import resolve_provider_name
from bot.generation.types import ImageRequest
from bot.logs import log_event
from bot.slack import messages
from bot.slack.command import parse_edit
from bot.slack.listeners.events import find_upload
from bot.votes.db import KeptPicture, VoteStore

log = logging.getLogger("imagine.slack")

CHANNEL_TYPES = ("channel", "group")  # message.channels, message.groups


def in_channels(event: dict) -> bool:
    """Bolt matches events by type and subtype only: this listener's share of `message`
    (by the channel's id when an event leaves out `channel_type`: C… public, G… private)."""
    kind = event.get("channel_type")
    if kind is None:
        return str(event.get("channel", ""))[:1] in ("C", "G")
    return kind in CHANNEL_TYPES


class ThreadEdits:
    def __init__(self, store: VoteStore, runner: Runner, deadline: float) -> None:
        self.store = store
        self.runner = runner
        self.deadline = deadline

    def register(self, app: App) -> None:
        app.event({"type": "message"}, matchers=[in_channels])(self.on_message)

    def on_message(self, body: dict, event: dict, context: dict, client: WebClient) -> None:
        thread, ts = event.get("thread_ts"), event.get("ts")
        user = event.get("user")
        if (
            event.get("subtype")
            or event.get("bot_id")
            or not thread
            or thread == ts
            or not user
            or user == context.get("bot_user_id")
        ):
            return  # not a person's reply in a thread
        parsed = parse_edit(event.get("text") or "", resolve_provider_name)
        if parsed is None:
            return
        channel = event.get("channel", "")
        picture = self.picture(channel, thread, client)
        if picture is None:
            return  # a thread not under one of the bot's pictures
        now = time.time()
        job = EditJob(
            key=f"edit:{body.get('team_id', '')}:{channel}:{ts}",
            request_id=new_request_id(),
            team_id=body.get("team_id", ""),
            channel_id=channel,
            user_id=user,
            thread_ts=thread,
            created_at=now,
            deadline=now + self.deadline,
            provider=parsed.provider or picture.provider,
            request=ImageRequest(prompt=parsed.prompt),
            picture=picture.picture,
            parent_id=picture.generation_id,
        )
        submit(self.runner, job, client, "reply")

    def picture(self, channel: str, thread: str, client: WebClient) -> KeptPicture | None:
        """The newest picture in the thread; an upload whose message is not known yet is
        looked up in Slack once."""
        picture = self.store.latest_picture(channel, thread)
        if picture is None and find_upload(self.store, channel, thread, client):
            picture = self.store.latest_picture(channel, thread)
        return picture


BUSY = (
    ":raised_hand: You already have {cap} pictures on the way; wait for one to arrive, then "
    "try again."
)
UNAVAILABLE = ":warning: I can't take new pictures right now; please try again in a minute."


def submit(runner: Runner, job: EditJob, client: WebClient, source: str) -> None:
    """Hand the edit to the runner; a refusal is one sentence in the thread."""
    submitted = runner.submit(job)
    admission = submitted.admission
    if admission is Admission.ACCEPTED:
        submitted.start()
        metrics.ACCEPTED.labels(job.kind).inc()
    elif admission is not Admission.DUPLICATE:  # a redelivered event: already on its way
        busy = admission is Admission.TOO_MANY
        text = BUSY.format(cap=runner.board.max_per_user) if busy else UNAVAILABLE
        try:
            client.chat_postMessage(
                channel=job.channel_id, thread_ts=job.thread_ts, **messages.sentence(text)
            )
        except Exception:
            log.exception("could not refuse the edit request_id=%s", job.request_id)
        metrics.REFUSED.labels(admission.value).inc()
    log_event(
        log,
        "edit_request",
        request_id=job.request_id,
        user=job.user_id,
        channel=job.channel_id,
        source=source,
        provider=job.provider,
        parent=job.parent_id,
        outcome=admission.value,
    )
