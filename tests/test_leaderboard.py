"""The leaderboard query on both backends: filters that change the answer, thumbs, and
100,000 votes answered in under 2 s (run with -s to see the figure)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.votes.db import ModelRef, PositionsTally, VoteStore
from bot.votes.leaderboard import Leaderboard, outcomes_from_tallies
from bot.votes.ratings import Outcome
from tests.fakes.votes import seed_votes
from tests.test_votes_db import backend_url  # noqa: F401  (fixture: SQLite and PostgreSQL)

G = {"provider": "imagen", "model": "gemini-image"}
O = {"provider": "dalle3", "model": "gpt-image"}  # noqa: E741
NOW = datetime.now(UTC)
_ids = itertools.count()


@pytest.fixture
def store(backend_url: str) -> Iterator[VoteStore]:  # noqa: F811
    vote_store = VoteStore(backend_url)
    yield vote_store
    vote_store.close()


def cast(
    store: VoteStore,
    channel: str,
    ts: str,
    voters: range,
    choice: str,
    received_at: datetime | None = None,
) -> None:
    """Each voter reacts once, through the store's real reaction path."""
    for voter in voters:
        n = next(_ids)
        change = store.apply_reaction(
            f"Ev{n}", channel, ts, f"V{voter}", choice, True, f"1700000000.{n:06d}",
            received_at=received_at,
        )  # fmt: skip
        assert change is not None and change.choice == choice


def ratings(result) -> dict[str, float]:
    return {row.model: row.rating for row in result.rows}


def test_votes_become_rows_with_positions_mapped_to_models(store: VoteStore) -> None:
    store.register_comparison("C1", "1.0", "U1", "p", {"A": G, "B": O})
    store.register_comparison("C1", "2.0", "U1", "p", {"A": O, "B": G})  # swapped sides
    cast(store, "C1", "1.0", range(0, 4), "A")  # gemini wins 4
    cast(store, "C1", "2.0", range(0, 2), "B")  # gemini wins 2 more (B is gemini here)
    cast(store, "C1", "2.0", range(2, 4), "A")  # gpt wins 2
    cast(store, "C1", "1.0", range(4, 5), "tie")
    cast(store, "C1", "2.0", range(4, 6), "both_bad")
    result = Leaderboard(store, rounds=200).compute(min_votes=10)
    g, o = result.rows
    assert (g.model, o.model) == ("gemini-image", "gpt-image")
    assert (g.wins, g.losses, g.ties, g.both_bad, g.votes) == (6, 2, 1, 2, 11)
    assert (o.wins, o.losses, o.ties, o.both_bad, o.votes) == (2, 6, 1, 2, 11)
    assert result.head_to_head_votes == 11
    assert not g.provisional and result.seconds > 0
    assert Leaderboard(store, rounds=200).compute(min_votes=12).rows[0].provisional


def test_blind_filter_keeps_only_votes_cast_while_names_were_hidden(store: VoteStore) -> None:
    cid = store.register_comparison("C1", "1.0", "U1", "p", {"A": G, "B": O})
    cast(store, "C1", "1.0", range(0, 6), "A")  # blind: gemini
    assert store.mark_revealed(cid)
    cast(store, "C1", "1.0", range(6, 16), "B")  # after the reveal: gpt, more of them
    board = Leaderboard(store, rounds=200)
    everyone = board.compute()
    assert ratings(everyone)["gpt-image"] > ratings(everyone)["gemini-image"]
    blind = board.compute(blind_only=True)
    assert ratings(blind)["gemini-image"] > ratings(blind)["gpt-image"]
    assert blind.head_to_head_votes == 6 and blind.blind_only


def test_since_filter_keeps_recent_votes(store: VoteStore) -> None:
    store.register_comparison("C1", "1.0", "U1", "p", {"A": G, "B": O})
    cast(store, "C1", "1.0", range(0, 8), "A", received_at=NOW - timedelta(days=60))
    cast(store, "C1", "1.0", range(8, 11), "B", received_at=NOW - timedelta(days=2))
    board = Leaderboard(store, rounds=200)
    assert board.compute().rows[0].model == "gemini-image"
    recent = board.compute(since=NOW - timedelta(days=30))
    assert recent.rows[0].model == "gpt-image" and recent.head_to_head_votes == 3
    assert recent.rows[0].wins == 3 and recent.rows[1].wins == 0


