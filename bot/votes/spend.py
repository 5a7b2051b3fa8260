"""Pictures and money, reserved before any provider call so that limits hold across processes.

A job reserves its pictures (and their estimated cost) in one serialised transaction that first
counts what the person drew today and what the month has cost: 20 requests at once against a
limit of 3 reserve exactly 3, whether they run on threads, in several workers, on SQLite
(BEGIN IMMEDIATE) or PostgreSQL (a transaction-scoped advisory lock). After drawing, the
reservation is settled with what was really drawn and billed, or released when nothing was
(the provider refused the prompt): a refusal does not count against the person.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.engine import Connection

from bot.votes.db import VoteStore
from bot.votes.schema import BUDGET_ALERTS, GENERATIONS, SPEND

RESERVED, SETTLED, RELEASED = "reserved", "settled", "released"
COUNTED = (RESERVED, SETTLED)
_SPEND_LOCK = 0x1A6A_5E7D  # pg advisory lock held while a reservation counts and inserts


@dataclass(frozen=True)
class Reservation:
    """The outcome of `reserve`: granted, or why not (`reason`: "daily" or "budget")."""

    granted: bool
    reason: str | None = None
    used_today: int = 0  # the person's pictures today, before this job
    spent_month: float = 0.0  # the month's spend, before this job


@dataclass(frozen=True)
class UsageRow:
    key: str  # a user id or a "provider/model"
    pictures: int
    cost_usd: float


def day_and_month(moment: datetime) -> tuple[str, str]:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%Y-%m")


def spend_row(
    job_key: str,
    *,
    team_id: str,
    user_id: str,
    channel_id: str,
    pictures: int,
    cost_usd: float,
    now: datetime,
    state: str = SETTLED,
) -> dict:
    """One job's `spend` row: reserved before drawing, or settled at once when no limit needs
    it counted first (then written in a batch: `bot.votes.db.UsageRecord`)."""
    day, month = day_and_month(now)
    return {
        "job_key": job_key,
        "team_id": team_id,
        "user_id": user_id,
        "channel_id": channel_id,
        "created_at": now,
        "day": day,
        "month": month,
        "pictures": pictures,
        "cost_usd": cost_usd,
        "state": state,
    }


class SpendLedger:
    """The `spend` and `budget_alerts` tables. Thread-safe; one per process."""

    def __init__(self, store: VoteStore) -> None:
        self.store = store

    def _lock(self, conn: Connection) -> None:
        if not self.store.is_sqlite:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SPEND_LOCK})

    def reserve(
        self,
        job_key: str,
        *,
        team_id: str,
        user_id: str,
        channel_id: str,
        pictures: int,
        estimate_usd: float,
        daily_limit: int | None,
        budget_usd: float | None,
        now: datetime,
    ) -> Reservation:
        """Reserve `pictures` for the job unless that passes the person's daily limit or the
        month's budget is spent. The same job reserving again (a queue redelivery) keeps its
        first answer: a granted job is granted again, and nothing is reserved twice."""
        day, month = day_and_month(now)
        with self.store.writing() as conn:
            self._lock(conn)
            state = conn.scalar(select(SPEND.c.state).where(SPEND.c.job_key == job_key))
            if state is not None:
                return Reservation(granted=True)
            used = int(
                conn.scalar(
                    select(func.coalesce(func.sum(SPEND.c.pictures), 0)).where(
                        SPEND.c.user_id == user_id,
                        SPEND.c.day == day,
                        SPEND.c.state.in_(COUNTED),
                    )
                )
            )
            spent = self._month_spend(conn, month)
            if daily_limit is not None and used + pictures > daily_limit:
                return Reservation(False, "daily", used, spent)
            if budget_usd is not None and spent >= budget_usd:
                return Reservation(False, "budget", used, spent)
            conn.execute(
                SPEND.insert().values(
                    spend_row(
                        job_key,
                        team_id=team_id,
                        user_id=user_id,
                        channel_id=channel_id,
                        pictures=pictures,
                        cost_usd=estimate_usd,
                        now=now,
                        state=RESERVED,
                    )
                )
            )
            return Reservation(True, None, used, spent)

    def settle(self, job_key: str, pictures: int, cost_usd: float) -> None:
        """What the job really drew and cost; nothing drawn releases the reservation."""
        state = SETTLED if pictures > 0 else RELEASED
        with self.store.writing() as conn:
            conn.execute(
                update(SPEND)
                .where(SPEND.c.job_key == job_key, SPEND.c.state == RESERVED)
                .values(state=state, pictures=pictures, cost_usd=cost_usd if pictures else 0.0)
            )

    def _month_spend(self, conn: Connection, month: str) -> float:
        return float(
            conn.scalar(
                select(func.coalesce(func.sum(SPEND.c.cost_usd), 0.0)).where(
                    SPEND.c.month == month, SPEND.c.state.in_(COUNTED)
                )
            )
        )

    def month_spend(self, now: datetime) -> float:
        with self.store.reading() as conn:
            return self._month_spend(conn, day_and_month(now)[1])

    def alerts_due(self, now: datetime, budget_usd: float, percents: Iterable[int]) -> list[int]:
        """The thresholds (percent of the budget) the month's settled spend has reached whose
        alert was not sent yet, recorded as sent in the same transaction: each goes out once,
        whichever process notices first."""
        month = day_and_month(now)[1]
        due: list[int] = []
        with self.store.writing() as conn:
            self._lock(conn)
            spent = float(
                conn.scalar(
                    select(func.coalesce(func.sum(SPEND.c.cost_usd), 0.0)).where(
                        SPEND.c.month == month, SPEND.c.state == SETTLED
                    )
                )
            )
            sent = set(
                conn.scalars(select(BUDGET_ALERTS.c.percent).where(BUDGET_ALERTS.c.month == month))
            )
            for percent in sorted(percents):
                if percent not in sent and spent >= budget_usd * percent / 100:
                    conn.execute(
                        BUDGET_ALERTS.insert().values(month=month, percent=percent, sent_at=now)
                    )
                    due.append(percent)
        return due

    def usage(self, now: datetime, *, user_id: str | None = None) -> dict[str, tuple[int, float]]:
        """Pictures and cost {"today": ..., "month": ...}, for one person or everyone."""
        day, month = day_and_month(now)
        counted = SPEND.c.state.in_(COUNTED)
        who = [SPEND.c.user_id == user_id] if user_id else []
        with self.store.reading() as conn:

            def total(*where) -> tuple[int, float]:
                row = conn.execute(
                    select(
                        func.coalesce(func.sum(SPEND.c.pictures), 0),
                        func.coalesce(func.sum(SPEND.c.cost_usd), 0.0),
                    ).where(and_(counted, *who, *where))
                ).one()
                return int(row[0]), float(row[1])

            return {"today": total(SPEND.c.day == day), "month": total(SPEND.c.month == month)}

    def per_user(self, now: datetime) -> list[UsageRow]:
        """This month, per person, most pictures first."""
        month = day_and_month(now)[1]
        with self.store.reading() as conn:
            rows = conn.execute(
                select(SPEND.c.user_id, func.sum(SPEND.c.pictures), func.sum(SPEND.c.cost_usd))
                .where(SPEND.c.month == month, SPEND.c.state.in_(COUNTED))
                .group_by(SPEND.c.user_id)
                .order_by(func.sum(SPEND.c.pictures).desc(), SPEND.c.user_id)
            ).all()
        return [UsageRow(r[0], int(r[1] or 0), float(r[2] or 0.0)) for r in rows]

    def per_model(self, now: datetime) -> list[UsageRow]:
        """This month, per provider/model, from the history (written moments after a post)."""
        start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        pictures = func.coalesce(func.sum(GENERATIONS.c.pictures), 0)
        with self.store.reading() as conn:
            rows = conn.execute(
                select(
                    GENERATIONS.c.provider,
                    GENERATIONS.c.model,
                    pictures,
                    func.coalesce(func.sum(GENERATIONS.c.cost_usd), 0.0),
                )
                .where(GENERATIONS.c.created_at >= start, GENERATIONS.c.pictures > 0)
                .group_by(GENERATIONS.c.provider, GENERATIONS.c.model)
                .order_by(pictures.desc(), GENERATIONS.c.model)
            ).all()
        return [UsageRow(f"{r[0]}/{r[1]}", int(r[2]), float(r[3])) for r in rows]
