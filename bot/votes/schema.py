"""The vote store's tables and their versioned migrations.

Migration 1 is a frozen copy of the first schema; every later change is a new `Migration`
appended to `MIGRATIONS`, applied once at start (see `VoteStore.migrate`), and mirrored on
the live `Table` objects the queries use.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Connection


def _v1_tables(metadata: MetaData) -> dict[str, Table]:
    """The schema as migration 1 creates it. Frozen: change the schema with a new migration."""
    now = {"nullable": False}
    generations = Table(
        "generations",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("created_at", DateTime(timezone=True), **now),
        Column("user_id", String(64), **now),
        Column("channel_id", String(64), **now),
        Column("prompt", Text, **now),
        Column("provider", String(64), **now),
        Column("model", String(200), **now),
        Column("options", Text, **now),  # JSON
        Column("timings", Text, **now),  # JSON
        Column("outcome", String(64), **now),
        Column("image_urls", Text, **now),  # JSON list
        Column("message_ts", String(32)),
        Column("request_id", String(128), **now, index=True),
    )
    comparisons = Table(
        "comparisons",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("created_at", DateTime(timezone=True), **now),
        Column("channel_id", String(64), **now),
        Column("message_ts", String(32), **now),
        Column("requester_id", String(64), **now),
        Column("prompt", Text, **now),
        Column("positions", Text, **now),  # JSON {"A": {"provider", "model"}, ...}, sorted keys
        Column("revealed", Boolean, nullable=False, default=False),
        Column("revealed_at", DateTime(timezone=True)),
        UniqueConstraint("channel_id", "message_ts", name="uq_comparisons_message"),
    )
    rated_posts = Table(
        "rated_posts",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("created_at", DateTime(timezone=True), **now),
        Column("channel_id", String(64), **now),
        Column("message_ts", String(32), **now),
        Column("provider", String(64), **now),
        Column("model", String(200), **now),
        Column("requester_id", String(64), **now),
        UniqueConstraint("channel_id", "message_ts", name="uq_rated_posts_message"),
    )
    reaction_events = Table(
        "reaction_events",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(128), nullable=False, unique=True),
        Column("comparison_id", Integer, ForeignKey("comparisons.id", ondelete="CASCADE")),
        Column("rated_post_id", Integer, ForeignKey("rated_posts.id", ondelete="CASCADE")),
        Column("channel_id", String(64), **now),
        Column("message_ts", String(32), **now),
        Column("voter_id", String(64), **now),
        Column("choice", String(32), **now),
        Column("added", Boolean, **now),
        Column("event_ts", String(32), **now),  # Slack's "1700000000.000100": ordered exactly
        Column("received_at", DateTime(timezone=True), **now),
        Column("hidden", Boolean, **now),  # were the names hidden when this event arrived?
    )
    votes = Table(
        "votes",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("comparison_id", Integer, ForeignKey("comparisons.id", ondelete="CASCADE")),
        Column("rated_post_id", Integer, ForeignKey("rated_posts.id", ondelete="CASCADE")),
        Column("voter_id", String(64), **now),
        Column("choice", String(32), **now),
        Column("cast_at", DateTime(timezone=True), **now),
        Column("hidden", Boolean, **now),
        UniqueConstraint("comparison_id", "voter_id", name="uq_votes_comparison_voter"),
        UniqueConstraint("rated_post_id", "voter_id", name="uq_votes_rated_post_voter"),
    )
    Index("ix_reaction_events_comparison_voter", reaction_events.c.comparison_id, "voter_id")
    Index("ix_reaction_events_rated_post_voter", reaction_events.c.rated_post_id, "voter_id")
    return {t.name: t for t in (generations, comparisons, rated_posts, reaction_events, votes)}


_metadata = MetaData()
_T = _v1_tables(_metadata)  # the live tables the queries use; later migrations amend these
GENERATIONS, COMPARISONS, RATED_POSTS = _T["generations"], _T["comparisons"], _T["rated_posts"]
EVENTS, VOTES = _T["reaction_events"], _T["votes"]
# Migration 2: what the Slack app needs to redraw a comparison when it reveals the models.
COMPARISONS.append_column(Column("details", Text))  # JSON
# Migration 3: one row per job that reached the posting step, so a re-run never posts twice.
DELIVERIES = Table(
    "deliveries",
    _metadata,
    Column("job_key", String(200), primary_key=True),
    Column("state", String(16), nullable=False),  # posting -> posted | told
    Column("channel_id", String(64), nullable=False),
    Column("message_ts", String(32)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
# Migration 4: single pictures uploaded into Slack, until a 👍 / 👎 on them asks which message
# they became (Slack shares uploads asynchronously; looking it up only when someone reacts
# costs one files.info call per rated picture instead of one or more per picture).
UPLOADS = Table(
    "uploads",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("channel_id", String(64), nullable=False),
    Column("file_id", String(64), nullable=False, unique=True),
    Column("provider", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("requester_id", String(64), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("state", String(16), nullable=False),  # pending -> shared | gone
    Column("message_ts", String(32)),
    Index("ix_uploads_channel_state", "channel_id", "state"),
)
# Migration 6: votes on the bot's messages that arrived before the message was registered as a
# comparison or a rated post (the post is in the channel a moment before it is registered, and
# rated posts are registered in batches): kept, and counted when the message is registered.
PENDING_REACTIONS = Table(
    "pending_reactions",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(128), nullable=False, unique=True),
    Column("channel_id", String(64), nullable=False),
    Column("message_ts", String(32), nullable=False),
    Column("voter_id", String(64), nullable=False),
    Column("choice", String(32), nullable=False),
    Column("added", Boolean, nullable=False),
    Column("event_ts", String(32), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_pending_reactions_message", "channel_id", "message_ts"),
    Index("ix_pending_reactions_received", "received_at"),
)
# Migration 7: the job board of several web processes that share no Redis (WEB_CONCURRENCY > 1
# with the embedded runner): which commands were accepted (a repeat is drawn once), which are
# on the way and for whom (the per-person cap), which were cancelled; and button clicks seen
# (state "once", `at` = until when a repeat is ignored). Times are epoch seconds.
JOB_BOARD = Table(
    "job_board",
    _metadata,
    Column("key", String(255), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("counts", Boolean, nullable=False),  # toward the person's cap
    Column("state", String(16), nullable=False),  # active -> done | cancelled; or once
    Column("at", Float, nullable=False),
    Index("ix_job_board_user_state", "user_id", "state"),
    Index("ix_job_board_at", "at"),
)
# Migration 8: what governance needs of each picture: the workspace, what it cost, the prompt
# the model drew (audit), and the pictures by object name (retention deletes them).
GENERATIONS.append_column(Column("team_id", String(64)))
GENERATIONS.append_column(Column("cost_usd", Float))
GENERATIONS.append_column(Column("revised_prompt", Text))
GENERATIONS.append_column(Column("image_refs", Text))  # JSON list: gs://bucket/object, ...
GENERATIONS.append_column(Column("pictures", Integer))  # drawn and kept (uploads have no URL)
# Migration 9: pictures reserved before any provider call, so limits hold across processes
# (one row per job: reserved -> settled with what it really drew and cost, or released), and
# the budget alerts already sent (one row per month and threshold).
SPEND = Table(
    "spend",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_key", String(200), nullable=False, unique=True),
    Column("team_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("channel_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("day", String(10), nullable=False),  # UTC "2026-11-27": the daily limit's day
    Column("month", String(7), nullable=False),  # UTC "2026-11": the budget's month
    Column("pictures", Integer, nullable=False),
    Column("cost_usd", Float, nullable=False),  # the estimate until settled, then the cost
    Column("state", String(16), nullable=False),  # reserved -> settled | released
    Index("ix_spend_user_day", "user_id", "day"),
    Index("ix_spend_month", "month"),
)
BUDGET_ALERTS = Table(
    "budget_alerts",
    _metadata,
    Column("month", String(7), primary_key=True),
    Column("percent", Integer, primary_key=True),
    Column("sent_at", DateTime(timezone=True), nullable=False),
)
# Migration 10: where each picture is and what it came from, so a reply in its thread can edit
# it: `picture` is the first picture's reference (`gs://bucket/object`, a link, or
# `slack-file:F…` for an upload), `thread_ts` the thread an edit was posted in, and the lineage:
# `parent_id` the generation it edits, `parent_picture` the edited picture's reference (also
# for a person's upload, which has no generation).
LINEAGE_COLUMNS = (
    Column("picture", Text),
    Column("thread_ts", String(32)),
    Column("parent_id", Integer),
    Column("parent_picture", Text),
)
for _column in LINEAGE_COLUMNS:
    GENERATIONS.append_column(_column)
Index("ix_generations_channel_thread", GENERATIONS.c.channel_id, GENERATIONS.c.thread_ts)
Index("ix_generations_channel_message", GENERATIONS.c.channel_id, GENERATIONS.c.message_ts)
# Migration 11: each person's own default for a plain `/imagine <prompt>` (chosen in App Home).
PREFERENCES = Table(
    "preferences",
    _metadata,
    Column("user_id", String(64), primary_key=True),
    Column("default_provider", String(64), nullable=False),  # a provider, compare or auto
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
SCHEMA_VERSION = Table(
    "schema_version",
    MetaData(),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(200), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Migration:
    """One schema step. `apply` runs inside the migration transaction, under the lock."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_v1(conn: Connection) -> None:
    metadata = MetaData()
    _v1_tables(metadata)
    metadata.create_all(conn)


