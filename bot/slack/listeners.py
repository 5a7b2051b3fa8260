"""`/imagine` -> the generation service -> a message in the channel.

The listener acknowledges at once, with no network call before `ack()`, and hands the slow
work to the job runner. The job posts the result, or one ephemeral sentence on failure: a
person always hears back.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.generation.providers import resolve_provider_name
from bot.generation.service import GenerationService
from bot.generation.stores.base import extension_for
from bot.generation.types import ImageRequest, ImagineError, ProviderResult
from bot.logs import log_event
from bot.slack import messages
from bot.slack.command import (
    CommandError,
    GenerateCommand,
    HelpCommand,
    UnknownProviderError,
    parse_command,
)

log = logging.getLogger("imagine.slack")

CANNOT_POST = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}


@dataclass(frozen=True)
class Job:
    request_id: str
    user_id: str
    channel_id: str
    provider: str
    request: ImageRequest
    respond: Respond
    received: float


class ImagineCommand:
    """The `/imagine` listener and the job it hands to the runner."""

    def __init__(
        self,
        service: GenerationService,
        run_job: Callable[[Callable[[], None]], Any],
        default_provider: str | None = None,
    ) -> None:
        self.service = service
        self.run_job = run_job
        self.default_provider = default_provider

    def register(self, app: App) -> None:
        app.command("/imagine")(self.on_command)

    # -- the acknowledgement path: pure work only -------------------------------------------
    def on_command(self, ack: Ack, command: dict, respond: Respond, client: WebClient) -> None:
        received = time.monotonic()
        request_id = uuid.uuid4().hex[:12]
        base = {
            "request_id": request_id,
            "user": command.get("user_id"),
            "channel": command.get("channel_id"),
        }
        try:
            parsed = parse_command(command.get("text", ""), resolve_provider_name)
            if isinstance(parsed, HelpCommand):
                ack(**self.help())
                log_event(log, "command", **base, kind="help", outcome="help")
                return
            provider = self._provider_for(parsed)
            self.service.validate(parsed.request, [provider])
        except (CommandError, ImagineError) as err:
            text = str(err) if isinstance(err, CommandError) else messages.error_text(err)
            if isinstance(err, UnknownProviderError):
                text += f" Choose one of: {', '.join(self.service.providers)}, or leave it out."
            ack(text=text)
            log_event(log, "command", **base, outcome="rejected", reason=type(err).__name__)
            return
        model = self.service.providers[provider].model
        ack(text=messages.working_text(provider, model, parsed.request))
        job = Job(
            request_id,
            command["user_id"],
            command["channel_id"],
            provider,
            parsed.request,
            respond,
            received,
        )
        log_event(
            log,
            "command",
            **base,
            provider=provider,
            model=model,
            outcome="accepted",
            options=parsed.options,
            ack_ms=round((time.monotonic() - received) * 1000, 1),
        )
        self.run_job(lambda: self.run(job, client))

    def _provider_for(self, parsed: GenerateCommand) -> str:
        if parsed.provider:
            return parsed.provider
        if self.default_provider:
            return self.service.provider(self.default_provider).name
        configured = self.service.configured_providers()
        if not configured:
            raise ImagineError(
                "No image provider is configured yet: an admin can run `python -m bot check`."
            )
        return configured[0]

    def help(self) -> dict:
        providers = {
            name: (", ".join(p.aliases), p.missing_settings())
            for name, p in self.service.providers.items()
        }
        default = self.default_provider or next(iter(self.service.configured_providers()), None)
        return messages.help_message(providers, default and resolve_provider_name(default))

    # -- the job: slow work off the request thread ------------------------------------------
    def run(self, job: Job, client: WebClient) -> None:
        outcome, model = "error", None
        try:
            [result] = self.service.generate(job.request, [job.provider])
            model = result.model
            if result.error:
                outcome = result.error.kind
                job.respond(
                    text=messages.error_text(result.error),
                    response_type="ephemeral",
                    replace_original=False,
                )
                return
            outcome = self.post(job, result, client)
        except Exception:
            log.exception("job failed request_id=%s", job.request_id)
            self._tell(job, ":warning: Something went wrong on our side; please try again.")
        finally:
            log_event(
                log,
                "generation",
                request_id=job.request_id,
                user=job.user_id,
                channel=job.channel_id,
                provider=job.provider,
                model=model,
                outcome=outcome,
                latency_s=round(time.monotonic() - job.received, 3),
            )

    def post(self, job: Job, result: ProviderResult, client: WebClient) -> str:
        """Post the pictures in the channel; join or fall back when we are not a member."""
        seconds = time.monotonic() - job.received
        try:
            self._post_once(job, result, client, seconds)
            return "ok"
        except SlackApiError as err:
            error = err.response.get("error")
            if error not in CANNOT_POST:
                raise
        if error == "not_in_channel" and self._join(client, job.channel_id):
            self._post_once(job, result, client, seconds)
            return "ok"
        if all(image.url for image in result.images):
            message = messages.result_message(result, job.request, job.user_id, seconds)
            message["blocks"].append(messages.context_block(messages.NOT_IN_CHANNEL))
            job.respond(**message, response_type="ephemeral", replace_original=False)
        else:
            self._tell(job, f":warning: {messages.NOT_IN_CHANNEL}")
        return "not_in_channel"

    def _post_once(self, job: Job, result: ProviderResult, client: WebClient, seconds: float):
        if all(image.url for image in result.images):
            message = messages.result_message(result, job.request, job.user_id, seconds)
            client.chat_postMessage(channel=job.channel_id, unfurl_links=False, **message)
            return
        uploads = [
            {
                "content": image.data,
                "filename": f"imagine-{i}.{extension_for(image.mime_type)}",
                "title": messages.truncate(job.request.prompt, 200),
                "alt_text": messages.truncate(job.request.prompt, messages.ALT_TEXT_LIMIT),
            }
            for i, image in enumerate(result.images, start=1)
        ]
        client.files_upload_v2(
            channel=job.channel_id,
            file_uploads=uploads,
            initial_comment=messages.upload_comment(result, job.request, job.user_id, seconds),
        )

    @staticmethod
    def _join(client: WebClient, channel_id: str) -> bool:
        try:
            client.conversations_join(channel=channel_id)
            return True
        except SlackApiError:
            return False  # private channel or DM: only an invitation lets us in

    @staticmethod
    def _tell(job: Job, text: str) -> None:
        try:
            job.respond(text=text, response_type="ephemeral", replace_original=False)
        except Exception:
            log.exception("could not reach the requester request_id=%s", job.request_id)
