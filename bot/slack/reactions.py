"""Reactions become votes; the Reveal button and the vote count reveal the models.

Only reactions on the bot's own comparison and single-picture posts count. Bolt drops the
events the bot causes itself (its own voting reactions); Slack's redeliveries carry the same
`event_id`, which the vote store keeps once, so a vote never counts twice.
"""

from __future__ import annotations

import logging
from collections import Counter

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.config import VotingConfig
from bot.logs import log_event
from bot.slack import messages
from bot.votes.db import COMPARISON, Comparison, VoteStore

log = logging.getLogger("imagine.slack")

THUMBS = {"+1": "up", "thumbsup": "up", "-1": "down", "thumbsdown": "down"}


class Voting:
    def __init__(self, votes: VoteStore, voting: VotingConfig) -> None:
        self.votes = votes
        self.voting = voting

    def register(self, app: App) -> None:
        app.event("reaction_added")(self.on_added)
        app.event("reaction_removed")(self.on_removed)
        app.action(messages.REVEAL_ACTION)(self.on_reveal)

    def on_added(self, body: dict, event: dict, context: dict, client: WebClient) -> None:
        self._on_reaction(body, event, context, client, added=True)

    def on_removed(self, body: dict, event: dict, context: dict, client: WebClient) -> None:
        self._on_reaction(body, event, context, client, added=False)

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
        try:
            change = self.votes.apply_reaction(
                body["event_id"], channel, ts, voter, choice, added, event["event_ts"]
            )
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

    def on_reveal(self, ack: Ack, body: dict, respond: Respond, client: WebClient) -> None:
        ack()
        action = body["actions"][0]
        if "|" in action.get("value", ""):
            channel, ts = action["value"].split("|", 1)  # the requester's private button
        else:
            channel, ts = body["container"]["channel_id"], body["container"]["message_ts"]
        comparison = self.votes.comparison_at(channel, ts)
        user = body["user"]["id"]
        if comparison is None:
            respond(
                text="I don't know this comparison any more.",
                response_type="ephemeral",
                replace_original=False,
            )
        elif user != comparison.requester_id:
            respond(
                text=f"Only <@{comparison.requester_id}> can reveal the models early; they are "
                f"revealed after {self.voting.reveal_after_votes} votes.",
                response_type="ephemeral",
                replace_original=False,
            )
        elif not self.reveal(comparison.id, client) and comparison.revealed:
            respond(
                text="The models are already revealed.",
                response_type="ephemeral",
                replace_original=False,
            )

    def reveal(self, comparison_id: int, client: WebClient) -> bool:
        """Reveal once: only the caller that flips the flag redraws the message."""
        if not self.votes.mark_revealed(comparison_id):
            return False
        comparison = self.votes.comparison(comparison_id)
        assert comparison is not None
        tally = Counter(self.votes.votes(comparison_id).values())
        details = comparison.details
        models = comparison_models(comparison)
        if details.get("mode") == "blocks":
            view = messages.ComparisonView(**{**details["view"], "models": models})
            message = messages.compare_message(view, revealed=True, tally=dict(tally))
            client.chat_update(channel=comparison.channel_id, ts=comparison.message_ts, **message)
        else:
            client.chat_postMessage(
                channel=comparison.channel_id,
                thread_ts=comparison.message_ts,
                text=messages.reveal_text(models, dict(tally)),
            )
        log_event(log, "reveal", comparison_id=comparison_id, votes=sum(tally.values()))
        return True


def comparison_models(comparison: Comparison) -> dict[str, tuple[str, str]]:
    return {p: (m.provider, m.model) for p, m in comparison.positions.items()}
