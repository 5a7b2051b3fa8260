"""Revealing which model drew which side of a comparison: the message redrawn in place, or,
for an upload (which an app cannot edit), a reply in its thread.

A reveal happens once: the caller that flips the comparison's flag shows it. If Slack then
does not take it, the flag is put back, so that the next vote or click reveals it; a reveal
that never shows, with the flag saying it did, could not be asked for again. The reply is a
tagged post: Slack failing it after it posted does not post it twice."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from bot.config import VotingConfig
from bot.core.comparisons import redrawn_post
from bot.logs import log_event
from bot.slack import messages
from bot.slack.buttons import comparison_buttons
from bot.slack.delivery import Delivery, once_tag
from bot.slack.messages import ComparisonView
from bot.votes.db import Comparison, VoteStore

log = logging.getLogger("imagine.slack")


class Reveal:
    """`link` makes a fresh URL of a stored picture (`GenerationService.link`): the stored
    comparison names its pictures by reference, never by a signed URL that has expired."""

    def __init__(
        self,
        votes: VoteStore,
        voting: VotingConfig,
        link: Callable[[str], str | None],
        delivery: Delivery,
    ) -> None:
        self.votes = votes
        self.link = link
        self.delivery = delivery
        self.emoji = {choice: name for name, choice in voting.choices.items()}

    def __call__(self, comparison_id: int) -> bool:
        """Reveal once: only the caller that flips the flag shows it. The new URLs are made
        first, and a failure to show it puts the flag back: either way the comparison can be
        revealed again (the error is raised for the caller to report)."""
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
        try:
            tally = self._show(comparison, post, models)
        except Exception:
            self._hide_again(comparison_id)
            raise
        log_event(log, "reveal", comparison_id=comparison_id, votes=sum(tally.values()))
        return True

    def _hide_again(self, comparison_id: int) -> None:
        try:
            self.votes.unmark_revealed(comparison_id)
        except Exception:  # the reveal's own error is the one raised
            log.exception("a reveal that failed stays marked comparison_id=%s", comparison_id)

    def _show(
        self, comparison: Comparison, post: dict | None, models: dict[str, tuple[str, str]]
    ) -> dict[str, int]:
        """The names in the channel, with the votes counted now; returns that count."""
        tally = dict(Counter(self.votes.votes(comparison.id).values()))
        kept = comparison.details.get("post") or comparison.details.get("view") or {}
        options = kept.get("options") or {}
        client = self.delivery.client
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
            self.delivery.post_message(
                comparison.channel_id,
                messages.reveal_reply(models, tally, buttons),
                once=once_tag("reveal", str(comparison.id), comparison.message_ts),
                thread_ts=comparison.message_ts,
            )
        return tally


def comparison_models(comparison: Comparison) -> dict[str, tuple[str, str]]:
    return {p: (m.provider, m.model) for p, m in comparison.positions.items()}
