"""The core's `Publisher` for Slack: pictures and comparisons in the channel, sentences and the
progress note to the requester (through the command's response_url), voting reactions.

Built once per process from a bot token, so a worker on the queue posts exactly as the process
that acknowledged the command would have.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.config import VotingConfig
from bot.core.jobs import CompareJob, GenerateJob, Job, LeaderboardJob
from bot.core.ports import ComparisonPost, ComposedComparison, DeliveryFailed, Posted, Waiting
from bot.core.workflows import describe
from bot.generation.types import ImageRequest, ImagineError, ProviderResult
from bot.slack import messages
from bot.slack.delivery import Delivery, NotInChannelError, Upload
from bot.slack.messages import ComparisonView
from bot.slack.retry import within
from bot.votes.leaderboard import LeaderboardResult

log = logging.getLogger("imagine.slack")

TELL_GRACE = 30.0  # seconds a sentence to the requester may be retried past the deadline
NO_VOTES_HERE = (
    "The comparison is posted, but I couldn't join this channel, so I won't see the votes: "
    "invite me with `/invite @Imagine` and compare again."
)
UNDELIVERED = (
    ":warning: {what} was ready, but Slack kept failing or refusing to take it until the "
    "deadline, so it could not be posted; please try again."
)


def _retried_until_deadline(method):
    """Slack calls that show a job's outcome are retried until the job's deadline; Slack still
    failing then (a 5xx, 429s, unreachable) raises DeliveryFailed: the picture was drawn, and
    the person is told in one sentence that it could not be posted."""

    @functools.wraps(method)
    def retried(self, job: Job, *args: Any, **kwargs: Any):
        with within(job.deadline):
            try:
                return method(self, job, *args, **kwargs)
            except SlackApiError as err:
                status = err.response.status_code
                if status != 429 and status < 500:
                    raise
                log.warning("Slack answered %s request_id=%s", status, job.request_id)
                raise DeliveryFailed(_undelivered(job)) from None
            except OSError as err:  # urllib's errors: unreachable, or the upload URL failing
                log.warning("Slack failed (%s) request_id=%s", type(err).__name__, job.request_id)
                raise DeliveryFailed(_undelivered(job)) from None

    return retried


def _retried_with_grace(method):
    """Slack calls that finish a job already shown (a sentence to the requester, the voting
    reactions) are retried until the job's deadline and `TELL_GRACE` past it: the sentence
    that the deadline passed must arrive too."""

    @functools.wraps(method)
    def retried(self, job: Job, *args: Any, **kwargs: Any):
        with within(max(job.deadline, time.time() + TELL_GRACE)):
            return method(self, job, *args, **kwargs)

    return retried


class SlackPublisher:
    def __init__(
        self,
        client: WebClient,
        voting: VotingConfig,
        provider_labels: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.voting = voting
        self.labels = provider_labels or {}
        self.delivery = Delivery(client)
        self._webhook_retries = client.retry_handlers  # the same: 5xx and 429 retried

    # -- to the requester ------------------------------------------------------------------
    @_retried_with_grace
    def _respond(self, job: Job, *, replace: bool = False, **message: Any) -> None:
        """Privately to the requester: through the response_url when the job has one (it
        works in channels the bot is not in), else as an ephemeral message."""
        try:
            if job.response_url:
                response = WebhookClient(
                    job.response_url, timeout=15, retry_handlers=self._webhook_retries
                ).send(response_type="ephemeral", replace_original=replace, **message)
                if response.status_code >= 300:
                    log.warning(
                        "response_url answered %s request_id=%s",
                        response.status_code,
                        job.request_id,
                    )
            else:
                self.client.chat_postEphemeral(channel=job.channel_id, user=job.user_id, **message)
        except Exception:
            log.exception("could not reach the requester request_id=%s", job.request_id)

    def tell(self, job: Job, text: str) -> None:
        self._respond(job, **messages.sentence(text))

    def tell_error(self, job: Job, error: ImagineError) -> None:
        self._respond(job, text=messages.error_text(error))

    def progress(self, job: Job, waiting: Waiting | None) -> None:
        prompt = _prompt(job)
        if waiting is None:
            self._respond(job, replace=True, **messages.drawing_note(prompt))
            return
        ahead = {self.labels.get(p, p): n for p, n in waiting.ahead.items()}
        self._respond(job, replace=True, **messages.waiting_note(prompt, ahead, job.key))

    # -- in the channel --------------------------------------------------------------------
    @_retried_until_deadline
    def post_pictures(self, job: GenerateJob, result: ProviderResult, seconds: float) -> Posted:
        """One provider's pictures: image blocks when they have URLs, else uploaded files."""
        request = job.request
        why = getattr(job, "why", None)  # a comparison's survivor has none
        linked = all(image.url for image in result.images)
        try:
            if linked:
                message = messages.result_message(result, request, job.user_id, seconds, why)
                return Posted(self.delivery.post_message(job.channel_id, message))
            comment = messages.upload_comment(result, request, job.user_id, seconds, why)
            files = uploads(result, request)
            file_ids = self.delivery.upload_files(job.channel_id, files, comment)
            # which message the upload became is asked only when someone rates it
            return Posted(mode="file", file_id=next(iter(file_ids), None))
        except NotInChannelError:
            if linked:
                message = messages.result_message(result, request, job.user_id, seconds, why)
                message["blocks"].append(messages.context_block(messages.NOT_IN_CHANNEL))
                self._respond(job, **message)
            else:
                self.tell(job, f":warning: {messages.NOT_IN_CHANNEL}")
            return Posted(private=True)

    @_retried_until_deadline
    def post_comparison(
        self, job: CompareJob, post: ComparisonPost, composed: ComposedComparison
    ) -> Posted:
        view = ComparisonView.of(post, self._emoji())
        try:
            if composed.picture.url:
                message = messages.compare_message(view)
                ts = self.delivery.post_message(job.channel_id, message)
                if self.delivery.membership.ensure(job.channel_id) is False:
                    self.tell(job, f":warning: {NO_VOTES_HERE}")  # posted, but unheard
                return Posted(ts)
            picture = composed.picture
            side_by_side = "A and B side by side"
            files = [Upload(picture.data or b"", picture.mime_type, side_by_side, post.prompt)]
            for position, images in composed.originals.items():
                files += [
                    Upload(i.data or b"", i.mime_type, f"{position}, full size", "") for i in images
                ]
            comment = messages.compare_comment(view)
            return Posted(self.delivery.upload(job.channel_id, files, comment), mode="file")
        except NotInChannelError:
            self.tell(job, f":warning: {messages.NOT_IN_CHANNEL}")
            return Posted(private=True)

    @_retried_with_grace
    def open_voting(self, job: CompareJob, posted: Posted) -> None:
        """The bot's own voting reactions (one click to vote); for an upload, which cannot be
        edited, the requester's private Reveal button."""
        assert posted.ts is not None
        for name in self.voting.choices:
            try:
                self.client.reactions_add(channel=job.channel_id, timestamp=posted.ts, name=name)
            except SlackApiError as err:
                if err.response.get("error") != "already_reacted":
                    log.warning("reactions.add %s failed: %s", name, err.response.get("error"))
        if posted.mode == "file":
            self._respond(job, **messages.reveal_prompt(job.channel_id, posted.ts))

    def close_voting(self, job: CompareJob, posted: Posted, post: ComparisonPost) -> None:
        """The comparison redrawn without voting and with the models named; an upload, which
        cannot be edited, gets that as a reply in its thread."""
        assert posted.ts is not None
        view = ComparisonView.of(post, self._emoji())
        try:
            if posted.mode == "blocks":
                message = messages.compare_message(view, votable=False)
                self.client.chat_update(channel=job.channel_id, ts=posted.ts, **message)
            else:
                self.client.chat_postMessage(
                    channel=job.channel_id,
                    thread_ts=posted.ts,
                    text=messages.unvotable_text(view.models),
                )
        except Exception:
            log.exception("could not turn voting off request_id=%s", job.request_id)

    @_retried_until_deadline
    def show_leaderboard(
        self,
        job: LeaderboardJob,
        result: LeaderboardResult,
        chart: bytes | None,
        chart_url: str | None,
    ) -> None:
        min_votes = self.voting.leaderboard_min_votes
        message = messages.leaderboard_message(result, chart_url, min_votes, describe(job))
        if not job.post:
            self._respond(job, **message)
            return
        try:
            if chart_url or not result.rows or chart is None:
                self.delivery.post_message(job.channel_id, message)
            else:
                upload = Upload(chart, "image/png", "Imagine leaderboard", "Ratings chart")
                self.delivery.upload(
                    job.channel_id, [upload], messages.leaderboard_comment(message)
                )
        except NotInChannelError:
            message["blocks"].append(messages.context_block(messages.NOT_IN_CHANNEL))
            self._respond(job, **message)

    def _emoji(self) -> dict[str, str]:
        return {choice: name for name, choice in self.voting.choices.items()}


def uploads(result: ProviderResult, request: ImageRequest) -> list[Upload]:
    title = messages.upload_title(request.prompt)
    alt = messages.upload_alt_text(request.prompt)
    return [Upload(i.data or b"", i.mime_type, title, alt) for i in result.images]


def _prompt(job: Job) -> str:
    request = getattr(job, "request", None)
    return request.prompt if request is not None else ""


def _undelivered(job: Job) -> str:
    """Plain text: `tell` escapes it."""
    prompt = _prompt(job)
    short = prompt if len(prompt) <= 80 else prompt[:79].rstrip() + "…"
    what = f"Your picture of “{short}”" if prompt else "The leaderboard"
    return UNDELIVERED.format(what=what)
