"""One provider's pictures into the channel, and the history of every generation."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

from slack_bolt import Respond
from slack_sdk import WebClient

from bot.generation.types import ImageRequest, ProviderResult
from bot.slack import messages
from bot.slack.delivery import Delivery, NotInChannelError, Upload
from bot.votes.db import VoteStore

log = logging.getLogger("imagine.slack")


@dataclass(frozen=True)
class Job:
    """One accepted command, carried from the ack to the job runner."""

    request_id: str
    user_id: str
    channel_id: str
    providers: tuple[str, ...]
    request: ImageRequest
    respond: Respond
    received: float

    def tell(self, text: str) -> None:
        """One ephemeral sentence to the requester (response_url works in any channel)."""
        try:
            self.respond(text=text, response_type="ephemeral", replace_original=False)
        except Exception:
            log.exception("could not reach the requester request_id=%s", self.request_id)

    def elapsed(self) -> float:
        return time.monotonic() - self.received


class Publisher:
    """Posts single-provider results and records every generation in the vote store."""

    def __init__(self, votes: VoteStore) -> None:
        self.votes = votes

    def post_single(self, job: Job, result: ProviderResult, client: WebClient) -> str:
        """Post one provider's pictures; 👍 / 👎 on the post then rate the model."""
        delivery = Delivery(client)
        seconds = job.elapsed()
        try:
            if all(image.url for image in result.images):
                message = messages.result_message(result, job.request, job.user_id, seconds)
                ts: str | None = delivery.post_message(job.channel_id, message)
            else:
                comment = messages.upload_comment(result, job.request, job.user_id, seconds)
                ts = delivery.upload(job.channel_id, uploads(result, job.request), comment)
        except NotInChannelError:
            self.record(job, result, "not_in_channel")
            if all(image.url for image in result.images):
                message = messages.result_message(result, job.request, job.user_id, seconds)
                message["blocks"].append(messages.context_block(messages.NOT_IN_CHANNEL))
                job.respond(**message, response_type="ephemeral", replace_original=False)
            else:
                job.tell(f":warning: {messages.NOT_IN_CHANNEL}")
            return "not_in_channel"
        self.record(job, result, "ok", ts)
        if ts:
            self.votes.register_rated_post(
                job.channel_id, ts, result.provider, result.model or "", job.user_id
            )
        return "ok"

    def record(self, job: Job, result: ProviderResult, outcome: str, ts: str | None = None) -> None:
        """Keep the history (who, what, which model, how long); never fail the post for it."""
        try:
            options = {k: v for k, v in asdict(job.request).items() if k != "prompt" and v}
            self.votes.record_generation(
                user_id=job.user_id,
                channel_id=job.channel_id,
                prompt=job.request.prompt,
                provider=result.provider,
                model=result.model or "",
                options=options,
                timings=result.timings,
                outcome=outcome,
                # without the query string: a signed URL's signature is a secret
                image_urls=[i.url.split("?")[0] for i in result.images if i.url],
                request_id=job.request_id,
                message_ts=ts,
            )
        except Exception:
            log.exception("could not record the generation request_id=%s", job.request_id)


def uploads(result: ProviderResult, request: ImageRequest) -> list[Upload]:
    title = messages.truncate(request.prompt, 200)
    alt = messages.truncate(request.prompt, messages.ALT_TEXT_LIMIT)
    return [Upload(i.data or b"", i.mime_type, title, alt) for i in result.images]
