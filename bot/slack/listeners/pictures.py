"""A picture's buttons: Again, Try with <model>, Compare, Edit prompt, Delete.

Every click is acknowledged at once. Again, Try and Compare become a job of the same kind a
command makes (same runner, limits and sentences), keyed by the click's trigger_id, so that a
click Slack delivers twice draws once; a double click is acted on once (`first_click`). Edit
opens the form filled in. Delete removes the post, for the person who asked or an admin
(`IMAGINE_ADMINS`); anyone else is told privately, and nothing changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core.choice import COMPARE
from bot.core.jobs import new_request_id
from bot.core.runner import JobBoard
from bot.generation.types import ImagineError
from bot.logs import log_event
from bot.slack import buttons, messages
from bot.slack.listeners.actions import first_click
from bot.slack.listeners.drawing import Drawing
from bot.slack.listeners.form import ImagineForm

log = logging.getLogger("imagine.slack")

NOT_OURS = ":warning: I don't recognise this button any more; use `/imagine` instead."
NOT_DELETED = ":warning: I couldn't delete this picture just now; please try again."
GONE = {"message_not_found", "file_not_found", "file_deleted"}


def _private(respond: Respond, said: dict) -> None:
    respond(**said, response_type="ephemeral", replace_original=False)


class PictureButtons:
    def __init__(
        self, drawing: Drawing, form: ImagineForm, board: JobBoard, admins: frozenset[str]
    ) -> None:
        self.drawing = drawing
        self.form = form
        self.board = board
        self.admins = admins
        self.handlers: dict[str, Callable[..., None]] = {
            buttons.AGAIN_ACTION: self.again,
            buttons.TRY_ACTION: self.again,
            buttons.COMPARE_ACTION: self.again,
            buttons.EDIT_ACTION: self.edit,
            buttons.DELETE_ACTION: self.delete,
        }

    def register(self, app: App) -> None:
        for action_id in buttons.PICTURE_ACTIONS:
            app.action(action_id)(self.on_click)

    def on_click(self, ack: Ack, body: dict, respond: Respond, client: WebClient) -> None:
        ack()
        if not first_click(self.board, body):
            return
        action = body["actions"][0]
        try:
            ref = buttons.decode(action.get("value", ""))
        except ValueError:
            _private(respond, messages.sentence(NOT_OURS))
            return
        log_event(log, "click", action=action["action_id"], user=body["user"]["id"])
        self.handlers[action["action_id"]](action["action_id"], ref, body, respond, client)

    def again(
        self, action_id: str, ref: buttons.PictureRef, body: dict, respond: Respond, _client
    ) -> None:
        """Again: the same model (a comparison: compare again); Try: the button's model;
        Compare: blind. The prompt and options as they were, a new seed."""
        if action_id == buttons.TRY_ACTION:
            model = ref.target
        elif action_id == buttons.COMPARE_ACTION or ref.provider is None:
            model = COMPARE
        else:
            model = ref.provider
        team = (body.get("team") or {}).get("id", "")
        try:
            job = self.drawing.job(
                ref.request,
                model,
                key=f"click:{team}:{body.get('trigger_id') or action_ts(body)}",
                request_id=new_request_id(),
                team_id=team,
                channel_id=body["container"]["channel_id"],
                user_id=body["user"]["id"],
                response_url=body.get("response_url"),
            )
        except ImagineError as err:
            _private(respond, messages.message(messages.error_text(err)))
            return
        self.drawing.submit(job, lambda said: _private(respond, said))

    def edit(
        self, _action: str, ref: buttons.PictureRef, body: dict, respond: Respond, client
    ) -> None:
        model = ref.provider or COMPARE
        channel = body["container"]["channel_id"]
        if not self.form.open(
            client, body["trigger_id"], channel, body.get("response_url"), ref.request, model
        ):
            _private(respond, messages.sentence(":warning: I couldn't open the form; try again."))

    def delete(
        self, _action: str, ref: buttons.PictureRef, body: dict, respond: Respond, client
    ) -> None:
        user = body["user"]["id"]
        if user != ref.requester and user not in self.admins:
            _private(respond, buttons.refused_delete(ref.requester))
            log_event(log, "delete", user=user, outcome="refused")
            return
        channel = body["container"]["channel_id"]
        try:
            for file_id in ref.file_ids:  # an upload of several pictures: every one
                _gone_ok(lambda f=file_id: client.files_delete(file=f))
            _gone_ok(
                lambda: client.chat_delete(channel=channel, ts=body["container"]["message_ts"])
            )
            if ref.parent_ts:
                _gone_ok(lambda: client.chat_delete(channel=channel, ts=ref.parent_ts))
        except SlackApiError as err:
            log.warning("delete failed: %s", err.response.get("error"))
            _private(respond, messages.sentence(NOT_DELETED))
            return
        log_event(log, "delete", user=user, outcome="deleted", admin=user != ref.requester)


def _gone_ok(call: Callable[[], object]) -> None:
    """Deleting what is already gone (a second click, someone faster) is done, not an error."""
    try:
        call()
    except SlackApiError as err:
        if err.response.get("error") not in GONE:
            raise


def action_ts(body: dict) -> str:
    return str(body["actions"][0].get("action_ts", ""))
