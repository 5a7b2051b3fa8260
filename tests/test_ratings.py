"""Bradley-Terry ratings: hand-computed cases, a published reference fit, the likelihood
equations against an independent implementation, and the bootstrap's behaviour."""

from __future__ import annotations

import math
import random

import pytest

from bot.votes.ratings import (
    Outcome,
    bootstrap_intervals,
    bradley_terry,
    clear_leader,
    model_stats,
    pair_table,
    thumbs,
)


def elo_gap(ratio: float) -> float:
    return 400 * math.log10(ratio)


# --- hand-computed ----------------------------------------------------------------------------


def test_two_models_three_wins_in_four() -> None:
    # MLE: s_x / s_y = 3 / 1, so the gap is 400 log10 3 = 190.85; mean 1000 -> 1095.4 / 904.6.
    outcomes = [Outcome("x", "y", "a", 3), Outcome("x", "y", "b", 1)]
    exact = bradley_terry(outcomes, prior=0)
    assert exact["x"] - exact["y"] == pytest.approx(elo_gap(3), abs=1e-6)
    assert exact["x"] == pytest.approx(1000 + elo_gap(3) / 2, abs=1e-6)
    ratings = bradley_terry(outcomes)  # the default tiny prior moves it < 0.05 points
    assert round(ratings["x"], 1) == 1095.4 and round(ratings["y"], 1) == 904.6


def test_outcomes_are_symmetric_in_order() -> None:
    forward = bradley_terry([Outcome("x", "y", "a", 3), Outcome("x", "y", "b", 1)])
    backward = bradley_terry([Outcome("y", "x", "b", 3), Outcome("y", "x", "a", 1)])
    assert forward == pytest.approx(backward, abs=1e-9)


def test_three_models_with_strengths_one_two_four() -> None:
    # Counts equal to their expectations under s = (1, 2, 4), so that is the MLE:
    # y beats x 2 of 3 (2/3), z beats y 2 of 3 (4/6), z beats x 4 of 5 (4/5).
    outcomes = [
        Outcome("x", "y", "a", 1),
        Outcome("x", "y", "b", 2),
        Outcome("y", "z", "a", 1),
        Outcome("y", "z", "b", 2),
        Outcome("x", "z", "a", 1),
        Outcome("x", "z", "b", 4),
    ]
    ratings = bradley_terry(outcomes, prior=0)
    # log10 strengths 0, 0.30103, 0.60206; mean 0.30103 -> 1000 -/+ 400 * 0.30103 = 120.41.
    assert ratings["x"] == pytest.approx(879.588, abs=1e-3)
    assert ratings["y"] == pytest.approx(1000.0, abs=1e-6)
    assert ratings["z"] == pytest.approx(1120.412, abs=1e-3)
    assert sum(ratings.values()) / 3 == pytest.approx(1000.0, abs=1e-9)


def test_ties_and_both_bad_count_half_a_win_each() -> None:
    # x: 1 win + half of 2 ties = 2; y: half of 2 ties = 1 -> gap 400 log10 2.
    with_ties = bradley_terry([Outcome("x", "y", "a", 1), Outcome("x", "y", "tie", 2)], prior=0)
    with_bad = bradley_terry([Outcome("x", "y", "a", 1), Outcome("x", "y", "both_bad", 2)], prior=0)
    assert with_ties["x"] - with_ties["y"] == pytest.approx(elo_gap(2), abs=1e-6)
    assert with_bad == pytest.approx(with_ties, abs=1e-9)


def test_a_model_that_won_every_game_gets_a_finite_rating() -> None:
    ratings = bradley_terry([Outcome("x", "y", "a", 4), Outcome("y", "z", "a", 3)])
    assert all(math.isfinite(r) for r in ratings.values())
    assert ratings["x"] > ratings["y"] > ratings["z"]
    assert sum(ratings.values()) / 3 == pytest.approx(1000.0, abs=1e-9)


def test_no_votes_no_ratings() -> None:
    assert bradley_terry([]) == {}
    assert model_stats([]) == []


def test_unknown_results_are_rejected() -> None:
    with pytest.raises(ValueError):
        bradley_terry([Outcome("x", "y", "draw")])


# --- a published reference fit ----------------------------------------------------------------

# Stigler (1994) journal citations as in Agresti, Categorical Data Analysis (2002) p. 448 and
# the BradleyTerry2 R package's `citations` data: row journal is cited by column journal, and
# being cited counts as a win. The published BT abilities (BradleyTerry2 vignette, Biometrika
# as reference, natural-log scale): Comm Statist -2.9491, JASA -0.4796, JRSS-B 0.2690.
JOURNALS = ["Biometrika", "Comm Statist", "JASA", "JRSS-B"]
CITED_BY = [
    [714, 730, 498, 221],
    [33, 425, 68, 17],
    [320, 813, 1072, 142],
    [284, 276, 325, 188],
]
PUBLISHED = {"Comm Statist": -2.9491, "JASA": -0.4796, "JRSS-B": 0.2690}


