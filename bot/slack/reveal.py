"""Revealing which model drew which side of a comparison: the message redrawn in place, or,
for an upload (which an app cannot edit), a reply in its thread."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from slack_sdk import WebClient

from bot.config import VotingConfig
from bot.core.comparisons import redrawn_post
from bot.logs import log_event
from bot.slack import messages
from bot.slack.buttons import comparison_buttons
from bot.slack.messages import ComparisonView
from bot.votes.db import Comparison, VoteStore

log = logging.getLogger("imagine.slack")


class Reveal:
    """`link` makes a fresh URL of a stored picture (`GenerationService.link`): the stored
    comparison names its pictures by reference, never by a signed URL that has expired."""

    def __init__(
        self, votes: VoteStore, voting: VotingConfig, link: Callable[[str], str | None]
    ) -> None:
        self.votes = votes
        self.link = link
        self.emoji = {choice: name for name, choice in voting.choices.items()}

    def __call__(self, comparison_id: int, client: WebClient) -> bool:
        """Reveal once: only the caller that flips the flag redraws the message. The new URLs
        are made first, so a failure there leaves the comparison to be revealed again."""
        comparison = self.votes.comparison(comparison_id)
        if comparison is None or comparison.revealed:
            return False
        details = comparison.details
        models = comparison_models(comparison)
        post = None
        if details.get("mode") == "blocks":
            kept = details.get("post") or details["view"]  # "view": rows before 2026-11
            post = redrawn_post(kept, self.link) | {"models": models}
        if not self.votes.mark_revealed(comparison_id):
            return False
        tally = dict(Counter(self.votes.votes(comparison_id).values()))
        kept = details.get("post") or details.get("view") or {}
        options = kept.get("options") or {}
        if post is not None:
            view = ComparisonView.of(post, self.emoji)
            buttons = comparison_buttons(view.prompt, options, comparison.requester_id, models)
            message = messages.compare_message(view, revealed=True, tally=tally, buttons=buttons)
            client.chat_update(channel=comparison.channel_id, ts=comparison.message_ts, **message)
        else:
            buttons = comparison_buttons(
                comparison.prompt,
                options,
                comparison.requester_id,
                models,
                parent_ts=comparison.message_ts,
            )
            client.chat_postMessage(
                channel=comparison.channel_id,
                thread_ts=comparison.message_ts,
                **messages.reveal_reply(models, tally, buttons),
            )
        log_event(log, "reveal", comparison_id=comparison_id, votes=sum(tally.values()))
        return True


def comparison_models(comparison: Comparison) -> dict[str, tuple[str, str]]:
    return {p: (m.provider, m.model) for p, m in comparison.positions.items()}
