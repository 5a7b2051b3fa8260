"""The form: opened by a bare `/imagine`, the "Imagine this" message shortcut and a picture's
Edit prompt button; its submission is drawn like a command, in the channel it was opened from.

A field the person must fix is answered in place (`response_action: errors`); a refusal from
the runner (too many pictures on the way) closes the form and is told privately.
"""

from __future__ import annotations

import logging

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.core.jobs import Job, new_request_id
from bot.generation.types import ImageRequest, ImagineError
from bot.logs import log_event
from bot.slack import form, messages
from bot.slack.command import unescape_slack
from bot.slack.listeners.drawing import Drawing

log = logging.getLogger("imagine.slack")

SHORTCUT_CALLBACK = "imagine_this"
CANNOT_OPEN = ":warning: I couldn't open the form (Slack allows 3 seconds); please try again."


class ImagineForm:
    def __init__(self, drawing: Drawing) -> None:
        self.drawing = drawing

    def register(self, app: App) -> None:
        app.view(form.FORM_CALLBACK)(self.on_submit)
        app.shortcut(SHORTCUT_CALLBACK)(self.on_shortcut)

    def open(
        self,
        client: WebClient,
        trigger_id: str,
        channel_id: str,
        response_url: str | None,
        request: ImageRequest | None = None,
        model: str | None = None,
    ) -> bool:
        """views.open with the form; False (logged) when Slack refuses (an expired trigger)."""
        view = form.form_view(
            channel_id,
            response_url,
            self.drawing.service.configured_providers(),
            self.drawing.choice.default_name(),
            request,
            model,
        )
        try:
            client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as err:
            log.warning("views.open failed: %s", err.response.get("error"))
            return False
        return True

    def on_shortcut(self, ack: Ack, shortcut: dict, client: WebClient) -> None:
        """ "Imagine this" on a message: the form, its prompt the message's text."""
        ack()
        text = unescape_slack((shortcut.get("message") or {}).get("text") or "").strip()
        channel = (shortcut.get("channel") or {}).get("id", "")
        request = ImageRequest(prompt=text[: form.PROMPT_LIMIT])
        opened = self.open(
            client, shortcut["trigger_id"], channel, shortcut.get("response_url"), request
        )
        if not opened and shortcut.get("response_url"):
            _tell(shortcut["response_url"], CANNOT_OPEN)

    def on_submit(self, ack: Ack, body: dict, view: dict, client: WebClient) -> None:
        try:
            submitted = form.read_form(view)
        except form.FormErrors as err:
            ack(response_action="errors", errors=err.errors)
            return
        team = (body.get("team") or {}).get("id", "")
        user = body["user"]["id"]
        try:
            job = self.drawing.job(
                submitted.request,
                submitted.model,
                key=f"form:{team}:{view.get('id', '')}:{view.get('hash', '')}",
                request_id=new_request_id(),
                team_id=team,
                channel_id=submitted.channel_id,
                user_id=user,
                response_url=submitted.response_url,
            )
        except ImagineError as err:
            block = form.PROMPT if "prompt" in err.message.lower() else form.MODEL
            ack(response_action="errors", errors={block: messages.fit(err.message, 2000)})
            return
        ack()
        admission = self.drawing.submit(job, lambda said: _say(client, job, said))
        log_event(
            log, "form", request_id=job.request_id, user=user, kind=job.kind, outcome=admission
        )


def _say(client: WebClient, job: Job, said: dict) -> None:
    """Privately to the person: the response_url of what opened the form (it works where the
    bot is not a member), else an ephemeral message."""
    try:
        if job.response_url:
            WebhookClient(job.response_url, timeout=15).send(
                response_type="ephemeral", replace_original=False, **said
            )
        else:
            client.chat_postEphemeral(channel=job.channel_id, user=job.user_id, **said)
    except Exception as err:
        log.warning(
            "could not answer the form request_id=%s: %s", job.request_id, type(err).__name__
        )


def _tell(response_url: str, text: str) -> None:
    try:
        WebhookClient(response_url, timeout=15).send(
            response_type="ephemeral", replace_original=False, **messages.sentence(text)
        )
    except Exception as err:
        log.warning("could not answer: %s", type(err).__name__)
