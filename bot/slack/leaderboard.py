"""`/imagine leaderboard [--blind] [--since 30d] [--here] [--post]`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from slack_bolt import Respond
from slack_sdk import WebClient

from bot.config import VotingConfig
from bot.generation.stores.base import ImageStore
from bot.slack import messages
from bot.slack.command import LeaderboardCommand
from bot.slack.delivery import Delivery, NotInChannelError, Upload
from bot.votes.chart import ratings_chart
from bot.votes.db import VoteStore
from bot.votes.leaderboard import Leaderboard

log = logging.getLogger("imagine.slack")


class LeaderboardRunner:
    """Computes the ratings off the request thread and shows them to the requester
    (ephemeral) or, with `--post`, to the channel."""

    def __init__(self, votes: VoteStore, store: ImageStore | None, voting: VotingConfig) -> None:
        self.leaderboard = Leaderboard(votes)
        self.store = store
        self.voting = voting

    def __call__(
        self, command: LeaderboardCommand, slash: dict, respond: Respond, client: WebClient
    ) -> None:
        channel = slash["channel_id"]
        try:
            self._run(command, channel, respond, client)
        except Exception:
            log.exception("leaderboard failed")
            respond(
                text=":warning: The leaderboard could not be computed; please try again.",
                response_type="ephemeral",
                replace_original=False,
            )

    def _run(self, command: LeaderboardCommand, channel: str, respond: Respond, client) -> None:
        since = None
        if command.since_seconds:
            since = datetime.now(UTC) - timedelta(seconds=command.since_seconds)
        result = self.leaderboard.compute(
            since=since,
            channel_id=channel if command.here else None,
            blind_only=command.blind_only,
            min_votes=self.voting.leaderboard_min_votes,
        )
        filters = describe_filters(command)
        chart, chart_url = b"", None
        if result.rows and (self.store is not None or command.post):
            chart = ratings_chart(result.rows, title=f"Leaderboard · {filters or 'all votes'}")
            if self.store is not None:
                chart_url = self.store.put(chart, "image/png").url
        message = messages.leaderboard_message(
            result, chart_url, self.voting.leaderboard_min_votes, filters
        )
        if not command.post:
            respond(**message, response_type="ephemeral", replace_original=False)
            return
        delivery = Delivery(client)
        try:
            if chart_url or not result.rows:
                delivery.post_message(channel, message)
            else:
                table = message["blocks"][1]["text"]["text"]
                upload = Upload(chart, "image/png", "Imagine leaderboard", "Ratings chart")
                delivery.upload(channel, [upload], f"*{message['text']}*\n{table}")
        except NotInChannelError:
            message["blocks"].append(messages.context_block(messages.NOT_IN_CHANNEL))
            respond(**message, response_type="ephemeral", replace_original=False)


def describe_filters(command: LeaderboardCommand) -> str:
    parts = []
    if command.blind_only:
        parts.append("blind votes only")
    if command.since_seconds:
        days, hours = divmod(command.since_seconds // 3600, 24)
        parts.append(
            f"last {days} days" if not hours else f"last {command.since_seconds // 3600} h"
        )
    if command.here:
        parts.append("this channel")
    return ", ".join(parts)
