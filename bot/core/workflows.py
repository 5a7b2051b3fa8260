"""The application's workflows: draw, compare, rank. One set for every front end.

`Workflows.run(job)` is what a runner calls, in the process that acknowledged the job or in a
worker on the queue. It checks that the job still needs doing (not cancelled, not expired),
draws under the providers' quotas, claims the delivery (a second run of the same job, after a
worker died, finds the claim and posts nothing), hands the outcome to the front end's
`Publisher`, and records the history. Every job ends in a post or in one sentence to the
person who asked.
"""

from __future__ import annotations

import logging
import math
import random
import string
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from bot import metrics
from bot.config import JobsConfig, VotingConfig
from bot.core.comparisons import kept_post
from bot.core.governance import Governance, LimitRefusal
from bot.core.jobs import CompareJob, EditJob, GenerateJob, Job, LeaderboardJob, UsageJob
from bot.core.ports import (
    UPLOAD,
    ComparisonPost,
    ComposedComparison,
    DeliveryFailed,
    Posted,
    Publisher,
)
from bot.core.previews import PreviewPosts
from bot.core.progress import JobProgress
from bot.core.runner import JobBoard
from bot.generation.compose import compose_grid, side_by_side
from bot.generation.pacing import JobCancelled, Turn, current_turn
from bot.generation.previews import current_previews
from bot.generation.service import GenerationService
from bot.generation.types import ImagineError, ProviderResult, StoredImage
from bot.logs import log_event
from bot.votes.chart import ratings_chart
from bot.votes.db import POSTED, POSTING, TOLD, DeliveryOutcome, VoteStore, history_entry
from bot.votes.history import HistoryWriter
from bot.votes.leaderboard import Leaderboard
from bot.votes.schema import object_ref

log = logging.getLogger("imagine.jobs")

SOMETHING_WRONG = ":warning: Something went wrong on our side; please try again."
EXPIRED = (
    ":hourglass: Your picture of “{prompt}” could not be drawn within {minutes} minutes, so I "
    "gave up on it; please try again."
)
NOT_POSTED = (
    ":warning: Your picture of “{prompt}” was drawn, but could not be posted before its "
    "deadline; please try again."
)
INTERRUPTED = (
    ":warning: I was stopped while posting your picture of “{prompt}”, so it may not have "
    "arrived. If you don't see it in the channel, please run the command again."
)


