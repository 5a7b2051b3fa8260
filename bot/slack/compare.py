"""`/imagine compare`: every configured provider on one prompt, side by side and blind.

The order of the pictures is drawn at random for each comparison and the model names stay
hidden, so a vote is about the picture. The bot adds the voting reactions itself (one click
to vote) and registers the message so reactions on it become votes.
"""

from __future__ import annotations

import logging
import random
import string
from dataclasses import asdict

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.config import VotingConfig
from bot.generation.compose import compose_grid, side_by_side
from bot.generation.service import GenerationService
from bot.generation.types import ProviderResult
from bot.slack import messages
from bot.slack.delivery import Delivery, NotInChannelError, Upload
from bot.slack.messages import ComparisonView
from bot.slack.publish import Job, Publisher
from bot.votes.db import VoteStore

log = logging.getLogger("imagine.slack")


class CompareRunner:
    """Runs a comparison job and returns its outcome for the log."""

    def __init__(
        self,
        service: GenerationService,
        votes: VoteStore,
        voting: VotingConfig,
        publisher: Publisher,
        rng: random.Random | None = None,
    ) -> None:
        self.service = service
        self.votes = votes
        self.voting = voting
        self.post_single = publisher.post_single
        self.record = publisher.record
        self.rng = rng or random.SystemRandom()

    def __call__(self, job: Job, client: WebClient) -> str:
        results = self.service.generate(job.request, job.providers)
        ready = [r for r in results if r.ok and r.images]
        failed = [r for r in results if r not in ready]
        for result in failed:
            self.record(job, result, result.error.kind if result.error else "no_images")
        if len(ready) < 2:
            return self._incomplete(job, ready, failed, client)
        self.rng.shuffle(ready)  # blind: a new left/right order for every comparison
        positions = dict(zip(string.ascii_uppercase, ready, strict=False))
        try:
            picture = self._compose(positions)
        except ValueError as err:
            log.warning("compose failed request_id=%s: %s", job.request_id, err)
            job.tell(":warning: The pictures were drawn but could not be put side by side.")
            return "compose_failed"
        view = self._view(job, positions, picture[2])
        try:
            ts, mode = self._post(view, job, positions, picture, client)
        except NotInChannelError:
            job.tell(f":warning: {messages.NOT_IN_CHANNEL}")
            return "not_in_channel"
        if ts is None:
            for result in ready:
                self.record(job, result, "ok")
            job.tell("The comparison is posted, but Slack did not say where, so voting is off.")
            return "ok_unregistered"
        self.votes.register_comparison(  # before anyone can react to it
            job.channel_id,
            ts,
            job.user_id,
            job.request.prompt,
            {p: {"provider": r.provider, "model": r.model or ""} for p, r in positions.items()},
            details={"mode": mode, "view": asdict(view)},
        )
        for result in ready:
            self.record(job, result, "ok", ts)
        self._add_voting_reactions(client, job.channel_id, ts)
        if mode == "file":
            job.respond(
                **messages.reveal_prompt(job.channel_id, ts),
                response_type="ephemeral",
                replace_original=False,
            )
        return "ok"

    def _incomplete(
        self, job: Job, ready: list[ProviderResult], failed: list[ProviderResult], client
    ) -> str:
        errors = [r.error for r in failed if r.error]
        if not ready:
            job.tell(" ".join(messages.error_text(e) for e in errors) or "No pictures came back.")
            return errors[0].kind if errors else "no_images"
        survivor = ready[0]
        survivor.notes.append(messages.partial_compare_text(errors))
        return self.post_single(job, survivor, client)

    def _compose(self, positions: dict[str, ProviderResult]) -> tuple[bytes, str, str | None]:
        """(data, mime type, stored URL or None): one picture, pairs as rows of a grid."""
        labels = list(positions)
        columns = [[self.service.image_bytes(i) for i in r.images] for r in positions.values()]
        if all(len(column) == 1 for column in columns):
            data, mime = side_by_side([column[0] for column in columns], labels)
        else:
            data, mime = compose_grid(columns, labels)
        url = self.service.store.put(data, mime).url if self.service.store else None
        return data, mime, url

    def _post(
        self, view: ComparisonView, job: Job, positions, picture, client: WebClient
    ) -> tuple[str | None, str]:
        data, mime, url = picture
        delivery = Delivery(client)
        if url:
            return delivery.post_message(job.channel_id, messages.compare_message(view)), "blocks"
        files = [Upload(data, mime, "A and B side by side", job.request.prompt)]
        for position, result in positions.items():
            files += [
                Upload(self.service.image_bytes(i), i.mime_type, f"{position}, full size", "")
                for i in result.images
            ]
        comment = messages.compare_comment(view)
        return delivery.upload(job.channel_id, files, comment), "file"

    def _view(self, job: Job, positions: dict[str, ProviderResult], url: str | None):
        return ComparisonView(
            prompt=job.request.prompt,
            pictures=[url] if url else [],
            originals={p: [i.url for i in r.images if i.url] for p, r in positions.items()},
            models={p: (r.provider, r.model or "") for p, r in positions.items()},
            emoji={choice: name for name, choice in self.voting.choices.items()},
            requester=job.user_id,
            seconds=round(job.elapsed(), 1),
            reveal_after=self.voting.reveal_after_votes,
        )

    def _add_voting_reactions(self, client: WebClient, channel: str, ts: str) -> None:
        for name in self.voting.choices:
            try:
                client.reactions_add(channel=channel, timestamp=ts, name=name)
            except SlackApiError as err:
                if err.response.get("error") != "already_reacted":
                    log.warning("reactions.add %s failed: %s", name, err.response.get("error"))
