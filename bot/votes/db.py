"""The vote store: generations, comparisons, reactions and votes in SQL (SQLAlchemy Core).

One `VoteStore` per process, shared by every thread. SQLite (the default) runs in WAL mode and
every write transaction starts with BEGIN IMMEDIATE, so concurrent writers queue on the busy
timeout instead of failing half-way; PostgreSQL serialises per (target, voter) with a
transaction-scoped advisory lock.

Votes are derived, never counted: every reaction event is stored once (Slack redelivers the same
event_id), and a voter's vote on a target is recomputed by replaying that voter's events in
(event_ts, event_id) order. Duplicates, retries and out-of-order delivery therefore all converge
on the same answer.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    Engine,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url

from bot.votes import board
from bot.votes.group_commit import GroupCommit
from bot.votes.schema import (
    COMPARISONS,
    DELIVERIES,
    EVENTS,
    GENERATIONS,
    MIGRATIONS,
    PENDING_REACTIONS,
    PREFERENCES,
    RATED_POSTS,
    SCHEMA_VERSION,
    SPEND,
    UPLOADS,
    VOTES,
    Migration,
)

DEFAULT_URL = "sqlite:///imagine.db"
TIE, BOTH_BAD, UP, DOWN = "tie", "both_bad", "up", "down"
COMPARISON, RATED_POST = "comparison", "rated_post"
POSTING, POSTED, TOLD = "posting", "posted", "told"  # delivery states
PENDING, SHARED, GONE = "pending", "shared", "gone"  # upload states
_MIGRATION_LOCK = 0x1A6A_17E0  # pg advisory lock key held while migrating
_WRITE = "imagine_write"  # execution option: BEGIN IMMEDIATE on SQLite (else a deferred BEGIN)
PENDING_KEEP = timedelta(days=7)  # a reaction on a message never registered is dropped after


class DatabaseBusy(TimeoutError):
    """SQLite's write lock was not free within the busy timeout."""


def _url_timeout(url: str, default: float) -> float:
    """pysqlite's `?timeout=SECONDS` URL parameter, else `default`."""
    value = make_url(url).query.get("timeout")
    try:
        return float(value) if isinstance(value, str) else default
    except ValueError:
        raise ValueError(f"DATABASE_URL's timeout must be seconds, not {value!r}") from None


def normalise_url(url: str) -> str:
    """Heroku-style postgres:// and bare postgresql:// URLs -> the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(moment: datetime | None) -> datetime | None:
    """Store and compare in UTC; SQLite drops offsets, so naive values mean UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


_INSERT_GENERATION = GENERATIONS.insert().returning(GENERATIONS.c.id)
_FINISH_DELIVERY = (
    update(DELIVERIES)
    .where(DELIVERIES.c.job_key == bindparam("k"))
    .values(state=bindparam("s"), message_ts=bindparam("t"), updated_at=bindparam("u"))
)


# --- values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    provider: str
    model: str


@dataclass(frozen=True)
class Comparison:
    id: int
    channel_id: str
    message_ts: str
    requester_id: str
    prompt: str
    positions: dict[str, ModelRef]
    revealed: bool
    revealed_at: datetime | None
    created_at: datetime
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RatedPost:
    id: int
    channel_id: str
    message_ts: str
    provider: str
    model: str
    requester_id: str
    created_at: datetime


@dataclass(frozen=True)
class PendingUpload:
    """A single picture uploaded into Slack whose message is not known yet."""

    id: int
    channel_id: str
    file_id: str
    provider: str
    model: str
    requester_id: str
    request_id: str


@dataclass(frozen=True)
class Picture:
    """One of a person's pictures in the history: where it is, never a signed URL (the
    object's address without its query string) or the Slack file it was uploaded as."""

    created_at: datetime
    prompt: str
    provider: str
    model: str
    channel_id: str
    message_ts: str | None
    image_urls: list[str]
    file_id: str | None


@dataclass(frozen=True)
class VoteChange:
    """What one reaction event did. `choice` is the voter's vote now (None: no vote)."""

    target: str  # COMPARISON or RATED_POST
    target_id: int
    voter_id: str
    previous: str | None
    choice: str | None
    duplicate: bool  # this event_id had been stored before: nothing changed
    vote_count: int  # votes on the target now
    hidden: bool | None  # names hidden when the deciding "added" event arrived

    @property
    def changed(self) -> bool:
        return self.previous != self.choice


@dataclass(frozen=True)
class PositionsTally:
    """Votes on comparisons that had the same position -> model map, per choice."""

    positions: dict[str, ModelRef]
    counts: dict[str, int]


@dataclass(frozen=True)
class ThumbTally:
    provider: str
    model: str
    choice: str  # UP or DOWN
    count: int


def _encode_positions(positions: Mapping[str, ModelRef | Mapping[str, str]]) -> str:
    plain = {}
    for position, ref in positions.items():
        if isinstance(ref, ModelRef):
            plain[position] = {"provider": ref.provider, "model": ref.model}
        else:
            plain[position] = {"provider": ref["provider"], "model": ref["model"]}
    if len(plain) < 2 or set(plain) & {TIE, BOTH_BAD}:
        raise ValueError("a comparison needs two or more positions named like A and B")
    return json.dumps(plain, sort_keys=True)


