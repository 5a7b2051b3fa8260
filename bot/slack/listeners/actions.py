"""Buttons: Reveal the models of a comparison; Cancel a picture that waits for its turn.

A click acts once: the same button on the same message clicked again by the same person within
`CLICK_SECONDS` (Slack or a proxy delivering it twice, a double click) is acknowledged and
ignored, in every process (the job board remembers it).
"""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond

from bot.config import VotingConfig
from bot.core.runner import CLICK_SECONDS, JobBoard, Runner
from bot.logs import log_event
from bot.slack import messages
from bot.slack.reveal import Reveal
from bot.votes.db import VoteStore

log = logging.getLogger("imagine.slack")


def _private(respond: Respond, text: str | dict) -> None:
    said = text if isinstance(text, dict) else messages.sentence(text)
    respond(**said, response_type="ephemeral", replace_original=False)


def first_click(board: JobBoard, body: dict) -> bool:
    """False when this click was seen within `CLICK_SECONDS`: who clicked which button (and
    value) on which message."""
    action = body["actions"][0]
    key = ":".join(
        (
            "click",
            (body.get("team") or {}).get("id", ""),
            body["user"]["id"],
            action.get("action_id", ""),
            action.get("value", ""),
            (body.get("container") or {}).get("message_ts", ""),
        )
    )
    try:
        return board.once(key, CLICK_SECONDS)
    except Exception as err:  # the board unreachable (Redis restarting): act, as before
        log.warning("could not check for a repeated click: %s", type(err).__name__)
        return True


NOT_NOW = ":warning: I couldn't reveal the models just now; please try again in a minute."


class RevealButton:
    """Only the requester reveals early; everyone else is told when the names will show."""

    def __init__(
        self, votes: VoteStore, voting: VotingConfig, reveal: Reveal, board: JobBoard
    ) -> None:
        self.votes = votes
        self.voting = voting
        self.reveal = reveal
        self.board = board

    def register(self, app: App) -> None:
        app.action(messages.REVEAL_ACTION)(self.on_click)

    def on_click(self, ack: Ack, body: dict, respond: Respond) -> None:
        ack()
        if not first_click(self.board, body):
            return
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
                messages.reveal_refused(comparison.requester_id, self.voting.reveal_after_votes),
            )
        else:
            try:
                revealed = self.reveal(comparison.id)
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
        if not first_click(self.runner.board, body):
            return
        key = body["actions"][0].get("value", "")
        user = body["user"]["id"]
        cancelled = self.runner.cancel(key, user)
        log_event(log, "cancel", user=user, cancelled=cancelled)
        if cancelled:
            respond(
                **messages.sentence(":x: Cancelled: nothing will be drawn."), replace_original=True
            )
        else:
            _private(respond, "Too late to cancel: that picture is already done.")
