"""`/imagine leaderboard`: the vote store's tallies turned into rating rows.

A vote on a comparison becomes head-to-head outcomes between the models in it: "A" means A's
model beat every other position's model; "tie" and "both_bad" apply to every pair. With two
positions (the usual case) that is exactly one outcome per vote.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations

from bot.votes.db import BOTH_BAD, TIE, PositionsTally, VoteStore
from bot.votes.ratings import (
    DEFAULT_MIN_VOTES,
    DEFAULT_ROUNDS,
    ModelStats,
    Outcome,
    ThumbStats,
    clear_leader,
    model_stats,
    thumbs,
)


@dataclass(frozen=True)
class LeaderboardResult:
    rows: list[ModelStats]  # highest rating first
    thumbs: list[ThumbStats]  # single-provider 👍 / 👎, apart from head-to-head
    head_to_head_votes: int
    thumb_votes: int
    seconds: float  # query + fit + bootstrap
    since: datetime | None
    channel_id: str | None
    blind_only: bool


def outcomes_from_tallies(tallies: list[PositionsTally]) -> list[Outcome]:
    """Per-position vote counts -> pairwise outcomes between model ids."""
    outcomes: list[Outcome] = []
    for tally in tallies:
        models = {pos: ref.model for pos, ref in tally.positions.items()}
        for choice, count in tally.counts.items():
            if choice in models:
                winner = models[choice]
                outcomes.extend(
                    Outcome(winner, loser, "a", count)
                    for pos, loser in models.items()
                    if pos != choice
                )
            elif choice in (TIE, BOTH_BAD):
                outcomes.extend(
                    Outcome(models[p], models[q], choice, count)
                    for p, q in combinations(sorted(models), 2)
                )
    return outcomes


class Leaderboard:
    """Thread-safe (it holds only the shared store)."""

    def __init__(self, store: VoteStore, *, rounds: int = DEFAULT_ROUNDS, seed: int = 0) -> None:
        self._store = store
        self._rounds = rounds
        self._seed = seed

    def compute(
        self,
        since: datetime | None = None,
        channel_id: str | None = None,
        blind_only: bool = False,
        min_votes: int = DEFAULT_MIN_VOTES,
    ) -> LeaderboardResult:
        """Filters: votes cast at or after `since`; comparisons posted in `channel_id`; votes
        cast while the names were hidden (`blind_only`, which leaves no thumbs: single posts
        always show the model)."""
        started = time.perf_counter()
        filters = {"since": since, "channel_id": channel_id, "blind_only": blind_only}
        tallies = self._store.comparison_tallies(**filters)
        thumb_rows = self._store.thumb_tallies(**filters)
        rows = model_stats(
            outcomes_from_tallies(tallies),
            min_votes=min_votes,
            rounds=self._rounds,
            seed=self._seed,
        )
        return LeaderboardResult(
            rows=rows,
            thumbs=thumbs((t.model, t.choice, t.count) for t in thumb_rows),
            head_to_head_votes=sum(sum(t.counts.values()) for t in tallies),
            thumb_votes=sum(t.count for t in thumb_rows),
            seconds=time.perf_counter() - started,
            since=since,
            channel_id=channel_id,
            blind_only=blind_only,
        )

    def favourite(
        self, models: list[str], min_votes: int = DEFAULT_MIN_VOTES
    ) -> tuple[ModelStats, ...]:
        """(leader, runner-up) among `models` when the team's votes show a clear leader (see
        `ratings.clear_leader`), else (). All votes count: blind and revealed alike."""
        rows = model_stats(
            outcomes_from_tallies(self._store.comparison_tallies()),
            min_votes=min_votes,
            rounds=self._rounds,
            seed=self._seed,
        )
        return clear_leader(rows, models)
