"""Reactions become votes; enough votes reveal the models.

Only reactions on the bot's own comparison and single-picture posts count. Bolt drops the
events the bot causes itself (its own voting reactions); Slack's redeliveries carry the same
`event_id`, which the vote store keeps once, so a vote never counts twice.

A vote is stored before Slack is answered: Bolt acknowledges an event as soon as its listener
starts (without `process_before_response`), so the store is written in the listener's
middleware, which runs first, in the request; when the database cannot take it, Slack gets a
503 and delivers the event again (3 more times, over about 5 minutes). A reaction on one of the
bot's posts that is not registered yet is kept until it is. What may wait (revealing, matching
an upload with its message) runs after the acknowledgement.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient

from bot.config import VotingConfig
from bot.logs import log_event
from bot.slack.delivery import FileGone, shared_ts
from bot.slack.reveal import Reveal
from bot.votes.db import COMPARISON, DOWN, UP, VoteChange, VoteStore

log = logging.getLogger("imagine.slack")

UPLOAD_LOOKUPS = (0.0, 0.25, 0.5, 1.0, 2.0)  # pauses (s) before each look for a thumb's upload
LOOKUP_THREADS = 2

THUMBS = {"+1": UP, "thumbsup": UP, "-1": DOWN, "thumbsdown": DOWN}
RATINGS = {UP, DOWN}
STORED = "imagine_vote"  # context key: what storing the reaction did (a VoteChange or None)


class ReactionVotes:
    def __init__(self, votes: VoteStore, voting: VotingConfig, reveal: Reveal) -> None:
        self.votes = votes
        self.voting = voting
        self.reveal = reveal
        # a lookup may take seconds: on threads of its own, never holding a listener's
        self._lookups = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="upload-lookup")

    def register(self, app: App) -> None:
        for kind in ("reaction_added", "reaction_removed"):
            app.event(kind, middleware=[self.store_first])(self.after_stored)

    def store_first(
        self, body: dict, event: dict, context: dict, next: Callable[[], None]
    ) -> BoltResponse | None:
        """Before the acknowledgement: store the vote (or keep it for a post not registered
        yet), or answer 503 so that Slack delivers it again."""
        try:
            context[STORED] = self.store(body, event, context)
        except Exception as err:
            log.error(
                "could not store the reaction event_id=%s (%s); Slack will deliver it again",
                body.get("event_id"),
                type(err).__name__,
            )
            return BoltResponse(status=503, body="")
        next()
        return None

    def store(self, body: dict, event: dict, context: dict) -> VoteChange | None:
        """The reaction as a vote; None when it is none (yet)."""
        item = event.get("item") or {}
        voter = event.get("user")
        choice = self.choice_for(event.get("reaction", ""))
        if item.get("type") != "message" or choice is None or voter == context.get("bot_user_id"):
            return None
        ours = bool(event.get("item_user")) and event.get("item_user") == context.get("bot_user_id")
        try:
            return self.votes.apply_reaction(
                body["event_id"],
                item.get("channel", ""),
                item.get("ts", ""),
                voter,
                choice,
                event["type"] == "reaction_added",
                event["event_ts"],
                keep_if_unknown=ours,
            )
        except ValueError:
            return None  # a thumb on a comparison or a letter on a single post: not a vote

    def after_stored(self, body: dict, event: dict, context: dict, client: WebClient) -> None:
        """After the acknowledgement: match an upload that got its first thumb with its
        message (its kept reactions count then), and reveal when enough votes are in."""
        change: VoteChange | None = context.get(STORED)
        item = event.get("item") or {}
        if change is None:
            choice = self.choice_for(event.get("reaction", ""))
            ours = event.get("item_user") == context.get("bot_user_id")
            if choice in RATINGS and ours and item.get("type") == "message":
                channel, ts = item.get("channel", ""), item.get("ts", "")
                self._lookups.submit(self.match_upload, channel, ts, client)
            return
        log_event(
            log,
            "vote",
            event_id=body["event_id"],
            user=change.voter_id,
            channel=item.get("channel"),
            target=change.target,
            target_id=change.target_id,
            choice=change.choice,
            duplicate=change.duplicate,
            votes=change.vote_count,
        )
        if change.target == COMPARISON and not change.duplicate:
            if change.vote_count >= self.voting.reveal_after_votes:
                self.reveal(change.target_id)

    def match_upload(self, channel: str, ts: str, client: WebClient) -> bool:
        """Find the upload a thumb is on; its kept reactions then count. A thumb can come
        first: the upload's row is written a moment after its post (with the history), and
        Slack lists the share a moment after the upload. Look again for a few seconds, so
        that a vote Slack was told we received does not wait for the next thumb."""
        try:
            for pause in UPLOAD_LOOKUPS:
                time.sleep(pause)
                if find_upload(self.votes, channel, ts, client):
                    return True
        except Exception:  # the database or Slack: the next thumb looks again
            log.exception("could not match a thumb with its upload channel=%s", channel)
        return False

    def choice_for(self, reaction: str) -> str | None:
        """Reaction name (skin tone ignored) -> a comparison choice or a thumb, else None."""
        name = reaction.split("::", 1)[0]
        return self.voting.choices.get(name) or THUMBS.get(name)


def find_upload(votes: VoteStore, channel: str, ts: str, client: WebClient) -> bool:
    """Match the channel's pending uploads with the messages they became (each upload is
    looked up once, newest first) until one is the message at `ts`."""
    for upload in votes.pending_uploads(channel):
        try:
            shared = shared_ts(client, upload.file_id, channel)
        except FileGone:
            votes.resolve_upload(upload, None)
            continue
        if shared is None:
            continue  # not shared yet: ask again on the next thumb
        votes.resolve_upload(upload, shared)
        if shared == ts:
            return True
    return False
