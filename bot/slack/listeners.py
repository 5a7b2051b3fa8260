"""`/imagine` -> the generation service -> a message in the channel.

The listener acknowledges at once, with no network call before `ack()`, and hands the slow
work to the job runner. Every job ends in a post or in one ephemeral sentence to the person
who asked: nobody is left waiting in silence.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.generation.providers import resolve_provider_name
from bot.generation.service import GenerationService
from bot.generation.types import ImagineError
from bot.logs import log_event
from bot.slack import messages
from bot.slack.command import (
    CommandError,
    CompareCommand,
    GenerateCommand,
    HelpCommand,
    LeaderboardCommand,
    UnknownProviderError,
    parse_command,
)
from bot.slack.publish import Job, Publisher

log = logging.getLogger("imagine.slack")


class ImagineCommand:
    """Parses `/imagine`, acknowledges, and routes the work to the right runner."""

    def __init__(
        self,
        service: GenerationService,
        run_job: Callable[[Callable[[], None]], Any],
        default_provider: str | None,
        publisher: Publisher,
        compare: Callable[[Job, WebClient], str],
        leaderboard: Callable[[LeaderboardCommand, dict, Respond, WebClient], None],
    ) -> None:
        self.service = service
        self.run_job = run_job
        self.default_provider = default_provider
        self.publisher = publisher
        self.compare = compare
        self.leaderboard = leaderboard

    def register(self, app: App) -> None:
        app.command("/imagine")(self.on_command)

    # -- the acknowledgement path: parsing and validation only, no network ------------------
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
            if isinstance(parsed, LeaderboardCommand):
                ack()
                log_event(log, "command", **base, kind="leaderboard", outcome="accepted")
                self.run_job(lambda: self.leaderboard(parsed, command, respond, client))
                return
            providers = self._providers_for(parsed)
            self.service.validate(parsed.request, providers)
        except (CommandError, ImagineError) as err:
            text = str(err) if isinstance(err, CommandError) else messages.error_text(err)
            if isinstance(err, UnknownProviderError):
                text += f" Choose one of: {', '.join(self.service.providers)}, or leave it out."
            ack(text=text)
            log_event(log, "command", **base, outcome="rejected", reason=type(err).__name__)
            return
        models = {p: self.service.providers[p].model for p in providers}
        ack(text=messages.working_text(models, parsed.request))
        job = Job(
            request_id,
            command["user_id"],
            command["channel_id"],
            tuple(providers),
            parsed.request,
            respond,
            received,
        )
        log_event(
            log,
            "command",
            **base,
            kind="compare" if len(providers) > 1 else "generate",
            provider=",".join(providers),
            model=",".join(models.values()),
            outcome="accepted",
            options=dict(getattr(parsed, "options", {})),
            ack_ms=round((time.monotonic() - received) * 1000, 1),
        )
        self.run_job(lambda: self.run(job, client))

    def _providers_for(self, parsed: GenerateCommand | CompareCommand) -> list[str]:
        configured = self.service.configured_providers()
        if isinstance(parsed, CompareCommand) or (
            parsed.provider is None and not self.default_provider and len(configured) > 1
        ):
            if len(configured) < 2:
                raise ImagineError(
                    "Comparing needs two configured providers; only "
                    f"{', '.join(configured) or 'none'} is set up here (see `/imagine help`)."
                )
            return configured
        if parsed.provider:
            return [parsed.provider]
        if self.default_provider:
            return [self.service.provider(self.default_provider).name]
        if not configured:
            raise ImagineError(
                "No image provider is configured yet: an admin can run `python -m bot check`."
            )
        return configured[:1]

    def help(self) -> dict:
        providers = {
            name: (", ".join(p.aliases), p.missing_settings())
            for name, p in self.service.providers.items()
        }
        configured = self.service.configured_providers()
        if self.default_provider:
            default = resolve_provider_name(self.default_provider)
        else:
            default = "compare" if len(configured) > 1 else next(iter(configured), None)
        return messages.help_message(providers, default)

    # -- the job: slow work off the request thread ------------------------------------------
    def run(self, job: Job, client: WebClient) -> None:
        outcome, model = "error", None
        try:
            if len(job.providers) > 1:
                outcome = self.compare(job, client)
                return
            [result] = self.service.generate(job.request, job.providers)
            model = result.model
            if result.error:
                outcome = result.error.kind
                self.publisher.record(job, result, outcome)
                job.tell(messages.error_text(result.error))
                return
            outcome = self.publisher.post_single(job, result, client)
        except Exception:
            log.exception("job failed request_id=%s", job.request_id)
            job.tell(":warning: Something went wrong on our side; please try again.")
        finally:
            log_event(
                log,
                "generation",
                request_id=job.request_id,
                user=job.user_id,
                channel=job.channel_id,
                provider=",".join(job.providers),
                model=model,
                outcome=outcome,
                latency_s=round(job.elapsed(), 3),
            )