def citation_outcomes() -> list[Outcome]:
    return [
        Outcome(JOURNALS[i], JOURNALS[j], "a", CITED_BY[i][j])
        for i in range(4)
        for j in range(4)
        if i != j
    ]


def test_reproduces_the_published_citations_fit() -> None:
    ratings = bradley_terry(citation_outcomes(), prior=0)
    to_log = math.log(10) / 400
    for journal, ability in PUBLISHED.items():
        fitted = (ratings[journal] - ratings["Biometrika"]) * to_log
        assert fitted == pytest.approx(ability, abs=5e-5), journal


def zermelo(outcomes: list[Outcome], iterations: int = 20000) -> dict[str, float]:
    """An independent plain-Python fit: Zermelo's / Hunter's MM iteration, no prior."""
    wins: dict[str, float] = {}
    games: dict[tuple[str, str], float] = {}
    for o in outcomes:
        share = {"a": (1.0, 0.0), "b": (0.0, 1.0)}.get(o.result, (0.5, 0.5))
        wins[o.model_a] = wins.get(o.model_a, 0.0) + share[0] * o.count
        wins[o.model_b] = wins.get(o.model_b, 0.0) + share[1] * o.count
        key = tuple(sorted((o.model_a, o.model_b)))
        games[key] = games.get(key, 0.0) + o.count
    strength = dict.fromkeys(wins, 1.0)
    for _ in range(iterations):
        for model in strength:
            denominator = sum(
                n / (strength[a] + strength[b]) for (a, b), n in games.items() if model in (a, b)
            )
            strength[model] = wins[model] / denominator
        scale = math.exp(sum(math.log(s) for s in strength.values()) / len(strength))
        strength = {m: s / scale for m, s in strength.items()}
    return {m: 1000 + 400 * math.log10(s) for m, s in strength.items()}


def random_outcomes(seed: int, models: int, votes: int) -> list[Outcome]:
    rng = random.Random(seed)
    names = [f"m{i}" for i in range(models)]
    truth = {m: rng.gauss(0, 1) for m in names}
    outcomes = []
    for _ in range(votes):
        a, b = rng.sample(names, 2)
        p = 1 / (1 + math.exp(truth[b] - truth[a]))
        roll = rng.random()
        result = "tie" if roll < 0.1 else "a" if roll < 0.1 + 0.9 * p else "b"
        outcomes.append(Outcome(a, b, result))
    return outcomes


def test_fit_satisfies_the_likelihood_equations_and_matches_an_independent_fit() -> None:
    outcomes = random_outcomes(seed=3, models=5, votes=400)
    ratings = bradley_terry(outcomes, prior=0)
    strength = {m: 10 ** ((r - 1000) / 400) for m, r in ratings.items()}
    observed = dict.fromkeys(ratings, 0.0)
    expected = dict.fromkeys(ratings, 0.0)
    for o in outcomes:
        p_a = strength[o.model_a] / (strength[o.model_a] + strength[o.model_b])
        expected[o.model_a] += p_a * o.count
        expected[o.model_b] += (1 - p_a) * o.count
        share = {"a": (1.0, 0.0), "b": (0.0, 1.0)}.get(o.result, (0.5, 0.5))
        observed[o.model_a] += share[0] * o.count
        observed[o.model_b] += share[1] * o.count
    for model in ratings:
        assert expected[model] == pytest.approx(observed[model], abs=1e-6), model
    reference = zermelo(outcomes)
    for model in ratings:
        assert ratings[model] == pytest.approx(reference[model], abs=1e-6), model


# --- bootstrap intervals ----------------------------------------------------------------------


def test_intervals_contain_the_estimate_and_shrink_with_more_votes() -> None:
    small = [Outcome("x", "y", "a", 30), Outcome("x", "y", "b", 20), Outcome("x", "y", "tie", 5)]
    large = [Outcome(o.model_a, o.model_b, o.result, o.count * 20) for o in small]
    widths = []
    for outcomes in (small, large):
        rating, low, high = bootstrap_intervals(pair_table(outcomes), rounds=500, seed=1)
        assert all(lo < r < hi for r, lo, hi in zip(rating, low, high, strict=True))
        widths.append(high[0] - low[0])
    assert widths[1] < widths[0] / 3  # ~sqrt(20) = 4.5 times narrower
    # Sanity of scale: 55 votes at 60/40 give an interval of roughly +-60 points.
    assert 40 < widths[0] < 250


def test_bootstrap_is_deterministic_given_a_seed() -> None:
    table = pair_table(random_outcomes(seed=5, models=4, votes=300))
    first = bootstrap_intervals(table, rounds=200, seed=42)
    again = bootstrap_intervals(table, rounds=200, seed=42)
    other = bootstrap_intervals(table, rounds=200, seed=43)
    for a, b in zip(first, again, strict=True):
        assert a.tolist() == b.tolist()
    assert first[1].tolist() != other[1].tolist()


