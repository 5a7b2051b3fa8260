"""Reactions become votes; enough votes reveal the models.

Only reactions on the bot's own comparison and single-picture posts count. Bolt drops the
events the bot causes itself (its own voting reactions); Slack's redeliveries carry the same
`event_id`, which the vote store keeps once, so a vote never counts twice. A single picture
uploaded into Slack is matched with its message when the first 👍 / 👎 arrives on it.
"""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_sdk import WebClient

from bot.config import VotingConfig
from bot.logs import log_event
from bot.slack.delivery import Delivery, FileGone
from bot.slack.reveal import Reveal
from bot.votes.db import COMPARISON, DOWN, UP, VoteStore

log = logging.getLogger("imagine.slack")

THUMBS = {"+1": UP, "thumbsup": UP, "-1": DOWN, "thumbsdown": DOWN}
RATINGS = {UP, DOWN}


class ReactionVotes:
    def __init__(self, votes: VoteStore, voting: VotingConfig, reveal: Reveal) -> None:
        self.votes = votes
        self.voting = voting
        self.reveal = reveal

    def register(self, app: App) -> None:
        app.event("reaction_added")(self.on_added)
        app.event("reaction_removed")(self.on_removed)

    def on_added(self, body: dict, event: dict, context: dict, client: WebClient) -> None:
        self._on_reaction(body, event, context, client, added=True)

    def on_removed(self, body: dict, event: dict, context: dict, client: WebClient) -> None:
        self._on_reaction(body, event, context, client, added=False)

    def find_upload(self, channel: str, ts: str, client: WebClient) -> bool:
        """Match the channel's pending uploads with the messages they became (each upload is
        looked up once, newest first) until one is the message at `ts`."""
        delivery = Delivery(client)
        for upload in self.votes.pending_uploads(channel):
            try:
                shared = delivery.shared_ts(upload.file_id, channel)
            except FileGone:
                self.votes.resolve_upload(upload, None)
                continue
            if shared is None:
                continue  # not shared yet: ask again on the next thumb
            self.votes.resolve_upload(upload, shared)
            if shared == ts:
                return True
        return False

    def choice_for(self, reaction: str) -> str | None:
        """Reaction name (skin tone ignored) -> a comparison choice or a thumb, else None."""
        name = reaction.split("::", 1)[0]
        return self.voting.choices.get(name) or THUMBS.get(name)

    def _on_reaction(
        self, body: dict, event: dict, context: dict, client: WebClient, *, added: bool
    ) -> None:
        item = event.get("item") or {}
        voter = event.get("user")
        choice = self.choice_for(event.get("reaction", ""))
        if item.get("type") != "message" or choice is None or voter == context.get("bot_user_id"):
            return
        channel, ts = item.get("channel", ""), item.get("ts", "")

        def apply():
            return self.votes.apply_reaction(
                body["event_id"], channel, ts, voter, choice, added, event["event_ts"]
            )

        try:
            change = apply()
            if (
                change is None
                and choice in RATINGS
                and event.get("item_user") == context.get("bot_user_id")
            ):  # a thumb on one of our messages we do not know: an upload, perhaps
                if self.find_upload(channel, ts, client):
                    change = apply()
        except ValueError:
            return  # a thumb on a comparison or a letter on a single post: not a vote
        if change is None:
            return  # not one of our posts
        log_event(
            log,
            "vote",
            event_id=body["event_id"],
            user=voter,
            channel=channel,
            target=change.target,
            target_id=change.target_id,
            choice=change.choice,
            duplicate=change.duplicate,
            votes=change.vote_count,
        )
        if change.target == COMPARISON and not change.duplicate:
            if change.vote_count >= self.voting.reveal_after_votes:
                self.reveal(change.target_id, client)
