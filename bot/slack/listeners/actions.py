"""Buttons: Reveal the models of a comparison; Cancel a picture that waits for its turn."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.config import VotingConfig
from bot.core.runner import Runner
from bot.logs import log_event
from bot.slack import messages
from bot.slack.reveal import Reveal
from bot.votes.db import VoteStore

log = logging.getLogger("imagine.slack")


NOT_NOW = ":warning: I couldn't reveal the models just now; please try again in a minute."


def _private(respond: Respond, text: str) -> None:
    respond(text=text, response_type="ephemeral", replace_original=False)


class RevealButton:
    """Only the requester reveals early; everyone else is told when the names will show."""

    def __init__(self, votes: VoteStore, voting: VotingConfig, reveal: Reveal) -> None:
        self.votes = votes
        self.voting = voting
        self.reveal = reveal

    def register(self, app: App) -> None:
        app.action(messages.REVEAL_ACTION)(self.on_click)

    def on_click(self, ack: Ack, body: dict, respond: Respond, client: WebClient) -> None:
        ack()
        action = body["actions"][0]
        if "|" in action.get("value", ""):
            channel, ts = action["value"].split("|", 1)  # the requester's private button
        else:
            channel, ts = body["container"]["channel_id"], body["container"]["message_ts"]
        user = body["user"]["id"]
        try:
            comparison = self.votes.comparison_at(channel, ts)
        except Exception:
            log.exception("could not read the comparison to reveal")
            _private(respond, NOT_NOW)
            return
        if comparison is None:
            _private(respond, "I don't know this comparison any more.")
        elif user != comparison.requester_id:
            _private(
                respond,
                f"Only <@{comparison.requester_id}> can reveal the models early; they are "
                f"revealed after {self.voting.reveal_after_votes} votes.",
            )
        else:
            try:
                revealed = self.reveal(comparison.id, client)
            except Exception:
                log.exception("could not reveal comparison_id=%s", comparison.id)
                _private(respond, NOT_NOW)
                return
            if not revealed and comparison.revealed:
                _private(respond, "The models are already revealed.")


class CancelButton:
    """The Cancel button on the private "waiting for quota" note (only its owner sees it)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def register(self, app: App) -> None:
        app.action(messages.CANCEL_ACTION)(self.on_click)

    def on_click(self, ack: Ack, body: dict, respond: Respond) -> None:
        ack()
        key = body["actions"][0].get("value", "")
        user = body["user"]["id"]
        cancelled = self.runner.cancel(key, user)
        log_event(log, "cancel", user=user, cancelled=cancelled)
        if cancelled:
            respond(text=":x: Cancelled: nothing will be drawn.", replace_original=True)
        else:
            _private(respond, "Too late to cancel: that picture is already done.")
