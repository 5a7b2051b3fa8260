"""Who may draw, where, and how much: checked by the workflows before any provider call, so
every front end (a command, a button, the command line) obeys the same limits.

- `IMAGINE_ALLOWED_CHANNELS`: Slack conversations the bot draws in (the command line has none).
- `IMAGINE_USER_DAILY_LIMIT`: pictures per person per UTC day; a comparison counts each picture.
- `IMAGINE_MONTHLY_BUDGET_USD`: the calendar month's spend (UTC); once reached, nothing new is
  drawn, and admins are told at 80 % and at 100 %, once each.

The counting is the database's (`bot.votes.spend`): a job reserves its pictures and their
estimated cost, then settles with what was really drawn and billed, or releases them when
nothing was (a refused prompt costs the person nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.config import CHANNEL_ID, GovernanceConfig
from bot.core.jobs import CompareJob, GenerateJob
from bot.generation.pricing import PriceTable
from bot.generation.service import GenerationService
from bot.generation.types import ProviderResult
from bot.votes.db import UsageRecord, VoteStore
from bot.votes.history import HistoryWriter
from bot.votes.spend import SpendLedger, UsageRow, spend_row

log = logging.getLogger("imagine.governance")

ALERT_PERCENTS = (80, 100)


@dataclass(frozen=True)
class LimitRefusal:
    """Why a job is not drawn; a front end renders it (`plain()` is the text version)."""

    reason: str  # "channel", "daily", "budget" or "unavailable"
    allowed_channels: tuple[str, ...] = ()
    limit: int = 0
    used: int = 0
    asked: int = 0
    resets_at: datetime | None = None  # the daily limit's next reset (UTC midnight)
    budget_usd: float = 0.0

    def resets_in(self, now: datetime) -> str:
        """ "in 5 h 12 min": how long until the limit resets."""
        seconds = max(0, int(((self.resets_at or now) - now).total_seconds()))
        hours, minutes = divmod((seconds + 59) // 60, 60)
        return f"in {hours} h {minutes} min" if hours else f"in {minutes} min"

    def plain(self, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        if self.reason == "channel":
            return f"I draw only in {', '.join(self.allowed_channels)}."
        if self.reason == "daily":
            return (
                f"You have drawn {self.used} of your {self.limit} pictures today and this asks "
                f"for {self.asked}; the limit resets at midnight UTC ({self.resets_in(now)})."
            )
        if self.reason == "budget":
            return (
                f"This month's image budget (${self.budget_usd:,.2f}) is spent, so no new "
                "pictures until next month; an admin can raise IMAGINE_MONTHLY_BUDGET_USD."
            )
        return "I can't check the drawing limits right now; please try again in a minute."


@dataclass(frozen=True)
class BudgetAlert:
    percent: int
    spent_usd: float
    budget_usd: float
    month: str  # "2026-11"

    def plain(self) -> str:
        return (
            f"Imagine has spent ${self.spent_usd:,.2f} of this month's ${self.budget_usd:,.2f} "
            f"image budget ({self.percent} %, {self.month})."
            + (" New pictures are refused until next month." if self.percent >= 100 else "")
        )


@dataclass(frozen=True)
class UsageReport:
    """`/imagine usage`: the person's own, and for an admin, the team's."""

    user_id: str
    today: tuple[int, float]  # pictures, USD
    month: tuple[int, float]
    daily_limit: int | None
    admin: bool = False
    per_user: list[UsageRow] = field(default_factory=list)
    per_model: list[UsageRow] = field(default_factory=list)
    team_month: tuple[int, float] = (0, 0.0)
    budget_usd: float | None = None


class Governance:
    """Build once per process; every method is safe from many threads."""

    def __init__(
        self,
        store: VoteStore,
        config: GovernanceConfig,
        admins: frozenset[str],
        prices: PriceTable | None = None,
        *,
        clock=lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = SpendLedger(store)
        self.config = config
        self.admins = admins
        self.prices = prices or PriceTable(config.prices)
        self.clock = clock
        # without a limit nothing waits on the database: usage is written off the jobs' path
        self.enforcing = (
            config.user_daily_limit is not None or config.monthly_budget_usd is not None
        )
        self._usage = HistoryWriter.of(store)

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.admins

    # -- before drawing ------------------------------------------------------------------------
    def admit(
        self, job: GenerateJob | CompareJob, service: GenerationService
    ) -> LimitRefusal | None:
        """None when the job may draw (its pictures are then reserved), else why not."""
        allowed = self.config.allowed_channels
        if allowed and CHANNEL_ID.match(job.channel_id) and job.channel_id not in allowed:
            return LimitRefusal("channel", allowed_channels=tuple(sorted(allowed)))
        if not self.enforcing:
            return None
        pictures = job.request.n * len(job.providers)
        now = self.clock()
        try:
            reservation = self.ledger.reserve(
                job.key,
                team_id=job.team_id,
                user_id=job.user_id,
                channel_id=job.channel_id,
                pictures=pictures,
                estimate_usd=self.estimate(job, service),
                daily_limit=self.config.user_daily_limit,
                budget_usd=self.config.monthly_budget_usd,
                now=now,
            )
        except Exception:
            log.exception("could not reserve pictures request_id=%s", job.request_id)
            return LimitRefusal("unavailable")  # never drawn unchecked
        if reservation.granted:
            return None
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return LimitRefusal(
            reservation.reason or "daily",
            limit=self.config.user_daily_limit or 0,
            used=reservation.used_today,
            asked=pictures,
            resets_at=midnight + timedelta(days=1),
            budget_usd=self.config.monthly_budget_usd or 0.0,
        )

    def estimate(self, job: GenerateJob | CompareJob, service: GenerationService) -> float:
        """What the job should cost, from the per-image prices (unknown models: 0)."""
        total = 0.0
        for name in job.providers:
            provider = service.providers.get(name)
            model = provider.model if provider is not None else ""
            price = self.prices.per_image(name, model or "", job.request.quality, None)
            total += (price or 0.0) * job.request.n
        return round(total, 6)

    # -- after drawing -------------------------------------------------------------------------
    def settle(self, job: GenerateJob | CompareJob, results: Sequence[ProviderResult]) -> list:
        """Record what the job drew and cost (nothing drawn: released); the budget alerts now
        due, each returned once across every process."""
        pictures = sum(len(r.images) for r in results if r.ok)
        cost = round(sum(r.cost_usd or 0.0 for r in results), 6)
        if not self.enforcing:
            if pictures:
                self._record(job, pictures, cost)
            return []
        try:
            self.ledger.settle(job.key, pictures, cost)
            budget = self.config.monthly_budget_usd
            if budget is None or not self.admins or not pictures:
                return []
            now = self.clock()
            due = self.ledger.alerts_due(now, budget, ALERT_PERCENTS)
            if not due:
                return []
            spent = self.ledger.month_spend(now)
        except Exception:
            log.exception("could not settle the pictures request_id=%s", job.request_id)
            return []
        # crossing both at once (a tiny budget) says the 100 % only
        return [BudgetAlert(max(due), spent, budget, now.strftime("%Y-%m"))]

    def _record(self, job: GenerateJob | CompareJob, pictures: int, cost: float) -> None:
        """Usage without limits: the job's settled row, written with many others."""
        row = spend_row(
            job.key,
            team_id=job.team_id,
            user_id=job.user_id,
            channel_id=job.channel_id,
            pictures=pictures,
            cost_usd=cost,
            now=self.clock(),
        )
        self._usage.add(UsageRecord(row))

    def flush(self, timeout: float = 10.0) -> None:
        """At a stop: the usage still being written."""
        if not self._usage.flush(timeout):
            raise TimeoutError("the usage rows were not written in time")

    # -- /imagine usage ------------------------------------------------------------------------
    def usage(self, user_id: str) -> UsageReport:
        now = self.clock()
        own = self.ledger.usage(now, user_id=user_id)
        report = UsageReport(
            user_id, own["today"], own["month"], self.config.user_daily_limit, False
        )
        if not self.is_admin(user_id):
            return report
        team = self.ledger.usage(now)
        return UsageReport(
            user_id,
            own["today"],
            own["month"],
            self.config.user_daily_limit,
            admin=True,
            per_user=self.ledger.per_user(now),
            per_model=self.ledger.per_model(now),
            team_month=team["month"],
            budget_usd=self.config.monthly_budget_usd,
        )
