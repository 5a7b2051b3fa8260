"""The job board's rows, for web processes that share a database and no Redis.

Each function runs inside the caller's write transaction (`VoteStore._write`): on SQLite that
is BEGIN IMMEDIATE, so writers take turns; on PostgreSQL, admitting a job first takes a
transaction-scoped advisory lock on its person, so two processes cannot both see room under
the cap and both take a job.
"""

from __future__ import annotations

import zlib

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from bot.votes.schema import JOB_BOARD

ACTIVE, DONE, CANCELLED, ONCE = "active", "done", "cancelled", "once"
ACCEPTED, DUPLICATE, TOO_MANY = "accepted", "duplicate", "too_many"
_USER_LOCK = 0x1A6B_0000  # advisory lock keys: this plus a CRC of the user id


def _insert_ignore(conn: Connection, **values) -> bool:
    """Insert the row unless its key exists; True when this call inserted it."""
    insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    stmt = (
        insert(JOB_BOARD)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(JOB_BOARD.c.key)  # psycopg reports no rowcount for this insert
    )
    return conn.execute(stmt).first() is not None


def admit(
    conn: Connection,
    key: str,
    user_id: str,
    *,
    counts: bool,
    max_per_user: int,
    now: float,
    remember: float,
    stale: float,
) -> str:
    """ACCEPTED, DUPLICATE (the key was seen within `remember` seconds, or is still on the
    way) or TOO_MANY (the person has `max_per_user` counted jobs on the way). A job on the way
    for longer than `stale` seconds (its process died) no longer counts."""
    if conn.dialect.name == "postgresql":
        lock = _USER_LOCK + zlib.crc32(user_id.encode())
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
    horizon = now - max(remember, stale)
    conn.execute(delete(JOB_BOARD).where(JOB_BOARD.c.at < horizon))
    if counts:
        on_the_way = conn.scalar(
            select(func.count())
            .select_from(JOB_BOARD)
            .where(
                JOB_BOARD.c.user_id == user_id,
                JOB_BOARD.c.state == ACTIVE,
                JOB_BOARD.c.counts.is_(True),
                JOB_BOARD.c.at > now - stale,
            )
        )
        if on_the_way >= max_per_user:
            seen = conn.scalar(select(JOB_BOARD.c.key).where(JOB_BOARD.c.key == key))
            return DUPLICATE if seen else TOO_MANY
    row = {"key": key, "user_id": user_id, "counts": counts, "state": ACTIVE, "at": now}
    return ACCEPTED if _insert_ignore(conn, **row) else DUPLICATE


def cancel(conn: Connection, key: str, user_id: str) -> bool:
    stmt = (
        update(JOB_BOARD)
        .where(JOB_BOARD.c.key == key, JOB_BOARD.c.user_id == user_id, JOB_BOARD.c.state == ACTIVE)
        .values(state=CANCELLED)
    )
    return conn.execute(stmt).rowcount == 1


def cancelled(conn: Connection, key: str) -> bool:
    return conn.scalar(select(JOB_BOARD.c.state).where(JOB_BOARD.c.key == key)) == CANCELLED


def finish(conn: Connection, key: str) -> None:
    """Over: no longer on the way, still remembered (a late repeat is a duplicate)."""
    conn.execute(
        update(JOB_BOARD)
        .where(JOB_BOARD.c.key == key, JOB_BOARD.c.state != ONCE)
        .values(state=DONE)
    )


def once(conn: Connection, key: str, *, now: float, seconds: float) -> bool:
    """True the first time `key` is offered within `seconds`."""
    key = f"once:{key}"
    conn.execute(delete(JOB_BOARD).where(JOB_BOARD.c.key == key, JOB_BOARD.c.at <= now))
    return _insert_ignore(conn, key=key, user_id="", counts=False, state=ONCE, at=now + seconds)


def on_the_way(conn: Connection, *, now: float, stale: float) -> int:
    return conn.scalar(
        select(func.count())
        .select_from(JOB_BOARD)
        .where(JOB_BOARD.c.state == ACTIVE, JOB_BOARD.c.at > now - stale)
    )
