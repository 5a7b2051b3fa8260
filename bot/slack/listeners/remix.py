"""The "Remix this picture" message shortcut: a form for the words and the model, then an edit
of that picture, posted in its thread.

Any message with a picture works: the bot's own posts (found in the history, or by the bucket
object their image block shows) and people's uploads (read with the bot token when the job
runs). The form carries what it edits in `private_metadata`; its submission becomes an EditJob
like a reply in the thread.
"""

from __future__ import annotations

import logging
import time

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.core.jobs import EditJob, new_request_id
from bot.core.ports import UPLOAD
from bot.core.runner import Runner
from bot.generation.service import GenerationService
from bot.generation.types import ImageRequest, clean_text
from bot.slack import messages
from bot.slack.listeners.edits import submit
from bot.slack.views.remix import (
    CALLBACK_ID,
    WORDS_BLOCK,
    RemixTarget,
    remix_view,
    submitted,
)
from bot.votes.db import VoteStore
from bot.votes.schema import object_ref

log = logging.getLogger("imagine.slack")

NO_PICTURE = "That message has no picture I can remix."
NO_WORDS = "Say what should change."


class RemixShortcut:
    def __init__(
        self, service: GenerationService, store: VoteStore, runner: Runner, deadline: float
    ) -> None:
        self.service = service
        self.store = store
        self.runner = runner
        self.deadline = deadline

    def register(self, app: App) -> None:
        app.shortcut(CALLBACK_ID)(self.on_shortcut)
        app.view(CALLBACK_ID)(self.on_submit)

    def on_shortcut(self, ack: Ack, body: dict, context: dict, client: WebClient) -> None:
        ack()
        channel = (body.get("channel") or {}).get("id", "")
        user = (body.get("user") or {}).get("id", "")
        message = body.get("message") or {}
        found = self.target(channel, message, context.get("bot_user_id"))
        if found is None:
            client.chat_postEphemeral(channel=channel, user=user, **messages.sentence(NO_PICTURE))
            return
        target, provider = found
        offered = {name: self.service.providers[name].model for name in self.choices()}
        client.views_open(trigger_id=body["trigger_id"], view=remix_view(target, offered, provider))

    def choices(self) -> list[str]:
        """Configured providers, those whose model can edit first."""
        names = self.service.configured_providers()
        return sorted(names, key=lambda name: not self.service.providers[name].can_edit)

    def target(
        self, channel: str, message: dict, bot_user: str | None
    ) -> tuple[RemixTarget, str | None] | None:
        """The picture in `message` and the provider that drew it (None: a person's)."""
        ts = message.get("ts", "")
        thread = message.get("thread_ts") or ts
        kept = self.store.picture_at(channel, ts) if ts else None
        images = [
            f for f in message.get("files") or [] if str(f.get("mimetype", "")).startswith("image/")
        ]
        if kept is None and images:
            kept = self.store.picture_named(channel, UPLOAD + images[0].get("id", ""))
        if kept is not None:
            return RemixTarget(channel, thread, kept.picture, kept.generation_id), kept.provider
        if images and images[0].get("id"):
            return RemixTarget(channel, thread, UPLOAD + images[0]["id"]), None
        ours = bool(message.get("bot_id")) or message.get("user") == bot_user
        for block in message.get("blocks") or []:
            url = block.get("image_url") if block.get("type") == "image" else None
            if url and (ours or object_ref(url).startswith("gs://")):
                return RemixTarget(channel, thread, object_ref(url)), None
        return None

    def on_submit(self, ack: Ack, body: dict, view: dict, client: WebClient) -> None:
        words, provider = submitted(view)
        prompt = clean_text(words)
        if not prompt:
            ack(response_action="errors", errors={WORDS_BLOCK: NO_WORDS})
            return
        ack()
        target = RemixTarget.decode(view.get("private_metadata") or "{}")
        now = time.time()
        team = (body.get("team") or {}).get("id", "")
        job = EditJob(
            key=f"remix:{team}:{view.get('id', '')}",
            request_id=new_request_id(),
            team_id=team,
            channel_id=target.channel,
            user_id=(body.get("user") or {}).get("id", ""),
            thread_ts=target.thread_ts,
            created_at=now,
            deadline=now + self.deadline,
            provider=provider or self.choices()[0],
            request=ImageRequest(prompt=prompt),
            picture=target.picture,
            parent_id=target.parent_id,
        )
        submit(self.runner, job, client, "remix")