class Workflows:
    """Build once per process; `run` is safe to call from many threads at once."""

    def __init__(
        self,
        service: GenerationService,
        store: VoteStore,
        publisher: Publisher,
        voting: VotingConfig,
        *,
        board: JobBoard | None = None,
        rng: random.Random | None = None,
        ledger: bool = True,
        governance: Governance | None = None,
        posts_at_once: int = JobsConfig.posts_at_once,
    ) -> None:
        """`ledger`: keep the delivery ledger, because the runner may run a job twice (a queue
        redelivers a dead worker's jobs). Threads in one process never do. `posts_at_once`:
        the process's posting slots (`_posting_slot`)."""
        self._slots = threading.BoundedSemaphore(posts_at_once)
        self.service = service
        self.ledger = ledger
        self.governance = governance
        self.store = store
        self.publisher = publisher
        self.voting = voting
        self.board = board
        self.rng = rng or random.SystemRandom()
        self.leaderboard = Leaderboard(store)
        self.history = HistoryWriter.of(store)

    def close(self) -> None:
        """At a stop, after the last job: write the history still queued."""
        if not self.history.flush():
            log.warning("the history writer did not finish in time")
        if self.governance is not None:
            try:
                self.governance.flush()
            except Exception:
                log.warning("the usage writer did not finish in time")

    # -- running a job ---------------------------------------------------------------------
    def run(self, job: Job) -> str:
        """Do the job; return its outcome for logs and metrics. Never raises."""
        outcome = "error"
        try:
            outcome = self._run(job)
        except JobCancelled:
            outcome = "cancelled"
        except DeliveryFailed as err:  # drawn, but the front end could not show it in time
            outcome = "undelivered"
            self.publisher.tell(job, str(err))
            self._finish(job, TOLD)
        except Exception:
            log.exception("job failed request_id=%s", job.request_id)
            self.publisher.tell(job, SOMETHING_WRONG)
            self._finish(job, TOLD)
        finally:
            metrics.JOBS.labels(job.kind, outcome).inc()
            log_event(
                log,
                "job",
                request_id=job.request_id,
                kind=job.kind,
                user=job.user_id,
                channel=job.channel_id,
                outcome=outcome,
                latency_s=round(job.elapsed(), 3),
            )
            self._leave_board(job)
        return outcome

    def _observe(self, job: Job, result: ProviderResult, event: str, **fields: Any) -> None:
        """One provider call's metrics and log line (a cancelled call ends the job here)."""
        if isinstance(result.error, JobCancelled):
            raise result.error
        outcome = result.error.kind if result.error else "ok"
        seconds = result.timings.get("total", 0.0)
        metrics.PROVIDER_SECONDS.labels(result.provider, outcome).observe(seconds)
        log_event(
            log,
            event,
            request_id=job.request_id,
            user=job.user_id,
            channel=job.channel_id,
            provider=result.provider,
            model=result.model,
            outcome=outcome,
            provider_s=result.timings.get("provider"),
            latency_s=round(job.elapsed(), 3),
            **fields,
        )

    def _leave_board(self, job: Job) -> None:
        """The job no longer counts toward its person's cap. Best effort: an unreachable board
        (Redis restarting) expires the entry itself, and must not fail a job already shown."""
        if self.board is None:
            return
        try:
            self.board.finish_soon(job)
        except Exception as err:
            log.warning("could not update the job board request_id=%s: %s", job.request_id, err)

    def give_up(self, job: Job) -> None:
        """Every run of the job crashed (the queue's retries are spent): say so, once."""
        state = self._delivery_state(job)
        if state not in (POSTED, TOLD) and (state == POSTING or self._claim(job)):
            self.publisher.tell(job, SOMETHING_WRONG)
            self._finish(job, TOLD)
        self._leave_board(job)

    def _run(self, job: Job) -> str:
        if self._may_be_cancelled(job) and self._is_cancelled(job):
            return "cancelled"  # the person was told when they pressed Cancel
        if isinstance(job, LeaderboardJob | UsageJob):
            return self._show_figures(job)
        if not isinstance(job, GenerateJob | CompareJob | EditJob):
            raise TypeError(f"no workflow for {job.kind} jobs")
        if job.expired():
            return self._expire(job)
        refusal = self._admit(job)
        if refusal is not None:
            return self._refuse(job, refusal)
        progress = JobProgress(self.publisher, job)
        turn = Turn(
            user=job.user_id,
            deadline=job.deadline or math.inf,
            on_wait=progress.waiting,
            on_start=progress.started,
            cancelled=self._cancelled_check(job),
        )
        token = current_turn.set(turn)
        try:
            if isinstance(job, CompareJob):
                return self.compare(job, progress)
            if isinstance(job, EditJob):
                return self.edit(job)
            return self.generate(job, progress)
        finally:
            current_turn.reset(token)

    def _show_figures(self, job: LeaderboardJob | UsageJob) -> str:
        """A leaderboard or usage request, shown unless it was shown before or its person was
        told no (the hand-over seemed to fail). A run that died while showing it is shown again:
        twice the same figures beat none."""
        if not (self._claim(job) or self._delivery_state(job) == POSTING):
            return "duplicate"
        if isinstance(job, LeaderboardJob):
            outcome = self.show_leaderboard(job)
        else:
            outcome = self.show_usage(job)
        self._finish(job, POSTED if outcome == "ok" else TOLD)
        return outcome

    def _expire(self, job: GenerateJob | CompareJob | EditJob) -> str:
        if not self._claim(job):
            return self._claimed_before(job)
        minutes = max(1, round((job.deadline - job.created_at) / 60))
        self.publisher.tell(job, EXPIRED.format(prompt=_short(job.request.prompt), minutes=minutes))
        self._finish(job, TOLD)
        return "expired"

    def _claimed_before(self, job: GenerateJob | CompareJob | EditJob) -> str:
        """An earlier run of this job got to its post first (a queue redelivery). If it died
        while posting, the picture may or may not be there: say so rather than post twice."""
        if self._delivery_state(job) != POSTING:
            return "duplicate"
        self.publisher.tell(job, INTERRUPTED.format(prompt=_short(job.request.prompt)))
        self._finish(job, TOLD)
        return "interrupted"

    def _may_be_cancelled(self, job: Job) -> bool:
        """Only a job that waited its turn at a quota showed a Cancel button: without a paced
        provider nothing can have cancelled it, and the board is not asked."""
        providers = job.providers if isinstance(job, GenerateJob | CompareJob | EditJob) else ()
        paced = self.service.quotas()
        return any(name in paced for name in providers)

    def _cancelled_check(self, job: Job):
        return None if self.board is None else lambda: self._is_cancelled(job)

    def _is_cancelled(self, job: Job) -> bool:
        if self.board is None:
            return False
        try:
            return self.board.cancelled(job.key)
        except Exception:  # the board unreachable: carry on, as if nobody pressed Cancel
            return False

    @contextmanager
    def _posting_slot(self, job: GenerateJob | CompareJob | EditJob) -> Iterator[None]:
        """One of the process's posting slots, from the claim to the post; a job whose deadline
        passes first is told (DeliveryFailed), having claimed nothing, so a run of it after a
        crash draws and posts it again rather than saying it may not have arrived.

        A burst of pictures back from the providers at once would otherwise be posted by as
        many threads, all taking turns on the interpreter lock at every step of their HTTP
        calls: at 50 at once, that contention made the posting phase cost 2.3 ms of CPU per
        picture against 1.9 ms with eight at a time, every picture in the channel as soon.
        Slack's own rate limits (files.* about 100 a minute, a message a second per channel)
        are far below what a few slots post."""
        wait = max(0.0, job.deadline - time.time()) if job.deadline else None
        if not self._slots.acquire(timeout=wait):
            log.warning("no posting slot before the deadline request_id=%s", job.request_id)
            raise DeliveryFailed(NOT_POSTED.format(prompt=_short(job.request.prompt)))
        try:
            yield
        finally:
            self._slots.release()

    # -- one provider at a time ---------------------------------------------------------------
    def generate(self, job: GenerateJob, progress: JobProgress | None = None) -> str:
        previews = self._previews(job)
        token = current_previews.set(previews.show if previews else None)
        try:
            results = self._draw(job, progress)
        except JobCancelled:  # cancelled from its waiting note as drawing began
            if previews is not None:
                previews.withdraw()
                if previews.claimed:
                    self._finish(job, TOLD)
            raise
        except Exception:  # `run` tells the person; no preview stays up looking finished
            if previews is not None:
                previews.withdraw()
            raise
        finally:
            current_previews.reset(token)
        try:
            with self._posting_slot(job):
                return self._show(job, results, previews)
        except DeliveryFailed:  # no preview stays up looking finished
            if previews is not None:
                previews.withdraw()
            raise

    def _show(
        self, job: GenerateJob, results: list[ProviderResult], previews: PreviewPosts | None
    ) -> str:
        """Claim the job, then post each provider's pictures (or say why there are none)."""
        claimed = previews is not None and previews.claimed
        if not (claimed or self._claim(job)):
            return self._claimed_before(job)
        outcomes: list[str] = []
        shown_ts: str | None = None
        for result in results:
            if result.error is not None:
                if previews is not None:
                    previews.withdraw(result.provider)
                self._record(job, result, result.error.kind)
                self.publisher.tell_error(job, result.error)
                outcomes.append(result.error.kind)
                continue
            replace = previews.replacing(result.provider) if previews else None
            outcome, posted = self._post_pictures(job, result, replace)
            shown_ts = shown_ts or posted.ts
            outcomes.append(outcome)
        self._finish(job, POSTED if "ok" in outcomes else TOLD, shown_ts)
        return outcomes[0] if len(set(outcomes)) == 1 else ",".join(outcomes)

    def _previews(self, job: GenerateJob) -> PreviewPosts | None:
        """Previews for this job's pictures, when the front end can replace a post in place
        and there is a store to link them from (an upload cannot be replaced)."""
        if not getattr(self.publisher, "shows_previews", False) or self.service.store is None:
            return None
        providers = self.service.providers
        models = {name: providers[name].model for name in job.providers if name in providers}
        return PreviewPosts(
            job,
            self.publisher,
            claim=lambda: self._claim(job),
            put=lambda data, mime: self.service.put(data, mime),
            models=models,
        )

    def _draw(
        self, job: GenerateJob | CompareJob, progress: JobProgress | None
    ) -> list[ProviderResult]:
        try:
            results = self.service.generate(job.request, job.providers)
        except BaseException:
            self._settle(job, [])  # nothing drawn: the reserved pictures are released
            raise
        self._settle(job, results)
        if progress is not None:
            progress.wait_sent(timeout=5.0)  # "drawing now" before the outcome, not after
        for result in results:
            self._observe(job, result, "generation", images=len(result.images))
        if progress is not None and progress.waited and self._is_cancelled(job):
            raise JobCancelled()  # cancelled from its waiting note as drawing began
        return results

    def _post_pictures(
        self, job: Job, result: ProviderResult, replace: Posted | None = None
    ) -> tuple[str, Posted]:
        if replace is not None:
            posted = self.publisher.post_pictures(job, result, job.elapsed(), replace=replace)
        else:
            posted = self.publisher.post_pictures(job, result, job.elapsed())
        outcome = "not_in_channel" if posted.private else "ok"
        # 👍 / 👎 on the post then rate the model
        picture = kept_picture(result, posted)
        self._record(
            job,
            result,
            outcome,
            posted.ts,
            rated=not posted.private,
            upload=posted.file_id,
            picture=picture,
        )
        return outcome, posted

    # -- editing a picture -------------------------------------------------------------------
    def edit(self, job: EditJob) -> str:
        """Read the picture (from the front end when it keeps it, else the store), edit it,
        post the result in the thread; a picture that is gone, a model that cannot edit or a
        refusal is one sentence in the thread."""
        try:
            image = self.publisher.picture(job, job.picture)
            if image is None:
                image = self.service.picture(job.picture)
        except ImagineError as err:
            result = ProviderResult(provider=job.provider, error=err)
        else:
            result = self.service.edit(job.request.prompt, job.provider, image)
        self._observe(job, result, "edit", parent=job.parent_id)
        with self._posting_slot(job):
            return self._show_edit(job, result)

    def _show_edit(self, job: EditJob, result: ProviderResult) -> str:
        if not self._claim(job):
            return self._claimed_before(job)
        if result.error is not None:
            self._record(job, result, result.error.kind)
            self.publisher.tell_error(job, result.error)
            self._finish(job, TOLD)
            return result.error.kind
        outcome, posted = self._post_pictures(job, result)
        self._finish(job, POSTED if outcome == "ok" else TOLD, posted.ts)
        return outcome

    # -- side by side, blind -----------------------------------------------------------------
    def compare(self, job: CompareJob, progress: JobProgress | None = None) -> str:
        results = self._draw(job, progress)
        ready = [r for r in results if r.ok and r.images]
        failed = [r for r in results if r not in ready]
        for result in failed:
            self._record(job, result, result.error.kind if result.error else "no_images")
        with self._posting_slot(job):
            return self._show_comparison(job, ready, failed)

    def _show_comparison(
        self, job: CompareJob, ready: list[ProviderResult], failed: list[ProviderResult]
    ) -> str:
        """Claim the job, then put the pictures side by side and post them for the vote."""
        if not self._claim(job):
            return self._claimed_before(job)
        if len(ready) < 2:
            return self._incomplete(job, ready, failed)
        self.rng.shuffle(ready)  # blind: a new left/right order for every comparison
        positions = dict(zip(string.ascii_uppercase, ready, strict=False))
        try:
            composed = self._compose(positions)
        except ValueError as err:
            log.warning("compose failed request_id=%s: %s", job.request_id, err)
            self.publisher.tell(
                job, ":warning: The pictures were drawn but could not be put side by side."
            )
            self._finish(job, TOLD)
            return "compose_failed"
        post = ComparisonPost(
            prompt=job.request.prompt,
            pictures=[composed.picture.url] if composed.picture.url else [],
            originals={p: [i.url for i in r.images if i.url] for p, r in positions.items()},
            models={p: (r.provider, r.model or "") for p, r in positions.items()},
            requester=job.user_id,
            seconds=round(job.elapsed(), 1),
            reveal_after=self.voting.reveal_after_votes,
            options={
                k: v for k, v in asdict(job.request).items() if k not in ("prompt", "seed") and v
            },
        )
        posted = self.publisher.post_comparison(job, post, composed)
        if posted.private:
            self._finish(job, TOLD)
            return "not_in_channel"
        if posted.ts is None:  # shown, but nowhere people can vote on it
            for result in ready:
                self._record(job, result, "ok")
            if posted.mode == "file":
                self.publisher.tell(
                    job, "The comparison is posted, but Slack did not say where, so voting is off."
                )
            self._finish(job, POSTED)
            return "ok_unregistered" if posted.mode == "file" else "ok"
        registered = self._register(job, posted, post, composed, positions)
        self._finish(job, POSTED, posted.ts)
        for result in ready:
            self._record(job, result, "ok", posted.ts)
        if not registered:
            # the pictures are in the channel, so nothing failed for the person; but a vote
            # on a comparison the store does not know would be lost: no voting on this one
            self.publisher.close_voting(job, posted, post)
            return "ok_unregistered"
        self.publisher.open_voting(job, posted)
        return "ok"

    def _register(
        self,
        job: CompareJob,
        posted: Posted,
        post: ComparisonPost,
        composed: ComposedComparison,
        positions: dict[str, ProviderResult],
    ) -> bool:
        """Register the posted comparison (its votes count from now on); False when the vote
        store cannot be reached. Kept by reference: never a signed URL in the database."""
        assert posted.ts is not None
        originals = {p: r.images for p, r in positions.items()}
        try:
            self.store.register_comparison(
                job.channel_id,
                posted.ts,
                job.user_id,
                job.request.prompt,
                {p: {"provider": r.provider, "model": r.model or ""} for p, r in positions.items()},
                details={"mode": posted.mode, "post": kept_post(post, composed.picture, originals)},
            )
        except Exception:
            log.exception("could not register the comparison request_id=%s", job.request_id)
            return False
        return True

    def _incomplete(
        self, job: CompareJob, ready: list[ProviderResult], failed: list[ProviderResult]
    ) -> str:
        errors = [r.error for r in failed if r.error]
        if not ready:
            if errors:
                for error in errors:
                    self.publisher.tell_error(job, error)
            else:
                self.publisher.tell(job, ":warning: No pictures came back.")
            self._finish(job, TOLD)
            return errors[0].kind if errors else "no_images"
        survivor = ready[0]
        survivor.notes.append(partial_compare_note(errors))
        outcome, posted = self._post_pictures(job, survivor)
        self._finish(job, POSTED if outcome == "ok" else TOLD, posted.ts)
        return outcome

    def _compose(self, positions: dict[str, ProviderResult]) -> ComposedComparison:
        """One picture (pairs as rows of a grid), stored when there is a store; the originals
        keep their bytes when there is nothing to link to, so they can be uploaded."""
        labels = list(positions)
        columns = [[self.service.image_bytes(i) for i in r.images] for r in positions.values()]
        if all(len(column) == 1 for column in columns):
            data, mime = side_by_side([column[0] for column in columns], labels)
        else:
            data, mime = compose_grid(columns, labels)
        picture = self.service.put(data, mime)  # no URL: uploaded (no store, or it failed)
        url = picture.url
        originals = {
            position: [
                image
                if url or image.data is not None
                else StoredImage(image.url, image.mime_type, column[i])
                for i, image in enumerate(result.images)
            ]
            for (position, result), column in zip(positions.items(), columns, strict=True)
        }
        return ComposedComparison(picture, originals)

    # -- governance: limits before drawing, cost after, usage ---------------------------------
    def _admit(self, job: GenerateJob | CompareJob) -> LimitRefusal | None:
        if self.governance is None:
            return None
        return self.governance.admit(job, self.service)

    def _refuse(self, job: GenerateJob | CompareJob, refusal: LimitRefusal) -> str:
        if not self._claim(job):
            return self._claimed_before(job)
        self.publisher.refuse(job, refusal)
        self._finish(job, TOLD)
        return f"refused_{refusal.reason}"

    def _settle(self, job: GenerateJob | CompareJob, results: list[ProviderResult]) -> None:
        """What the job drew and cost, against its reservation; budget alerts to the admins."""
        if self.governance is None:
            return
        for alert in self.governance.settle(job, results):
            self.publisher.alert_admins(self.governance.admins, alert)

    def show_usage(self, job: UsageJob) -> str:
        if self.governance is None:
            self.publisher.tell(job, "Usage is not recorded here.")
            return "error"
        try:
            report = self.governance.usage(job.user_id)
        except Exception:
            log.exception("usage failed request_id=%s", job.request_id)
            self.publisher.tell(job, ":warning: Usage could not be read; please try again.")
            return "error"
        self.publisher.show_usage(job, report)
        return "ok"

    # -- the leaderboard -----------------------------------------------------------------------
    def show_leaderboard(self, job: LeaderboardJob) -> str:
        since = None
        if job.since_seconds:
            since = datetime.now(UTC) - timedelta(seconds=job.since_seconds)
        try:
            result = self.leaderboard.compute(
                since=since,
                channel_id=job.channel_id if job.here else None,
                blind_only=job.blind_only,
                min_votes=self.voting.leaderboard_min_votes,
            )
            chart, chart_url = None, None
            store = self.service.store
            if result.rows and (store is not None or job.post):
                chart = ratings_chart(
                    result.rows, title=f"Leaderboard · {describe(job) or 'all votes'}"
                )
                if store is not None:
                    chart_url = self.service.put(chart, "image/png").url
        except Exception:
            log.exception("leaderboard failed request_id=%s", job.request_id)
            self.publisher.tell(
                job, ":warning: The leaderboard could not be computed; please try again."
            )
            return "error"
        self.publisher.show_leaderboard(job, result, chart, chart_url)
        return "ok"

    # -- history and the delivery ledger -----------------------------------------------------
    def _record(
        self,
        job: Job,
        result: ProviderResult,
        outcome: str,
        ts: str | None = None,
        *,
        rated: bool = False,
        upload: str | None = None,
        picture: str | None = None,
    ) -> None:
        """Keep the history (who, what, which model, how long, and for a posted picture where
        it is and what it edits); never fail the post for it."""
        request = getattr(job, "request", None)
        if request is None:
            return
        try:
            options = {k: v for k, v in asdict(request).items() if k != "prompt" and v}
            edit = job if isinstance(job, EditJob) else None
            entry = history_entry(
                user_id=job.user_id,
                channel_id=job.channel_id,
                prompt=request.prompt,
                provider=result.provider,
                model=result.model or "",
                options=options,
                timings=result.timings,
                outcome=outcome,
                # the store's object name (App Home signs a fresh link from it), else the URL
                # without its query string: a signed URL's signature is a secret
                image_urls=[i.ref or i.url.split("?")[0] for i in result.images if i.url],
                request_id=job.request_id,
                message_ts=ts,
                rated=rated,
                upload_file_id=upload,
                team_id=job.team_id,
                cost_usd=result.cost_usd,
                revised_prompt=result.revised_prompt,
                image_refs=[i.ref or object_ref(i.url) for i in result.images if i.ref or i.url],
                pictures=len(result.images),
                picture=picture,
                thread_ts=job.thread_ts,
                parent_id=edit.parent_id if edit else None,
                parent_picture=edit.picture if edit else None,
            )
        except Exception:
            log.exception("could not record the generation request_id=%s", job.request_id)
            return
        self.history.add(entry)

    def _delivery_state(self, job: Job) -> str | None:
        if not self.ledger:
            return None
        try:
            return self.store.delivery_state(job.key)
        except Exception:
            log.exception("could not read the delivery ledger request_id=%s", job.request_id)
            return None

    def _claim(self, job: Job) -> bool:
        """Record, before showing anything, that this run shows the outcome. A second run of
        the same job (a queue redelivery) that finds the claim shows nothing."""
        if not self.ledger:
            return True
        try:
            return self.store.claim_delivery(job.key, job.channel_id)
        except Exception:  # no ledger: posting beats losing a picture that was paid for
            log.exception("could not claim the delivery request_id=%s", job.request_id)
            return True

    def _finish(self, job: Job, state: str, ts: str | None = None) -> None:
        """The claimed job's outcome, written with the history (milliseconds later): only the
        claim must be in the database before the post."""
        if self.ledger:
            self.history.add(DeliveryOutcome(job.key, state, ts))