def _decode_positions(raw: str) -> dict[str, ModelRef]:
    return {k: ModelRef(v["provider"], v["model"]) for k, v in json.loads(raw).items()}


def _event_order(event_ts: str) -> Decimal:
    try:
        return Decimal(event_ts)
    except InvalidOperation:
        raise ValueError(f"event_ts must be a Slack timestamp, not {event_ts!r}") from None


def replay(events: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The deciding "added" event after replaying in (event_ts, event_id) order, or None.

    "added X" makes X the vote (replacing any other); "removed X" withdraws the vote only if X
    is the current vote, so removing an older, superseded reaction changes nothing.
    """
    current: Mapping[str, Any] | None = None
    for e in sorted(events, key=lambda e: (_event_order(e["event_ts"]), e["event_id"])):
        if e["added"]:
            current = e
        elif current is not None and current["choice"] == e["choice"]:
            current = None
    return current


@dataclass(frozen=True)
class KeptPicture:
    """One of the bot's pictures as the history keeps it: which generation, which model drew
    it, and `picture`, the reference its bytes are read from."""

    generation_id: int
    provider: str
    model: str
    picture: str


@dataclass(frozen=True)
class DeliveryOutcome:
    """How a claimed job ended: POSTED (with its message) or TOLD (a sentence instead)."""

    job_key: str
    state: str
    message_ts: str | None = None


@dataclass(frozen=True)
class UsageRecord:
    """A job's settled `spend` row, written when no limit needs it counted first
    (`bot.votes.spend.spend_row` builds it); a redelivered job's second row is ignored."""

    row: dict[str, Any]


@dataclass(frozen=True)
class HistoryEntry:
    """The rows one provider's result adds to the history."""

    generation: dict[str, Any]
    rated_post: dict[str, Any] | None = None
    upload: dict[str, Any] | None = None


def history_entry(
    *,
    user_id: str,
    channel_id: str,
    prompt: str,
    provider: str,
    model: str,
    options: Mapping[str, Any],
    timings: Mapping[str, float],
    outcome: str,
    image_urls: Sequence[str],
    request_id: str,
    message_ts: str | None = None,
    rated: bool = False,
    upload_file_id: str | None = None,
    team_id: str | None = None,
    cost_usd: float | None = None,
    revised_prompt: str | None = None,
    image_refs: Sequence[str] = (),
    pictures: int | None = None,
    picture: str | None = None,
    thread_ts: str | None = None,
    parent_id: int | None = None,
    parent_picture: str | None = None,
) -> HistoryEntry:
    """One provider's result for one request (`outcome`: "ok" or an error kind).

    `rated`: the post takes 👍 / 👎 for the model: a rated post when its `message_ts` is known;
    an upload whose message is not known yet is kept by `upload_file_id` until someone reacts
    (see `VoteStore.pending_uploads`)."""
    now = _now()
    generation = {
        "created_at": now,
        "user_id": user_id,
        "channel_id": channel_id,
        "prompt": prompt,
        "provider": provider,
        "model": model,
        "options": json.dumps(dict(options), sort_keys=True, default=str),
        "timings": json.dumps(dict(timings), sort_keys=True),
        "outcome": outcome,
        "image_urls": json.dumps(list(image_urls)),
        "message_ts": message_ts,
        "request_id": request_id,
        "team_id": team_id,
        "cost_usd": cost_usd,
        "revised_prompt": revised_prompt,
        "image_refs": json.dumps(list(image_refs)),
        "pictures": pictures,
        "picture": picture,
        "thread_ts": thread_ts,
        "parent_id": parent_id,
        "parent_picture": parent_picture,
    }
    who = {"channel_id": channel_id, "provider": provider, "model": model}
    if rated and message_ts:
        post = {"created_at": now, "message_ts": message_ts, "requester_id": user_id, **who}
        return HistoryEntry(generation, rated_post=post)
    if rated and upload_file_id:
        upload = {
            "created_at": now,
            "file_id": upload_file_id,
            "requester_id": user_id,
            "request_id": request_id,
            "state": PENDING,
            **who,
        }
        return HistoryEntry(generation, upload=upload)
    return HistoryEntry(generation)


# --- the store --------------------------------------------------------------------------------


class VoteStore:
    """Thread-safe: build once per process and share."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        pool_size: int = 4,
        max_overflow: int = 4,
        pool_timeout: float = 30.0,
        busy_timeout: float = 10.0,
    ) -> None:
        """Connections are few on purpose: threads beyond `pool_size + max_overflow` wait (up to
        `pool_timeout`) for one, and each holds it for a few milliseconds. Measured on 2 cores,
        32 threads bursting through 4 connections beat 32 connections (less contention).

        SQLite waits `busy_timeout` seconds (or the URL's `?timeout=`, as pysqlite names it)
        for a write lock that another process holds, then fails: the caller decides."""
        self.url = normalise_url(url)
        self._sqlite = self.url.startswith("sqlite")
        self._sqlite_writer = threading.Lock()
        if self._sqlite:
            busy_timeout = _url_timeout(self.url, busy_timeout)
            self._busy_timeout = busy_timeout
            self._engine = create_engine(
                self.url,
                connect_args={"timeout": busy_timeout, "check_same_thread": False},
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_timeout=pool_timeout,
            )
            _configure_sqlite(self._engine, busy_timeout)
        else:
            # a server that never answers (a dead host) fails a connection in seconds, not never
            wait = {} if "connect_timeout" in make_url(self.url).query else {"connect_timeout": 5}
            self._engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_timeout=pool_timeout,
                pool_pre_ping=True,
                connect_args=wait,
            )
        # built once: a statement built per call costs more than the insert itself
        self._insert_rated_post = self._insert_ignore(RATED_POSTS).on_conflict_do_nothing(
            index_elements=["channel_id", "message_ts"]
        )
        self._insert_usage = self._insert_ignore(SPEND).on_conflict_do_nothing(
            index_elements=["job_key"]
        )
        # built once: every picture claims its delivery before it is posted
        self._claim = (
            self._insert_ignore(DELIVERIES)
            .values(
                job_key=bindparam("k"),
                state=bindparam("s"),
                channel_id=bindparam("c"),
                updated_at=bindparam("u"),
            )
            .on_conflict_do_nothing(index_elements=["job_key"])
            .returning(DELIVERIES.c.job_key)
        )
        self._claims: GroupCommit[tuple[str, str, str], bool] = GroupCommit(self._claim_together)
        self.migrate(migrations)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction. On SQLite, threads of this process queue on a lock first:
        SQLite's busy handler sleeps in growing steps, which turns a burst into a crawl."""
        if not self._sqlite:
            with self._engine.begin() as conn:
                yield conn
            return
        # bounded: behind a writer stuck on another process's lock, the queue would only grow
        if not self._sqlite_writer.acquire(timeout=self._busy_timeout):
            raise DatabaseBusy("the SQLite database stayed locked by another writer")
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{_WRITE: True})
                with conn.begin():  # BEGIN IMMEDIATE
                    yield conn
        finally:
            self._sqlite_writer.release()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    @property
    def is_sqlite(self) -> bool:
        return self._sqlite

    def writing(self) -> Any:
        """A write transaction for the store's other modules (spend, retention): serialised
        as every write here is (SQLite: BEGIN IMMEDIATE; PostgreSQL: the caller's locks)."""
        return self._write()

    def reading(self) -> Any:
        return self._read()

    # --- schema versions ---

    def migrate(self, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
        """Apply the missing migrations in one transaction; returns the versions applied."""
        applied: list[int] = []
        with self._write() as conn:
            if not self._sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            SCHEMA_VERSION.create(conn, checkfirst=True)
            done = set(conn.scalars(select(SCHEMA_VERSION.c.version)))
            for step in sorted(migrations, key=lambda m: m.version):
                if step.version in done:
                    continue
                step.apply(conn)
                conn.execute(
                    SCHEMA_VERSION.insert().values(
                        version=step.version, description=step.description, applied_at=_now()
                    )
                )
                applied.append(step.version)
        return applied

    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.scalar(select(func.max(SCHEMA_VERSION.c.version))) or 0)

    # --- generations ---

    def record_generation(self, **fields: Any) -> int:
        """Write one `history_entry(**fields)` now; returns the generation's id."""
        entry = history_entry(**fields)
        with self._write() as conn:
            self._write_extras(conn, [entry])
            return conn.execute(_INSERT_GENERATION, entry.generation).scalar_one()

    def write_history(
        self,
        entries: Sequence[HistoryEntry],
        outcomes: Sequence[DeliveryOutcome] = (),
        usage: Sequence[UsageRecord] = (),
    ) -> None:
        """Many entries, delivery outcomes and usage rows in one transaction (see
        `bot.votes.history.HistoryWriter`)."""
        if not entries and not outcomes and not usage:
            return
        with self._write() as conn:
            if usage:
                conn.execute(self._insert_usage, [u.row for u in usage])
            if entries:
                self._write_extras(conn, entries)
                conn.execute(GENERATIONS.insert(), [e.generation for e in entries])
            if outcomes:
                now = _now()
                conn.execute(
                    _FINISH_DELIVERY,
                    [{"k": o.job_key, "s": o.state, "t": o.message_ts, "u": now} for o in outcomes],
                )

    def _write_extras(self, conn: Connection, entries: Sequence[HistoryEntry]) -> None:
        rated = [e.rated_post for e in entries if e.rated_post]
        uploads = [e.upload for e in entries if e.upload]
        if rated:
            messages = [(r["channel_id"], r["message_ts"]) for r in rated]
            self._lock_messages(conn, messages)
            conn.execute(self._insert_rated_post, rated)
            self._apply_pending(conn, messages)
        if uploads:
            conn.execute(UPLOADS.insert(), uploads)

    def set_generation_message(self, generation_id: int, message_ts: str) -> None:
        with self._write() as conn:
            conn.execute(
                update(GENERATIONS)
                .where(GENERATIONS.c.id == generation_id)
                .values(message_ts=message_ts)
            )

    def generations(self, request_id: str) -> list[dict[str, Any]]:
        """The rows of one request, JSON fields decoded (history, tests)."""
        with self._read() as conn:
            rows = conn.execute(
                select(GENERATIONS)
                .where(GENERATIONS.c.request_id == request_id)
                .order_by(GENERATIONS.c.id)
            ).mappings()
            out = []
            for row in rows:
                item = dict(row, created_at=_utc(row["created_at"]))
                for key in ("options", "timings", "image_urls", "image_refs"):
                    item[key] = json.loads(item[key] or "[]")
                out.append(item)
            return out

    # --- pictures: which of the bot's messages show one, and where its bytes are ---

    def latest_picture(self, channel_id: str, thread_ts: str) -> KeptPicture | None:
        """The newest picture in the thread under `thread_ts`: the post that started it, or
        an edit posted in it; None when the thread is not under one of the bot's pictures."""
        where = (GENERATIONS.c.message_ts == thread_ts) | (GENERATIONS.c.thread_ts == thread_ts)
        return self._picture(channel_id, where)

    def picture_at(self, channel_id: str, message_ts: str) -> KeptPicture | None:
        """The picture the bot posted as the message at `message_ts`, if it is one."""
        return self._picture(channel_id, GENERATIONS.c.message_ts == message_ts)

    def picture_named(self, channel_id: str, picture: str) -> KeptPicture | None:
        """The bot's picture kept as `picture` (an upload's reference, say), if it is one."""
        return self._picture(channel_id, GENERATIONS.c.picture == picture)

    def _picture(self, channel_id: str, where: Any) -> KeptPicture | None:
        with self._read() as conn:
            row = (
                conn.execute(
                    select(GENERATIONS)
                    .where(
                        GENERATIONS.c.channel_id == channel_id,
                        GENERATIONS.c.outcome == "ok",
                        GENERATIONS.c.picture.is_not(None),
                        where,
                    )
                    .order_by(GENERATIONS.c.id.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return KeptPicture(row["id"], row["provider"], row["model"], row["picture"])

    def recent_pictures(self, user_id: str, limit: int = 10) -> list[Picture]:
        """The person's last `limit` pictures that reached a channel, newest first."""
        joined = GENERATIONS.outerjoin(
            UPLOADS,
            (UPLOADS.c.request_id == GENERATIONS.c.request_id)
            & (UPLOADS.c.provider == GENERATIONS.c.provider),
        )
        query = (
            select(GENERATIONS, UPLOADS.c.file_id)
            .select_from(joined)
            .where(GENERATIONS.c.user_id == user_id, GENERATIONS.c.outcome == "ok")
            .order_by(GENERATIONS.c.id.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [
                Picture(
                    created_at=_utc(r["created_at"]) or _now(),
                    prompt=r["prompt"],
                    provider=r["provider"],
                    model=r["model"],
                    channel_id=r["channel_id"],
                    message_ts=r["message_ts"],
                    image_urls=json.loads(r["image_urls"] or "[]"),
                    file_id=r["file_id"],
                )
                for r in conn.execute(query).mappings()
            ]

    # --- each person's own default ---

    def preference(self, user_id: str) -> str | None:
        """The person's default for a plain `/imagine <prompt>`; None: the team's."""
        with self._read() as conn:
            return conn.scalar(
                select(PREFERENCES.c.default_provider).where(PREFERENCES.c.user_id == user_id)
            )

    def set_preference(self, user_id: str, default_provider: str | None) -> None:
        """Save (or, with None, forget) the person's default."""
        with self._write() as conn:
            conn.execute(PREFERENCES.delete().where(PREFERENCES.c.user_id == user_id))
            if default_provider is not None:
                conn.execute(
                    PREFERENCES.insert().values(
                        user_id=user_id, default_provider=default_provider, updated_at=_now()
                    )
                )

    # --- uploads waiting to be matched with their message ---

    def pending_uploads(
        self, channel_id: str, *, within: timedelta = timedelta(days=30), limit: int = 20
    ) -> list[PendingUpload]:
        """Uploads in `channel_id` whose message is not known yet, newest first."""
        with self._read() as conn:
            rows = conn.execute(
                select(UPLOADS)
                .where(
                    UPLOADS.c.channel_id == channel_id,
                    UPLOADS.c.state == PENDING,
                    UPLOADS.c.created_at >= _now() - within,
                )
                .order_by(UPLOADS.c.id.desc())
                .limit(limit)
            ).mappings()
            return [
                PendingUpload(
                    r["id"], r["channel_id"], r["file_id"], r["provider"], r["model"],
                    r["requester_id"], r["request_id"],
                )
                for r in rows
            ]  # fmt: skip

    def resolve_upload(self, upload: PendingUpload, message_ts: str | None) -> None:
        """The upload became the message at `message_ts` (None: it is gone for good): from now
        on 👍 / 👎 on that message rate the model, and the history knows the message."""
        with self._write() as conn:
            conn.execute(
                update(UPLOADS)
                .where(UPLOADS.c.id == upload.id)
                .values(state=SHARED if message_ts else GONE, message_ts=message_ts)
            )
            if message_ts is None:
                return
            self._lock_messages(conn, [(upload.channel_id, message_ts)])
            conn.execute(
                self._insert_rated_post,
                {
                    "created_at": _now(),
                    "channel_id": upload.channel_id,
                    "message_ts": message_ts,
                    "provider": upload.provider,
                    "model": upload.model,
                    "requester_id": upload.requester_id,
                },
            )
            conn.execute(
                update(GENERATIONS)
                .where(
                    GENERATIONS.c.request_id == upload.request_id,
                    GENERATIONS.c.provider == upload.provider,
                    GENERATIONS.c.message_ts.is_(None),
                )
                .values(message_ts=message_ts)
            )
            self._apply_pending(conn, [(upload.channel_id, message_ts)])

    # --- the job board of web processes that share no Redis (see `bot.votes.board`) ---

    def board_admit(self, key: str, user_id: str, **limits: Any) -> str:
        with self._write() as conn:
            return board.admit(conn, key, user_id, **limits)

    def board_cancel(self, key: str, user_id: str) -> bool:
        with self._write() as conn:
            return board.cancel(conn, key, user_id)

    def board_cancelled(self, key: str) -> bool:
        with self._read() as conn:
            return board.cancelled(conn, key)

    def board_finish(self, key: str) -> None:
        with self._write() as conn:
            board.finish(conn, key)

    def board_once(self, key: str, *, now: float, seconds: float) -> bool:
        with self._write() as conn:
            return board.once(conn, key, now=now, seconds=seconds)

    def board_on_the_way(self, *, now: float, stale: float) -> int:
        with self._read() as conn:
            return board.on_the_way(conn, now=now, stale=stale)

    # --- deliveries: what a job has already shown, so a re-run never posts twice ---

    def delivery_state(self, job_key: str) -> str | None:
        """None (nothing posted yet), "posting" (a run started posting), "posted" or "told"."""
        with self._read() as conn:
            return conn.scalar(select(DELIVERIES.c.state).where(DELIVERIES.c.job_key == job_key))

    def claim_delivery(self, job_key: str, channel_id: str, state: str = POSTING) -> bool:
        """Record that this run is about to post; False when another run got there first.
        TOLD: the person was told the job was not taken, and a run that comes anyway (a job
        stored by a Redis whose answer was lost) posts nothing.

        The claims this process's threads make at the same moment share one transaction
        (`GroupCommit`): a burst of pictures back from the providers does not queue for one
        transaction each before posting."""
        return self._claims.submit((job_key, channel_id, state))

    def _claim_together(self, claims: list[tuple[str, str, str]]) -> list[bool]:
        """Each claim's answer, in one transaction. A key claimed twice in the batch (two
        runs of one job at once) is won by the first claim only."""
        now = _now()
        rows = [{"k": key, "s": state, "c": channel, "u": now} for key, channel, state in claims]
        with self._write() as conn:  # several rows: one multi-row INSERT (insertmanyvalues)
            won = {key for (key,) in conn.execute(self._claim, rows[0] if len(rows) == 1 else rows)}
        answers = []
        for key, _, _ in claims:
            answers.append(key in won)
            won.discard(key)
        return answers

    def finish_delivery(self, job_key: str, state: str, message_ts: str | None = None) -> None:
        """The claimed job's outcome: POSTED (with its message) or TOLD (a sentence instead)."""
        self.write_history([], [DeliveryOutcome(job_key, state, message_ts)])

    # --- comparisons and rated posts ---

    def _insert_ignore(self, table: Table) -> Any:
        return (sqlite_insert if self._sqlite else pg_insert)(table)

    def _insert_message_row(
        self, conn: Connection, table: Table, channel_id: str, message_ts: str, **values: Any
    ) -> None:
        conn.execute(
            self._insert_ignore(table)
            .values(created_at=_now(), channel_id=channel_id, message_ts=message_ts, **values)
            .on_conflict_do_nothing(index_elements=["channel_id", "message_ts"])
        )

    def _message_row_id(self, table: Table, channel_id: str, message_ts: str, **values: Any) -> int:
        """Insert the row for a message unless it exists, and count the votes that waited for
        it; the row's id either way."""
        with self._write() as conn:
            self._lock_messages(conn, [(channel_id, message_ts)])
            self._insert_message_row(conn, table, channel_id, message_ts, **values)
            row_id = conn.execute(
                select(table.c.id).where(
                    table.c.channel_id == channel_id, table.c.message_ts == message_ts
                )
            ).scalar_one()
            self._apply_pending(conn, [(channel_id, message_ts)])
            return row_id

    def register_comparison(
        self,
        channel_id: str,
        message_ts: str,
        requester_id: str,
        prompt: str,
        positions: Mapping[str, ModelRef | Mapping[str, str]],
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Remember a posted comparison; registering the same message again returns its id.

        `details` is the caller's own JSON-able state (what it needs to redraw the message).
        """
        return self._message_row_id(
            COMPARISONS,
            channel_id,
            message_ts,
            requester_id=requester_id,
            prompt=prompt,
            positions=_encode_positions(positions),
            revealed=False,
            details=json.dumps(details or {}),
        )

    def comparison_at(self, channel_id: str, message_ts: str) -> Comparison | None:
        with self._read() as conn:
            return self._comparison(conn, channel_id, message_ts)

    def comparison(self, comparison_id: int) -> Comparison | None:
        with self._read() as conn:
            row = conn.execute(
                select(COMPARISONS).where(COMPARISONS.c.id == comparison_id)
            ).mappings()
            return _to_comparison(row.first())

    def _comparison(self, conn: Connection, channel_id: str, message_ts: str) -> Comparison | None:
        row = conn.execute(
            select(COMPARISONS).where(
                COMPARISONS.c.channel_id == channel_id, COMPARISONS.c.message_ts == message_ts
            )
        ).mappings()
        return _to_comparison(row.first())

    def mark_revealed(self, comparison_id: int) -> bool:
        """Reveal the names; True only for the one call that flipped the flag."""
        with self._write() as conn:
            flipped = conn.execute(
                update(COMPARISONS)
                .where(COMPARISONS.c.id == comparison_id, COMPARISONS.c.revealed.is_(False))
                .values(revealed=True, revealed_at=_now())
            )
            return flipped.rowcount == 1

    def unmark_revealed(self, comparison_id: int) -> None:
        """The reveal did not reach Slack: the names are hidden again, to be revealed by the
        next vote or click."""
        with self._write() as conn:
            conn.execute(
                update(COMPARISONS)
                .where(COMPARISONS.c.id == comparison_id)
                .values(revealed=False, revealed_at=None)
            )

    def register_rated_post(
        self, channel_id: str, message_ts: str, provider: str, model: str, requester_id: str
    ) -> int:
        """Remember a single-provider post that takes 👍 / 👎; idempotent per message."""
        return self._message_row_id(
            RATED_POSTS,
            channel_id,
            message_ts,
            provider=provider,
            model=model,
            requester_id=requester_id,
        )

    def rated_post_at(self, channel_id: str, message_ts: str) -> RatedPost | None:
        with self._read() as conn:
            row = conn.execute(
                select(RATED_POSTS).where(
                    RATED_POSTS.c.channel_id == channel_id,
                    RATED_POSTS.c.message_ts == message_ts,
                )
            ).mappings()
            found = row.first()
            if found is None:
                return None
            return RatedPost(
                id=found["id"],
                channel_id=found["channel_id"],
                message_ts=found["message_ts"],
                provider=found["provider"],
                model=found["model"],
                requester_id=found["requester_id"],
                created_at=_utc(found["created_at"]),
            )

    # --- votes ---

    def apply_reaction(
        self,
        event_id: str,
        channel_id: str,
        message_ts: str,
        voter_id: str,
        choice: str,
        added: bool,
        event_ts: str,
        *,
        hidden: bool | None = None,
        received_at: datetime | None = None,
        keep_if_unknown: bool = False,
    ) -> VoteChange | None:
        """Store one reaction event (once per event_id) and recompute that voter's vote.

        Returns None when (channel, ts) is neither a comparison nor a rated post; with
        `keep_if_unknown` (a reaction on one of the bot's own messages) the event is kept and
        counted when the message is registered (within `PENDING_KEEP`). `choice` is a position
        ("A", "B", ...), "tie" or "both_bad" on comparisons, "up" or "down" on rated posts.
        `hidden` defaults to "the comparison was not yet revealed when this event was stored"
        (False on rated posts). Raises when the database cannot store it: nothing is lost
        silently.
        """
        _event_order(event_ts)
        event = {
            "event_id": event_id,
            "channel_id": channel_id,
            "message_ts": message_ts,
            "voter_id": voter_id,
            "choice": choice,
            "added": added,
            "event_ts": event_ts,
            "received_at": _utc(received_at) or _now(),
        }
        with self._write() as conn:
            if keep_if_unknown:  # a registration of this message waits for us, or we for it
                self._lock_messages(conn, [(channel_id, message_ts)], shared=True)
            kind, target_id, revealed, choices = self._target(conn, channel_id, message_ts)
            if kind is None:
                if keep_if_unknown:
                    self._keep_pending(conn, **event)
                return None
            if choice not in choices:
                raise ValueError(f"{choice!r} is not a choice on this message")
            self._lock(conn, kind, target_id, voter_id)
            hidden = (not revealed) if hidden is None else hidden
            duplicate = not self._store_event(conn, kind, target_id, **event, hidden=hidden)
            previous, current = self._recompute(conn, kind, target_id, voter_id)
            vote_key = VOTES.c.comparison_id if kind == COMPARISON else VOTES.c.rated_post_id
            count = conn.scalar(select(func.count()).where(vote_key == target_id))
            return VoteChange(
                target=kind,
                target_id=target_id,
                voter_id=voter_id,
                previous=previous,
                choice=None if current is None else current["choice"],
                duplicate=duplicate,
                vote_count=int(count or 0),
                hidden=None if current is None else bool(current["hidden"]),
            )

    def _store_event(self, conn: Connection, kind: str, target_id: int, **event: Any) -> bool:
        """Insert one reaction event on a target; False when its event_id was stored before."""
        key = EVENTS.c.comparison_id if kind == COMPARISON else EVENTS.c.rated_post_id
        stored = conn.execute(
            self._insert_ignore(EVENTS)
            .values(**{key.name: target_id}, **event)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(EVENTS.c.id)
        )
        return stored.first() is not None

    def _keep_pending(self, conn: Connection, **event: Any) -> None:
        """Keep a reaction on a message not registered (yet); forget ones kept too long."""
        conn.execute(
            self._insert_ignore(PENDING_REACTIONS)
            .values(**event)
            .on_conflict_do_nothing(index_elements=["event_id"])
        )
        conn.execute(
            delete(PENDING_REACTIONS).where(PENDING_REACTIONS.c.received_at < _now() - PENDING_KEEP)
        )

    def _apply_pending(self, conn: Connection, messages: Sequence[tuple[str, str]]) -> None:
        """Count the reactions that arrived before these messages were registered (call it
        under `_lock_messages`, after the registration). A reaction that is no choice on its
        message (a letter on a single picture) was never a vote, and is dropped."""
        message = tuple_(PENDING_REACTIONS.c.channel_id, PENDING_REACTIONS.c.message_ts)
        rows = (
            conn.execute(select(PENDING_REACTIONS).where(message.in_(sorted(set(messages)))))
            .mappings()
            .all()
        )
        if not rows:
            return
        conn.execute(
            delete(PENDING_REACTIONS).where(PENDING_REACTIONS.c.id.in_([r["id"] for r in rows]))
        )
        targets: dict[tuple[str, str], tuple[str | None, int, bool, set[str]]] = {}
        voters: set[tuple[str, int, str]] = set()
        for row in rows:
            message = (row["channel_id"], row["message_ts"])
            if message not in targets:
                targets[message] = self._target(conn, *message)
            kind, target_id, revealed, choices = targets[message]
            if kind is None or row["choice"] not in choices:
                continue
            event = {k: row[k] for k in ("event_id", "channel_id", "message_ts", "voter_id")}
            event.update({k: row[k] for k in ("choice", "added", "event_ts")})
            received = _utc(row["received_at"])
            self._store_event(
                conn, kind, target_id, **event, received_at=received, hidden=not revealed
            )
            voters.add((kind, target_id, row["voter_id"]))
        for kind, target_id, voter_id in sorted(voters):
            self._lock(conn, kind, target_id, voter_id)
            self._recompute(conn, kind, target_id, voter_id)

    def _lock_messages(
        self, conn: Connection, messages: Sequence[tuple[str, str]], *, shared: bool = False
    ) -> None:
        """On PostgreSQL, serialise registering a message with keeping reactions for it (shared:
        reactions do not wait for each other), so no reaction is kept just after the message's
        pending reactions were counted. SQLite's BEGIN IMMEDIATE already serialises writers."""
        if self._sqlite or not messages:
            return
        keys = sorted({_advisory_key(f"message:{c}:{ts}") for c, ts in messages})  # one order
        lock = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        conn.execute(
            text(f"SELECT {lock}(k) FROM unnest(CAST(:keys AS BIGINT[])) AS k"), {"keys": keys}
        )

    def _target(
        self, conn: Connection, channel_id: str, message_ts: str
    ) -> tuple[str | None, int, bool, set[str]]:
        comparison = self._comparison(conn, channel_id, message_ts)
        if comparison is not None:
            choices = set(comparison.positions) | {TIE, BOTH_BAD}
            return COMPARISON, comparison.id, comparison.revealed, choices
        post_id = conn.scalar(
            select(RATED_POSTS.c.id).where(
                RATED_POSTS.c.channel_id == channel_id, RATED_POSTS.c.message_ts == message_ts
            )
        )
        if post_id is not None:
            return RATED_POST, post_id, True, {UP, DOWN}
        return None, 0, False, set()

    def _lock(self, conn: Connection, kind: str, target_id: int, voter_id: str) -> None:
        """Serialise one voter's events on one target (SQLite's BEGIN IMMEDIATE already does)."""
        if self._sqlite:
            return
        key = _advisory_key(f"{kind}:{target_id}:{voter_id}")
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})

    def _recompute(
        self, conn: Connection, kind: str, target_id: int, voter_id: str
    ) -> tuple[str | None, Mapping[str, Any] | None]:
        """Replay the voter's events and make the votes row agree; (previous choice, decider)."""
        event_key = EVENTS.c.comparison_id if kind == COMPARISON else EVENTS.c.rated_post_id
        vote_key = VOTES.c.comparison_id if kind == COMPARISON else VOTES.c.rated_post_id
        events = conn.execute(
            select(
                EVENTS.c.event_id,
                EVENTS.c.event_ts,
                EVENTS.c.choice,
                EVENTS.c.added,
                EVENTS.c.hidden,
                EVENTS.c.received_at,
            ).where(event_key == target_id, EVENTS.c.voter_id == voter_id)
        ).mappings()
        decider = replay(list(events))
        mine = (vote_key == target_id) & (VOTES.c.voter_id == voter_id)
        existing = conn.execute(select(VOTES.c.id, VOTES.c.choice).where(mine)).first()
        previous = None if existing is None else existing.choice
        if decider is None:
            if existing is not None:
                conn.execute(delete(VOTES).where(VOTES.c.id == existing.id))
            return previous, None
        values = {
            "choice": decider["choice"],
            "cast_at": _utc(decider["received_at"]),
            "hidden": bool(decider["hidden"]),
        }
        if existing is None:
            conn.execute(
                VOTES.insert().values(**{vote_key.name: target_id}, voter_id=voter_id, **values)
            )
        else:
            conn.execute(update(VOTES).where(VOTES.c.id == existing.id).values(**values))
        return previous, decider

    def vote_count(self, comparison_id: int) -> int:
        with self._read() as conn:
            return int(
                conn.scalar(select(func.count()).where(VOTES.c.comparison_id == comparison_id)) or 0
            )

    def votes(self, comparison_id: int) -> dict[str, str]:
        """voter -> current choice on one comparison."""
        with self._read() as conn:
            rows = conn.execute(
                select(VOTES.c.voter_id, VOTES.c.choice).where(
                    VOTES.c.comparison_id == comparison_id
                )
            )
            return {r.voter_id: r.choice for r in rows}

    # --- leaderboard queries ---

    def comparison_tallies(
        self,
        *,
        since: datetime | None = None,
        channel_id: str | None = None,
        blind_only: bool = False,
    ) -> list[PositionsTally]:
        """Votes counted per (position map, choice), aggregated in SQL so 100k votes stay fast."""
        query = (
            select(COMPARISONS.c.positions, VOTES.c.choice, func.count().label("n"))
            .select_from(VOTES.join(COMPARISONS, VOTES.c.comparison_id == COMPARISONS.c.id))
            .group_by(COMPARISONS.c.positions, VOTES.c.choice)
        )
        query = _filtered(query, since, blind_only)
        if channel_id is not None:
            query = query.where(COMPARISONS.c.channel_id == channel_id)
        tallies: dict[str, dict[str, int]] = {}
        with self._read() as conn:
            for positions, choice, n in conn.execute(query):
                tallies.setdefault(positions, {})[choice] = int(n)
        return [PositionsTally(_decode_positions(p), c) for p, c in tallies.items()]

    def thumb_tallies(
        self,
        *,
        since: datetime | None = None,
        channel_id: str | None = None,
        blind_only: bool = False,
    ) -> list[ThumbTally]:
        """👍 / 👎 per model. Names are never hidden on single posts, so blind_only -> none."""
        query = (
            select(RATED_POSTS.c.provider, RATED_POSTS.c.model, VOTES.c.choice, func.count())
            .select_from(VOTES.join(RATED_POSTS, VOTES.c.rated_post_id == RATED_POSTS.c.id))
            .group_by(RATED_POSTS.c.provider, RATED_POSTS.c.model, VOTES.c.choice)
        )
        query = _filtered(query, since, blind_only)
        if channel_id is not None:
            query = query.where(RATED_POSTS.c.channel_id == channel_id)
        with self._read() as conn:
            return [ThumbTally(p, m, c, int(n)) for p, m, c, n in conn.execute(query)]


def _advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock key (a signed 64-bit integer) for `name`."""
    digest = hashlib.blake2b(name.encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _filtered(query: Any, since: datetime | None, blind_only: bool) -> Any:
    if since is not None:
        query = query.where(VOTES.c.cast_at >= _utc(since))
    if blind_only:
        query = query.where(VOTES.c.hidden.is_(True))
    return query


def _to_comparison(row: Mapping[str, Any] | None) -> Comparison | None:
    if row is None:
        return None
    return Comparison(
        id=row["id"],
        channel_id=row["channel_id"],
        message_ts=row["message_ts"],
        requester_id=row["requester_id"],
        prompt=row["prompt"],
        positions=_decode_positions(row["positions"]),
        revealed=bool(row["revealed"]),
        revealed_at=_utc(row["revealed_at"]),
        created_at=_utc(row["created_at"]),
        details=json.loads(row["details"] or "{}"),
    )


def _enter_wal(cursor: Any, busy_timeout: float) -> None:
    """Switch to WAL, waiting while another connection holds the file: SQLite answers "database
    is locked" at once here, without its busy handler, when several processes open a new
    database together."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _configure_sqlite(engine: Engine, busy_timeout: float) -> None:
    """WAL, busy timeout, foreign keys; BEGIN IMMEDIATE for our writes so writers queue up
    front."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        _enter_wal(cursor, busy_timeout)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Only our writers take the write lock up front. Any other connection (a read, a
        # script, a test looking at the data) begins deferred and never holds the lock while
        # it merely reads: a reader holding BEGIN IMMEDIATE stalls every writer.
        writer = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")
