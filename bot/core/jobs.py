"""Jobs: accepted work as plain data, so a queue can carry it to another process.

A job holds everything a worker needs to do the work and answer the person (where to post,
whom to tell, what to draw, until when) and nothing live: no clients, no callbacks. Its `key`
is the idempotency key: a re-run of the same job never posts twice.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from bot.generation.types import ImageRequest


@dataclass(frozen=True, kw_only=True)
class Job:
    """What every job shares: who asked, where, and the clock it runs against."""

    kind: ClassVar[str]

    key: str  # idempotency key: the same Slack command or click gives the same key
    request_id: str  # follows the job through every log line, from ack to post
    team_id: str
    channel_id: str
    user_id: str
    response_url: str | None = None  # where private sentences go (Slack); None: the CLI
    thread_ts: str | None = None
    created_at: float = field(default_factory=time.time)  # epoch seconds
    deadline: float = 0.0  # epoch seconds after which the work is given up; 0: never

    @property
    def label(self) -> str:
        """For logs: kind and request id."""
        return f"{self.kind}:{self.request_id}"

    def expired(self, now: float | None = None) -> bool:
        return bool(self.deadline) and (now or time.time()) >= self.deadline

    def elapsed(self, now: float | None = None) -> float:
        return (now or time.time()) - self.created_at


@dataclass(frozen=True, kw_only=True)
class GenerateJob(Job):
    """Draw `request` with each provider; each provider's pictures are posted on their own."""

    kind: ClassVar[str] = "generate"
    providers: tuple[str, ...]
    request: ImageRequest
    why: str | None = None  # why these providers, when nobody named them ("the team's ...")


@dataclass(frozen=True, kw_only=True)
class CompareJob(Job):
    """Draw `request` with every provider and post the pictures side by side, blind."""

    kind: ClassVar[str] = "compare"
    providers: tuple[str, ...]
    request: ImageRequest


@dataclass(frozen=True, kw_only=True)
class EditJob(Job):
    """Edit one picture as `request.prompt` says, with `provider`; the result is posted in
    the thread `thread_ts`. The picture is named, never carried: `picture` is its reference
    (a store's `gs://…`, a link, or `slack-file:F…`), `parent_id` its generation when the bot
    drew it (the lineage)."""

    kind: ClassVar[str] = "edit"
    provider: str
    request: ImageRequest
    picture: str
    parent_id: int | None = None

    @property
    def providers(self) -> tuple[str, ...]:
        return (self.provider,)


@dataclass(frozen=True, kw_only=True)
class LeaderboardJob(Job):
    """Compute the ratings and show them to the requester, or to the channel with `post`."""

    kind: ClassVar[str] = "leaderboard"
    blind_only: bool = False
    since_seconds: int | None = None
    here: bool = False
    post: bool = False


@dataclass(frozen=True, kw_only=True)
class UsageJob(Job):
    """The requester's pictures and cost (and, for an admin, the team's), shown privately."""

    kind: ClassVar[str] = "usage"


JOB_TYPES: dict[str, type[Job]] = {
    cls.kind: cls for cls in (GenerateJob, CompareJob, EditJob, LeaderboardJob, UsageJob)
}


def new_request_id() -> str:
    return uuid.uuid4().hex[:12]


def job_to_payload(job: Job) -> dict[str, Any]:
    """JSON-ready dict with a `kind` tag; `job_from_payload` turns it back into the job."""
    return {"kind": job.kind, **asdict(job)}


def job_from_payload(payload: dict[str, Any]) -> Job:
    data = dict(payload)
    kind = data.pop("kind", None)
    cls = JOB_TYPES.get(kind or "")
    if cls is None:
        raise ValueError(f"unknown job kind {kind!r}")
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown fields for a {kind} job: {sorted(unknown)}")
    if "request" in data:
        data["request"] = ImageRequest(**data["request"])
    if "providers" in data:
        data["providers"] = tuple(data["providers"])
    return cls(**data)