def test_here_filter_keeps_this_channels_comparisons(store: VoteStore) -> None:
    store.register_comparison("C1", "1.0", "U1", "p", {"A": G, "B": O})
    store.register_comparison("C2", "1.0", "U1", "p", {"A": O, "B": G})
    cast(store, "C1", "1.0", range(0, 5), "A")  # gemini in C1
    cast(store, "C2", "1.0", range(0, 8), "A")  # gpt in C2 (A is gpt there)
    board = Leaderboard(store, rounds=200)
    assert board.compute().rows[0].model == "gpt-image"
    here = board.compute(channel_id="C1")
    assert here.rows[0].model == "gemini-image" and here.head_to_head_votes == 5
    assert board.compute(channel_id="C3").rows == []


def test_thumbs_are_separate_and_filtered(store: VoteStore) -> None:
    store.register_comparison("C1", "1.0", "U1", "p", {"A": G, "B": O})
    cast(store, "C1", "1.0", range(0, 3), "A")
    store.register_rated_post("C1", "5.0", "imagen", "gemini-image", "U1")
    store.register_rated_post("C2", "6.0", "dalle3", "gpt-image", "U1")
    cast(store, "C1", "5.0", range(0, 4), "up")
    cast(store, "C1", "5.0", range(4, 5), "down")
    cast(store, "C2", "6.0", range(0, 2), "down")
    board = Leaderboard(store, rounds=100)
    result = board.compute()
    assert [(t.model, t.up, t.down) for t in result.thumbs] == [
        ("gemini-image", 4, 1),
        ("gpt-image", 0, 2),
    ]
    assert result.thumb_votes == 7 and result.head_to_head_votes == 3
    assert sum(r.votes for r in result.rows) == 6  # thumbs never enter the head-to-head rows
    assert [t.model for t in board.compute(channel_id="C2").thumbs] == ["gpt-image"]
    assert board.compute(blind_only=True).thumbs == []  # single posts always show the name


def test_three_way_comparisons_become_pairwise_outcomes() -> None:
    h = ModelRef("other", "third-model")
    tally = PositionsTally({"A": ModelRef(**G), "B": ModelRef(**O), "C": h}, {"B": 2, "tie": 1})
    outcomes = sorted(outcomes_from_tallies([tally]), key=repr)
    assert outcomes == sorted(
        [
            Outcome("gpt-image", "gemini-image", "a", 2),
            Outcome("gpt-image", "third-model", "a", 2),
            Outcome("gemini-image", "gpt-image", "tie", 1),
            Outcome("gemini-image", "third-model", "tie", 1),
            Outcome("gpt-image", "third-model", "tie", 1),
        ],
        key=repr,
    )


def test_100k_votes_answer_in_under_2_seconds(store: VoteStore) -> None:
    assert seed_votes(store, NOW) == 100_000
    result = Leaderboard(store).compute()
    print(
        f"\n{store.url.split(':')[0]}: leaderboard of {result.head_to_head_votes} votes "
        f"(query + fit + {1000}-round bootstrap) in {result.seconds:.3f} s"
    )
    assert result.head_to_head_votes == 100_000
    assert [r.model for r in result.rows] == ["gemini-image", "gpt-image", "imagen-4"]
    assert all(r.ci_low < r.rating < r.ci_high for r in result.rows)
    assert result.seconds < 2.0
    filtered = Leaderboard(store).compute(
        since=NOW - timedelta(days=7), channel_id="C3", blind_only=True
    )
    assert 0 < filtered.head_to_head_votes < 100_000
    assert filtered.seconds < 2.0


def _positions(a: dict, b: dict) -> str:
    import json

    return json.dumps({"A": a, "B": b}, sort_keys=True)