def test_model_stats_rows() -> None:
    outcomes = [
        Outcome("x", "y", "a", 6),
        Outcome("x", "y", "b", 2),
        Outcome("y", "x", "tie", 1),
        Outcome("x", "y", "both_bad", 3),
        Outcome("y", "z", "a", 2),
    ]
    rows = {r.model: r for r in model_stats(outcomes, min_votes=10, rounds=200)}
    x, y, z = rows["x"], rows["y"], rows["z"]
    assert (x.wins, x.losses, x.ties, x.both_bad, x.votes) == (6, 2, 1, 3, 12)
    assert (y.wins, y.losses, y.ties, y.both_bad, y.votes) == (4, 6, 1, 3, 14)
    assert (z.wins, z.losses, z.ties, z.both_bad, z.votes) == (0, 2, 0, 0, 2)
    assert x.win_rate == pytest.approx(6 / 8)  # ties and both-bad excluded
    assert y.win_rate == pytest.approx(4 / 10)
    assert z.win_rate == 0.0
    assert (x.provisional, y.provisional, z.provisional) == (False, False, True)
    ordered = [r.model for r in model_stats(outcomes, rounds=200)]
    assert ordered == ["x", "y", "z"]
    assert x.ci_low < x.rating < x.ci_high


def test_win_rate_is_none_without_decisive_games() -> None:
    (x, y) = model_stats([Outcome("x", "y", "tie", 3)], rounds=50)
    assert x.win_rate is None and y.win_rate is None
    assert x.rating == pytest.approx(1000.0, abs=1e-9)


def test_thumbs_are_counted_per_model() -> None:
    rows = thumbs([("g", "up", 3), ("o", "down", 2), ("g", "down", 1), ("o", "up", 1)])
    assert [(r.model, r.up, r.down) for r in rows] == [("g", 3, 1), ("o", 1, 2)]
    with pytest.raises(ValueError):
        thumbs([("g", "meh", 1)])


# --- a clear leader (what `auto` acts on) ------------------------------------------------------


def _simulated(p_first_wins: float, votes: int, rng: random.Random) -> list[Outcome]:
    wins = sum(rng.random() < p_first_wins for _ in range(votes))
    return [Outcome("x", "y", "a", wins), Outcome("x", "y", "b", votes - wins)]


def test_equal_models_are_almost_never_called_a_clear_leader() -> None:
    """Non-overlapping 95 % intervals: under equal strength a "leader" should appear far less
    often than 5 % of the time (the test is conservative)."""
    rng = random.Random(7)
    called = sum(
        bool(clear_leader(model_stats(_simulated(0.5, 200, rng), rounds=300, seed=k), "xy"))
        for k in range(100)
    )
    assert called <= 3


def test_a_real_difference_is_found_with_enough_votes() -> None:
    """P(x beats y) = 0.7 (about 147 rating points): 300 votes find it nearly every time."""
    rng = random.Random(11)
    found = [
        clear_leader(model_stats(_simulated(0.7, 300, rng), rounds=300, seed=k), "xy")
        for k in range(40)
    ]
    assert sum(bool(f) for f in found) >= 36
    assert all(f[0].model == "x" and f[1].model == "y" for f in found if f)


def test_interval_coverage_of_the_rating_gap() -> None:
    """The bootstrap's 95 % interval of the winner's rating contains its true value (the gap
    is split evenly around the mean of 1000) in roughly 95 % of simulated samples."""
    rng = random.Random(3)
    p = 0.6
    truth = 1000 + elo_gap(p / (1 - p)) / 2
    covered = 0
    for k in range(120):
        rows = {r.model: r for r in model_stats(_simulated(p, 400, rng), rounds=400, seed=k)}
        covered += rows["x"].ci_low <= truth <= rows["x"].ci_high
    assert 0.88 <= covered / 120 <= 0.99


@pytest.mark.parametrize(
    ("outcomes", "models", "leader"),
    [
        ([Outcome("x", "y", "a", 30), Outcome("x", "y", "b", 5)], "xy", "x"),
        ([Outcome("x", "y", "a", 5), Outcome("x", "y", "b", 30)], "xy", "y"),
        ([Outcome("x", "y", "a", 9)], "xy", None),  # 9 votes: provisional, no verdict
        ([Outcome("x", "y", "a", 18), Outcome("x", "y", "b", 16)], "xy", None),  # overlapping
        ([Outcome("x", "y", "a", 30), Outcome("x", "y", "b", 5)], "xz", None),  # z: no votes
        ([], "xy", None),
    ],
)
def test_clear_leader_table(outcomes, models, leader) -> None:
    found = clear_leader(model_stats(outcomes), models)
    assert (found[0].model if found else None) == leader