def _add_comparison_details(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE comparisons ADD COLUMN details TEXT"))


def _create_deliveries(conn: Connection) -> None:
    DELIVERIES.create(conn)


def _create_uploads(conn: Connection) -> None:
    UPLOADS.create(conn)


def _create_pending_reactions(conn: Connection) -> None:
    PENDING_REACTIONS.create(conn)


def _create_job_board(conn: Connection) -> None:
    JOB_BOARD.create(conn)


def _generations_governance(conn: Connection) -> None:
    for column in ("team_id VARCHAR(64)", "cost_usd FLOAT", "revised_prompt TEXT"):
        conn.execute(text(f"ALTER TABLE generations ADD COLUMN {column}"))
    conn.execute(text("ALTER TABLE generations ADD COLUMN image_refs TEXT"))
    conn.execute(text("ALTER TABLE generations ADD COLUMN pictures INTEGER"))


def _create_spend(conn: Connection) -> None:
    SPEND.create(conn)
    BUDGET_ALERTS.create(conn)


def _add_lineage(conn: Connection) -> None:
    for column in LINEAGE_COLUMNS:
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE generations ADD COLUMN {column.name} {kind}"))
    for index in GENERATIONS.indexes:
        if index.name in ("ix_generations_channel_thread", "ix_generations_channel_message"):
            index.create(conn)


def _create_preferences(conn: Connection) -> None:
    PREFERENCES.create(conn)


def object_ref(url: str) -> str:
    """`gs://bucket/object` for the URL of a Cloud Storage object (signed, V4 or V2, or
    public); any other signed URL loses its signature; anything else is returned as it is."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    signed = "X-Goog-Signature" in query or {"GoogleAccessId", "Signature"} <= set(query)
    host = parts.hostname or ""
    if host.endswith(".storage.googleapis.com"):  # virtual-hosted style
        bucket, name = host.removesuffix(".storage.googleapis.com"), parts.path.lstrip("/")
    elif signed or host == "storage.googleapis.com":  # path style (and emulators)
        bucket, _, name = parts.path.lstrip("/").partition("/")
    else:
        return url
    if bucket and name:
        return f"gs://{bucket}/{unquote(name)}"
    return urlunsplit(parts._replace(query="")) if signed else url


def _kept_by_reference(raw: str) -> str:
    """A comparison's details with every picture URL replaced by its object reference."""
    details = json.loads(raw)
    for key in ("post", "view"):
        post = details.get(key) if isinstance(details, dict) else None
        if not isinstance(post, dict):
            continue
        post["pictures"] = [object_ref(url) for url in post.get("pictures") or []]
        post["originals"] = {
            side: [object_ref(url) for url in urls]
            for side, urls in (post.get("originals") or {}).items()
        }
    return json.dumps(details)


def _details_by_reference(conn: Connection) -> None:
    """Signed URLs (valid 7 days at most, their signatures secrets) out of the details: the
    reveal signs fresh ones from the object names."""
    rows = conn.execute(
        text("SELECT id, details FROM comparisons WHERE details LIKE :signed OR details LIKE :gcs"),
        {"signed": "%Signature%", "gcs": "%storage.googleapis.com%"},
    ).all()
    for row_id, raw in rows:
        kept = _kept_by_reference(raw)
        if kept != raw:
            conn.execute(
                text("UPDATE comparisons SET details = :d WHERE id = :i"), {"d": kept, "i": row_id}
            )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create tables", _create_v1),
    Migration(2, "comparisons.details", _add_comparison_details),
    Migration(3, "deliveries", _create_deliveries),
    Migration(4, "uploads", _create_uploads),
    Migration(5, "comparisons.details by object name", _details_by_reference),
    Migration(6, "pending_reactions", _create_pending_reactions),
    Migration(7, "job_board", _create_job_board),
    Migration(8, "generations: team, cost, revised prompt, object names", _generations_governance),
    Migration(9, "spend and budget_alerts", _create_spend),
    Migration(10, "generations: picture, thread and lineage", _add_lineage),
    Migration(11, "preferences", _create_preferences),
)
