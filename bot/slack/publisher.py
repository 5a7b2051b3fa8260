"""The core's `Publisher` for Slack: pictures and comparisons in the channel, sentences and the
progress note to the requester (through the command's response_url), voting reactions.

Built once per process from a bot token, so a worker on the queue posts exactly as the process
that acknowledged the command would have.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.config import VotingConfig
from bot.core.governance import BudgetAlert, LimitRefusal, UsageReport
from bot.core.jobs import CompareJob, EditJob, GenerateJob, Job, LeaderboardJob
from bot.core.ports import (
    UPLOAD,
    ComparisonPost,
    ComposedComparison,
    DeliveryFailed,
    Posted,
    Waiting,
)
from bot.core.workflows import describe
from bot.generation.types import ImageRequest, ImagineError, ProviderResult, StoredImage
from bot.slack import messages
from bot.slack.buttons import PictureRef, buttons_message, picture_buttons
from bot.slack.delivery import Delivery, NotInChannelError, Upload, once_tag
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


def post_tag(job: Job, *parts: str) -> str:
    """The tag that makes one of a job's posts appear once (`Delivery.post_message`)."""
    return once_tag(job.key, *parts)


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
    shows_previews = True  # a message with image blocks can be replaced in place

    def __init__(
        self,
        client: WebClient,
        voting: VotingConfig,
        provider_labels: dict[str, str] | None = None,
        providers: list[str] | None = None,
    ) -> None:
        """`providers`: the configured ones, which a picture's "Try with" buttons offer."""
        self.client = client
        self.voting = voting
        self.labels = provider_labels or {}
        self.providers = list(providers or [])
        self.delivery = Delivery(client)
        self._webhook_retries = client.retry_handlers  # the same: 5xx and 429 retried

    # -- to the requester ------------------------------------------------------------------
    @_retried_with_grace
    def _respond(
        self, job: Job, *, replace: bool = False, whisper: bool = False, **message: Any
    ) -> None:
        """Privately to the requester: through the response_url when the job has one (it
        works in channels the bot is not in), else as an ephemeral message; an edit's
        sentence goes in its thread, where the person asked (`whisper`: only they see it), as
        a tagged post (each sentence of the job once)."""
        try:
            if isinstance(job, EditJob):
                if whisper:
                    self.client.chat_postEphemeral(
                        channel=job.channel_id, user=job.user_id, thread_ts=job.thread_ts, **message
                    )
                elif not replace:
                    said = post_tag(job, "said", json.dumps(message, sort_keys=True))
                    self.delivery.post_message(
                        job.channel_id, message, once=said, thread_ts=job.thread_ts
                    )
            elif job.response_url:
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
        if isinstance(job, EditJob):
            # a reply has no private note to replace: the first wait is told once, privately
            # in the thread (with Cancel); the edit follows there when it is drawn
            if waiting is not None and not waiting.update:
                ahead = {self.labels.get(p, p): n for p, n in waiting.ahead.items()}
                self._respond(job, whisper=True, **messages.waiting_note(prompt, ahead, job.key))
            return
        if waiting is None:
            self._respond(job, replace=True, **messages.drawing_note(prompt))
            return
        ahead = {self.labels.get(p, p): n for p, n in waiting.ahead.items()}
        self._respond(job, replace=True, **messages.waiting_note(prompt, ahead, job.key))

    # -- in the channel --------------------------------------------------------------------
    @_retried_until_deadline
    def post_pictures(
        self,
        job: GenerateJob | EditJob,
        result: ProviderResult,
        seconds: float,
        replace: Posted | None = None,
    ) -> Posted:
        """One provider's pictures: image blocks when they have URLs, else uploaded files; an
        edit's in the thread it was asked in. `replace`: the preview message, updated in place
        into the finished picture. A new picture carries its buttons (an edit's thread is for
        words)."""
        request = job.request
        why = getattr(job, "why", None)  # a comparison's survivor has none
        linked = all(image.url for image in result.images)
        thread = {"thread_ts": job.thread_ts} if job.thread_ts else {}
        ref = PictureRef(requester=job.user_id, request=request, provider=result.provider)
        with_buttons = isinstance(job, GenerateJob)
        try:
            if linked:
                buttons = picture_buttons(ref, self.providers) if with_buttons else None
                message = messages.result_message(
                    result, request, job.user_id, seconds, buttons, why
                )
                if replace is not None and replace.ts and self._update(job, replace.ts, message):
                    return Posted(replace.ts)
                once = post_tag(job, result.provider)
                return Posted(
                    self.delivery.post_message(job.channel_id, message, once=once, **thread)
                )
            comment = messages.upload_comment(result, request, job.user_id, seconds, why)

            def blocks(file_ids: list[str]) -> list[dict[str, Any]]:
                named = dataclasses.replace(ref, file_ids=tuple(file_ids))
                buttons = picture_buttons(named, self.providers)
                return messages.result_message(result, request, job.user_id, seconds, buttons, why)[
                    "blocks"
                ]

            uploaded = self.delivery.upload_files(
                job.channel_id,
                uploads(result, request),
                comment,
                job.thread_ts,
                blocks if with_buttons else None,
            )
            if replace is not None:  # the picture is an upload, which cannot replace it
                self.withdraw_preview(job, replace)
            if with_buttons and not uploaded.with_blocks:
                named = dataclasses.replace(ref, file_ids=tuple(uploaded.file_ids))
                self._upload_buttons(job, named)
            # which message the upload became is asked only when someone rates it
            return Posted(mode="file", file_id=next(iter(uploaded.file_ids), None))
        except NotInChannelError:
            if linked:
                message = messages.result_message(result, request, job.user_id, seconds, why=why)
                message["blocks"].append(messages.context_block(messages.NOT_IN_CHANNEL))
                self._respond(job, **message)
            else:
                self.tell(job, f":warning: {messages.NOT_IN_CHANNEL}")
            return Posted(private=True)

    def _update(self, job: Job, ts: str, message: dict[str, Any]) -> bool:
        """chat.update of our own message; False when it is gone (someone deleted the preview,
        or the bot was removed from the channel): the caller posts anew."""
        try:
            self.client.chat_update(channel=job.channel_id, ts=ts, **message)
        except SlackApiError as err:
            if err.response.status_code == 429 or err.response.status_code >= 500:
                raise
            log.warning(
                "chat.update failed (%s) request_id=%s", err.response.get("error"), job.request_id
            )
            return False
        return True

    def preview(
        self,
        job: GenerateJob,
        provider: str,
        model: str,
        image: StoredImage,
        index: int,
        replace: Posted | None,
    ) -> Posted:
        """A preview in the channel, or in place of the previous one. Not retried until the
        deadline: a preview Slack will not take is skipped, the picture still comes."""
        assert image.url is not None
        message = messages.preview_message(
            job.request, provider, model, image.url, index, job.user_id
        )
        if replace is not None and replace.ts and self._update(job, replace.ts, message):
            return replace
        once = post_tag(job, provider, f"preview {index}")
        try:
            return Posted(self.delivery.post_message(job.channel_id, message, once=once))
        except NotInChannelError:
            return Posted(private=True)  # the finished picture is shown privately instead

    def withdraw_preview(self, job: GenerateJob, posted: Posted) -> None:
        """Delete the preview; if Slack will not, say in it that the picture is not coming."""
        if not posted.ts:
            return
        try:
            self.client.chat_delete(channel=job.channel_id, ts=posted.ts)
            return
        except Exception as err:
            log.warning("could not delete a preview request_id=%s: %s", job.request_id, err)
        try:
            self.client.chat_update(
                channel=job.channel_id,
                ts=posted.ts,
                **messages.message(messages.PREVIEW_WITHDRAWN, []),
            )
        except Exception:
            log.exception("could not withdraw a preview request_id=%s", job.request_id)

    def _upload_buttons(self, job: GenerateJob, ref: PictureRef) -> None:
        """An upload's buttons when Slack refused them in the upload's own message: a small
        message of their own right under it. Best effort: the picture is posted either way."""
        try:
            self.delivery.post_message(
                job.channel_id, buttons_message(ref, self.providers), once=post_tag(job, "buttons")
            )
        except Exception as err:
            log.warning(
                "could not post the picture's buttons request_id=%s: %s",
                job.request_id,
                type(err).__name__,
            )

    def picture(self, job: Job, ref: str) -> bytes | None:
        """An upload's bytes (ours, or a person's), read with the bot token."""
        if not ref.startswith(UPLOAD):
            return None
        return self.delivery.download(ref.removeprefix(UPLOAD))

    @_retried_until_deadline
    def post_comparison(
        self, job: CompareJob, post: ComparisonPost, composed: ComposedComparison
    ) -> Posted:
        view = ComparisonView.of(post, self._emoji())
        try:
            if composed.picture.url:
                message = messages.compare_message(view)
                ts = self.delivery.post_message(job.channel_id, message, once=post_tag(job))
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
                self.delivery.post_message(
                    job.channel_id,
                    {"text": messages.unvotable_text(view.models)},
                    once=post_tag(job, "voting off"),
                    thread_ts=posted.ts,
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
                self.delivery.post_message(job.channel_id, message, once=post_tag(job))
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

    # -- governance ------------------------------------------------------------------------
    def refuse(self, job: Job, refusal: LimitRefusal) -> None:
        self._respond(job, **messages.limit_refusal(refusal))

    def show_usage(self, job: Job, report: UsageReport) -> None:
        self._respond(job, **messages.usage_message(report))

    def alert_admins(self, admins: frozenset[str], alert: BudgetAlert) -> None:
        """A direct message to each admin: conversations.open (the `im:write` scope) gives the
        app's DM with the person, where the message is posted, once: each alert (a month's
        80 % or 100 %) is a tagged post."""
        once = once_tag("budget alert", alert.month, str(alert.percent))
        for admin in sorted(admins):
            try:
                opened = self.client.conversations_open(users=admin)
                channel = opened["channel"]["id"]
                self.delivery.post_message(channel, messages.budget_alert(alert), once=once)
            except Exception as err:  # one admin unreachable must not stop the others
                log.warning("could not alert admin %s: %s", admin, type(err).__name__)


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
