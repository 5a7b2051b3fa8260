"""Direct messages: a DM to the bot is a prompt (with the command's grammar: a model name
first, options last, `help`), drawn and answered in the DM.

Bolt runs only the first listener that matches an event, so this one must not match a
channel's message (another listener takes thread replies). Bolt's dict constraint checks only
`type` and `subtype` (a `channel_type` key in it is ignored: every message would match), so
the conversation type is a listener matcher. Messages from bots (this one included) and every
subtype (edits, deletions, joins, file shares) are not prompts.
"""

from __future__ import annotations

import logging

from slack_bolt import App, Say

from bot.core.jobs import new_request_id
from bot.generation.providers import resolve_provider_name
from bot.generation.types import ImagineError
from bot.logs import log_event
from bot.slack import messages
from bot.slack.command import (
    CommandError,
    CompareCommand,
    HelpCommand,
    LeaderboardCommand,
    parse_command,
)
from bot.slack.listeners.drawing import Drawing

log = logging.getLogger("imagine.slack")

LEADERBOARD_HERE = "The leaderboard is `/imagine leaderboard`, in any channel or here."


class DirectMessages:
    def __init__(self, drawing: Drawing, help_message) -> None:
        self.drawing = drawing
        self.help_message = help_message

    def register(self, app: App) -> None:
        # every DM message (subtypes too) is taken, and ignored below: an event no listener
        # takes is answered 404, which Slack counts as a failed delivery and sends again
        app.event("message", matchers=[is_direct_message])(self.on_message)

    def on_message(self, event: dict, body: dict, say: Say) -> None:
        if event.get("subtype") or event.get("bot_id") or not event.get("user"):
            return
        text = event.get("text") or ""
        try:
            parsed = parse_command(text, resolve_provider_name)
            if isinstance(parsed, HelpCommand):
                say(**self.help_message())
                return
            if isinstance(parsed, LeaderboardCommand):
                say(**messages.sentence(LEADERBOARD_HERE))
                return
            model = "compare" if isinstance(parsed, CompareCommand) else parsed.provider
            team = body.get("team_id", "")
            job = self.drawing.job(
                parsed.request,
                model,
                key=f"dm:{team}:{event['channel']}:{event['ts']}",
                request_id=new_request_id(),
                team_id=team,
                channel_id=event["channel"],
                user_id=event["user"],
                response_url=None,
            )
        except (CommandError, ImagineError) as err:
            say(**messages.refusal(err, list(self.drawing.service.providers)))
            return
        admission = self.drawing.submit(job, lambda said: say(**said))
        log_event(
            log, "dm", request_id=job.request_id, user=job.user_id, kind=job.kind, outcome=admission
        )


def is_direct_message(event: dict) -> bool:
    return event.get("channel_type") == "im"