def kept_picture(result: ProviderResult, posted: Posted) -> str | None:
    """Where a posted picture's bytes can be read again (to edit it): its store reference,
    its link without the query (a signature is a secret), or the front end's upload."""
    if posted.private or not result.images:
        return None
    if posted.mode == "file":
        return UPLOAD + posted.file_id if posted.file_id else None
    first = result.images[0]
    return first.ref or (first.url.split("?")[0] if first.url else None)


def partial_compare_note(failed: list[ImagineError]) -> str:
    reasons = " ".join(f"{e.provider + ': ' if e.provider else ''}{e.message}" for e in failed)
    return f"The comparison is incomplete, so there is no vote. {reasons}".strip()


def describe(job: LeaderboardJob) -> str:
    """The leaderboard's filters in words ("blind votes only, last 30 days")."""
    parts = []
    if job.blind_only:
        parts.append("blind votes only")
    if job.since_seconds:
        days, hours = divmod(job.since_seconds // 3600, 24)
        parts.append(f"last {days} days" if not hours else f"last {job.since_seconds // 3600} h")
    if job.here:
        parts.append("this channel")
    return ", ".join(parts)


def _short(prompt: str, limit: int = 80) -> str:
    return prompt if len(prompt) <= limit else prompt[: limit - 1].rstrip() + "…"
