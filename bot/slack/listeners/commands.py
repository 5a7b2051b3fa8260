"""`/imagine`: parse, choose the providers, validate, hand the job to the runner, acknowledge.

Everything before `ack()` is parsing and validation in memory, plus (with a queue) one round
trip to Redis to enqueue: a job that the acknowledgement promises is already durable. Every
refusal is one sentence in the acknowledgement.
"""

from __future__ import annotations

import logging
import time

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from bot import metrics
from bot.core.choice import ProviderChoice
from bot.core.jobs import CompareJob, GenerateJob, Job, LeaderboardJob, UsageJob, new_request_id
from bot.core.runner import Admission, Runner
from bot.generation.providers import resolve_provider_name
from bot.generation.service import GenerationService
from bot.generation.types import ImagineError
from bot.logs import log_event
from bot.slack import messages
from bot.slack.command import (
    CommandError,
    CompareCommand,
    HelpCommand,
    LeaderboardCommand,
    UsageCommand,
    parse_command,
)
from bot.slack.listeners.drawing import REFUSALS
from bot.slack.listeners.form import CANNOT_OPEN, ImagineForm

log = logging.getLogger("imagine.slack")


class ImagineCommand:
    """Parses `/imagine`, acknowledges, and submits the job."""

    def __init__(
        self,
        service: GenerationService,
        choice: ProviderChoice,
        runner: Runner,
        deadline: float,
        form: ImagineForm | None = None,
    ) -> None:
        """`form`: what a bare `/imagine` opens (without it, a bare `/imagine` helps)."""
        self.form = form
        self.service = service
        self.choice = choice
        self.runner = runner
        self.deadline = deadline

    def register(self, app: App) -> None:
        app.command("/imagine")(self.on_command)

    def on_command(self, ack: Ack, command: dict, client: WebClient) -> None:
        received = time.monotonic()
        if not command.get("text", "").strip() and self.form is not None:
            ack()  # then the form, within the trigger's 3 seconds
            opened = self.form.open(
                client,
                command.get("trigger_id", ""),
                command["channel_id"],
                command.get("response_url"),
            )
            log_event(log, "command", user=command.get("user_id"), kind="form", outcome=opened)
            if not opened and command.get("response_url"):
                WebhookClient(command["response_url"], timeout=15).send(
                    response_type="ephemeral", **messages.sentence(CANNOT_OPEN)
                )
            return
        request_id = new_request_id()
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
                job: Job = LeaderboardJob(
                    **self._context(command, request_id),
                    blind_only=parsed.blind_only,
                    since_seconds=parsed.since_seconds,
                    here=parsed.here,
                    post=parsed.post,
                )
                working = None
            elif isinstance(parsed, UsageCommand):
                job = UsageJob(**self._context(command, request_id))
                working = None
            else:
                why = None
                if isinstance(parsed, CompareCommand):
                    providers = self.choice.choose(compare=True)
                elif parsed.provider is not None:
                    providers = self.choice.choose(parsed.provider)
                else:  # the person's default, the team's, or the votes'
                    chosen = self.choice.for_prompt(command.get("user_id"))
                    providers, why = chosen.providers, chosen.why
                self.service.validate(parsed.request, providers)
                context = self._context(command, request_id)
                if len(providers) > 1:
                    job = CompareJob(**context, providers=providers, request=parsed.request)
                else:
                    job = GenerateJob(
                        **context, providers=providers, request=parsed.request, why=why
                    )
                models = {p: self.service.providers[p].model for p in providers}
                working = messages.working_text(models, parsed.request)
        except (CommandError, ImagineError) as err:
            ack(**messages.refusal(err, list(self.service.providers)))
            metrics.REFUSED.labels("invalid").inc()
            log_event(log, "command", **base, outcome="rejected", reason=type(err).__name__)
            return
        submitted = self.runner.submit(job)
        admission = submitted.admission
        if admission is Admission.ACCEPTED:
            if working:
                ack(text=working)
            else:
                ack()
            submitted.start()
            metrics.ACCEPTED.labels(job.kind).inc()
        elif admission is Admission.DUPLICATE:
            ack()  # the same command again (a retry): the first one is on its way
        else:
            ack(**messages.sentence(REFUSALS[admission].format(cap=self.runner.board.max_per_user)))
            metrics.REFUSED.labels(admission.value).inc()
        log_event(
            log,
            "command",
            **base,
            kind=job.kind,
            provider=",".join(getattr(job, "providers", ())),
            outcome=admission.value,
            options=dict(getattr(parsed, "options", {})),
            ack_ms=round((time.monotonic() - received) * 1000, 1),
        )

    def _context(self, command: dict, request_id: str) -> dict:
        """The job fields every command shares; the key is Slack's id for this invocation."""
        now = time.time()
        trigger = command.get("trigger_id") or request_id
        return {
            "key": f"command:{command.get('team_id', '')}:{trigger}",
            "request_id": request_id,
            "team_id": command.get("team_id", ""),
            "channel_id": command["channel_id"],
            "user_id": command["user_id"],
            "response_url": command.get("response_url"),
            "created_at": now,
            "deadline": now + self.deadline,
        }

    def help(self) -> dict:
        providers = {
            name: (", ".join(p.aliases), p.missing_settings())
            for name, p in self.service.providers.items()
        }
        return messages.help_message(providers, self.choice.default_name())
