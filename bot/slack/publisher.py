"""The core's `Publisher` for Slack: pictures and comparisons in the channel, sentences and the
progress note to the requester (through the command's response_url), voting reactions.

Built once per process from a bot token, so a worker on the queue posts exactly as the process
that acknowledged the command would have.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from bot.config import VotingConfig
from bot.core.jobs import CompareJob, GenerateJob, Job, LeaderboardJob
from bot.core.ports import ComparisonPost, ComposedComparison, Posted, Waiting
from bot.core.workflows import describe
from bot.generation.types import ImageRequest, ImagineError, ProviderResult
from bot.slack import messages
from bot.slack.delivery import Delivery, NotInChannelError, Upload
from bot.slack.messages import ComparisonView
from bot.votes.leaderboard import LeaderboardResult

log = logging.getLogger("imagine.slack")


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
        self._webhook_retries = [RateLimitErrorRetryHandler(max_retry_count=2)]

    # -- to the requester ------------------------------------------------------------------
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
        self._respond(job, text=text)

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
    def post_pictures(self, job: GenerateJob, result: ProviderResult, seconds: float) -> Posted:
        """One provider's pictures: image blocks when they have URLs, else uploaded files."""
        request = job.request
        linked = all(image.url for image in result.images)
        try:
            if linked:
                message = messages.result_message(result, request, job.user_id, seconds)
                return Posted(self.delivery.post_message(job.channel_id, message))
            comment = messages.upload_comment(result, request, job.user_id, seconds)
            files = uploads(result, request)
            file_ids = self.delivery.upload_files(job.channel_id, files, comment)
            # which message the upload became is asked only when someone rates it
            return Posted(mode="file", file_id=next(iter(file_ids), None))
        except NotInChannelError:
            if linked:
                message = messages.result_message(result, request, job.user_id, seconds)
                message["blocks"].append(messages.context_block(messages.NOT_IN_CHANNEL))
                self._respond(job, **message)
            else:
                self.tell(job, f":warning: {messages.NOT_IN_CHANNEL}")
            return Posted(private=True)

    def post_comparison(
        self, job: CompareJob, post: ComparisonPost, composed: ComposedComparison
    ) -> Posted:
        view = ComparisonView.of(post, self._emoji())
        try:
            if composed.picture.url:
                message = messages.compare_message(view)
                return Posted(self.delivery.post_message(job.channel_id, message))
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
                table = message["blocks"][1]["text"]["text"]
                upload = Upload(chart, "image/png", "Imagine leaderboard", "Ratings chart")
                self.delivery.upload(job.channel_id, [upload], f"*{message['text']}*\n{table}")
        except NotInChannelError:
            message["blocks"].append(messages.context_block(messages.NOT_IN_CHANNEL))
            self._respond(job, **message)

    def _emoji(self) -> dict[str, str]:
        return {choice: name for name, choice in self.voting.choices.items()}


def uploads(result: ProviderResult, request: ImageRequest) -> list[Upload]:
    title = messages.truncate(request.prompt, 200)
    alt = messages.truncate(request.prompt, messages.ALT_TEXT_LIMIT)
    return [Upload(i.data or b"", i.mime_type, title, alt) for i in result.images]


def _prompt(job: Job) -> str:
    request = getattr(job, "request", None)
    return request.prompt if request is not None else ""
