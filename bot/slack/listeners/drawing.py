"""What every surface that draws shares (the command, the buttons, the form, a DM): the
request and the model named -> a job of the same kind `/imagine` makes, submitted to the same
runner under the same limits, answered with the same sentences."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot import metrics
from bot.core.choice import COMPARE, ProviderChoice
from bot.core.jobs import CompareJob, GenerateJob, Job
from bot.core.runner import Admission, Runner
from bot.generation.service import GenerationService
from bot.generation.types import ImageRequest
from bot.slack import messages

REFUSALS = {
    Admission.TOO_MANY: (
        ":raised_hand: You already have {cap} pictures on the way; wait for one to arrive "
        "(or cancel one), then try again."
    ),
    Admission.UNAVAILABLE: (
        ":warning: I can't take new pictures right now (the job queue is unreachable); "
        "please try again in a minute."
    ),
}


class Drawing:
    def __init__(
        self, service: GenerationService, choice: ProviderChoice, runner: Runner, deadline: float
    ) -> None:
        self.service = service
        self.choice = choice
        self.runner = runner
        self.deadline = deadline

    def job(
        self,
        request: ImageRequest,
        model: str | None,
        *,
        key: str,
        request_id: str,
        team_id: str,
        channel_id: str,
        user_id: str,
        response_url: str | None,
        thread_ts: str | None = None,
    ) -> GenerateJob | CompareJob:
        """`model`: a provider name, "compare", or None for the default. Raises ImagineError
        (a ConfigurationError or InvalidRequestError) with the sentence for the person."""
        compare = model == COMPARE
        providers = self.choice.choose(None if compare else model, compare=compare)
        self.service.validate(request, providers)
        kind = CompareJob if len(providers) > 1 else GenerateJob
        now = time.time()
        return kind(
            key=key,
            request_id=request_id,
            team_id=team_id,
            channel_id=channel_id,
            user_id=user_id,
            response_url=response_url,
            thread_ts=thread_ts,
            created_at=now,
            deadline=now + self.deadline,
            providers=providers,
            request=request,
        )

    def working(self, job: GenerateJob | CompareJob) -> messages.Mrkdwn:
        models = {p: self.service.providers[p].model for p in job.providers}
        return messages.working_text(models, job.request)

    def submit(self, job: Job, say: Callable[[dict], object]) -> Admission:
        """Submit `job`; `say` gets the private answer (what is being drawn, or why not)."""
        submitted = self.runner.submit(job)
        admission = submitted.admission
        if admission is Admission.ACCEPTED:
            if isinstance(job, GenerateJob | CompareJob):
                say(messages.message(self.working(job)))
            submitted.start()
            metrics.ACCEPTED.labels(job.kind).inc()
        elif admission is not Admission.DUPLICATE:  # a duplicate: the first is on its way
            cap = self.runner.board.max_per_user
            say(messages.sentence(REFUSALS[admission].format(cap=cap)))
            metrics.REFUSED.labels(admission.value).inc()
        return admission
