"""What a front end provides to the workflows: a `Publisher` that shows results to people.

The Slack layer implements it with messages, uploads and ephemeral sentences; the command line
prints. The workflows decide what happens; the publisher decides how it looks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bot.core.jobs import CompareJob, GenerateJob, Job, LeaderboardJob
from bot.generation.types import ImagineError, ProviderResult, StoredImage
from bot.votes.leaderboard import LeaderboardResult

UPLOAD = "upload:"  # a picture reference the front end reads itself: "upload:<file id>"

if TYPE_CHECKING:
    from bot.core.governance import BudgetAlert, LimitRefusal, UsageReport


@dataclass(frozen=True)
class Posted:
    """Where a result went. `ts` identifies the channel message (None when unknown)."""

    ts: str | None = None
    private: bool = False  # only the requester could be shown it (the bot is not in the channel)
    mode: str = "blocks"  # "blocks": a message we can edit; "file": an upload (no edits);
    # "console": printed (the command line)
    file_id: str | None = None  # an upload whose message (ts) is looked up when needed


@dataclass(frozen=True)
class ComparisonPost:
    """A blind comparison as the workflows describe it; kept in the vote store so the post
    can be redrawn when the models are revealed. Keyed by position ("A", "B", ...)."""

    prompt: str
    pictures: list[str]  # the composed pictures' URLs; empty when uploaded without a store
    originals: dict[str, list[str]]  # full-size URLs per position (may be empty)
    models: dict[str, tuple[str, str]]  # position -> (provider, model): hidden until revealed
    requester: str
    seconds: float
    reveal_after: int
    options: dict[str, Any] = field(default_factory=dict)  # the request's, to draw it again


@dataclass(frozen=True)
class ComposedComparison:
    """The pictures behind a ComparisonPost: the composed one and the originals, with bytes
    whenever they must be uploaded (no URL to link to)."""

    picture: StoredImage
    originals: dict[str, list[StoredImage]] = field(default_factory=dict)


class DeliveryFailed(Exception):
    """A finished job's outcome could not be shown before its deadline (the chat service kept
    failing or refusing it). `str(err)` is the one sentence the person is told instead."""


@dataclass(frozen=True)
class Waiting:
    """A job waiting for providers' quotas: provider name -> calls ahead of this one.
    `update`: an earlier note said it waited (a front end that cannot replace that note shows
    the first only)."""

    ahead: dict[str, int]
    update: bool = False


class Publisher(Protocol):
    """Shows a job's outcome to people. Every method is safe to call from many threads."""

    # whether this front end can show a picture's previews and replace them in place (Slack
    # messages: yes; a terminal: no). Previews also need the image store: they are linked.
    shows_previews: bool

    def tell(self, job: Job, text: str) -> None:
        """One private sentence to the requester; never raises."""

    def tell_error(self, job: Job, error: ImagineError) -> None:
        """The error as one private sentence to the requester; never raises."""

    def progress(self, job: Job, waiting: Waiting | None) -> None:
        """Replace the requester's private progress note: waiting (with a way to cancel),
        or, with None, drawing now. Best effort; never raises."""

    def post_pictures(
        self,
        job: GenerateJob,
        result: ProviderResult,
        seconds: float,
        replace: Posted | None = None,
    ) -> Posted:
        """One provider's pictures, in the channel (privately when the bot cannot post there);
        `replace`: the preview they replace in place. Raises DeliveryFailed when they could not
        be shown before the job's deadline."""

    def preview(
        self,
        job: GenerateJob,
        provider: str,
        model: str,
        image: StoredImage,
        index: int,
        replace: Posted | None,
    ) -> Posted:
        """A picture still being drawn (`image` has a URL): posted in the channel the first
        time, then `replace` updated in place. Posted(private=True) when the bot cannot post
        there (no more previews then). May raise; the workflow carries on without previews."""

    def withdraw_preview(self, job: GenerateJob, posted: Posted) -> None:
        """The picture will not be finished: the preview must not stay looking like one
        (deleted, or replaced by a sentence). Best effort; never raises."""

    def picture(self, job: Job, ref: str) -> bytes | None:
        """The bytes of a picture the front end keeps (`UPLOAD` references: its uploads and
        people's); None for any other reference. Raises PictureGoneError when it is gone."""

    def post_comparison(
        self, job: CompareJob, post: ComparisonPost, composed: ComposedComparison
    ) -> Posted:
        """The blind side-by-side post (privately when the bot cannot post there); raises
        DeliveryFailed as `post_pictures` does."""

    def open_voting(self, job: CompareJob, posted: Posted) -> None:
        """Invite votes on a registered comparison (the bot's own reactions, a Reveal button)."""

    def close_voting(self, job: CompareJob, posted: Posted, post: ComparisonPost) -> None:
        """The comparison is shown but could not be registered, so votes on it would not
        count: show it as not votable (the models named). Best effort; never raises."""

    def show_leaderboard(
        self,
        job: LeaderboardJob,
        result: LeaderboardResult,
        chart: bytes | None,
        chart_url: str | None,
    ) -> None:
        """The ratings, privately or (job.post) in the channel."""

    def refuse(self, job: Job, refusal: LimitRefusal) -> None:
        """The one sentence saying why a job is not drawn (a limit, the channel); never
        raises."""

    def alert_admins(self, admins: frozenset[str], alert: BudgetAlert) -> None:
        """A direct message to each admin (the budget crossed a threshold); never raises."""

    def show_usage(self, job: Job, report: UsageReport) -> None:
        """`/imagine usage`, privately to the requester."""
