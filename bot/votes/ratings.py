"""Bradley-Terry ratings with bootstrap intervals from head-to-head votes. Pure: no I/O.

The model (as Chatbot Arena uses it): P(i beats j) = s_i / (s_i + s_j). Ties and "both bad"
count as half a win for each side in the fit, and are reported separately. Strengths are fitted
by Newton's method on the log-likelihood, vectorised over bootstrap rounds, so a 1000-round
bootstrap of any number of votes takes milliseconds once the votes are counted per pair.

A tiny prior keeps every rating finite: each model is credited with `prior` wins and `prior`
losses against a fixed reference of strength 1. With prior -> 0 this is the plain MLE; with
the default (0.001 games) a model that won every game gets a large but finite rating.

Scale: rating = 1000 + 400 * log10(strength), anchored so the MEAN rating over the fitted models
is exactly 1000 (strengths are only defined up to a common factor; the mean fixes it). Two
ratings 400 apart mean the higher one is expected to win 10 games in 11.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

A, B, TIE, BOTH_BAD = "a", "b", "tie", "both_bad"
RESULTS = (A, B, TIE, BOTH_BAD)
UP, DOWN = "up", "down"
DEFAULT_PRIOR = 1e-3
DEFAULT_ROUNDS = 1000
DEFAULT_MIN_VOTES = 10
_SCALE = 400.0 / math.log(10.0)  # natural-log strength -> rating points
_MAX_STEP = 2.0  # largest Newton step in log-strength: keeps far-off starts from overshooting


@dataclass(frozen=True)
class Outcome:
    """`count` head-to-head votes between two models with one result ("a" = model_a won)."""

    model_a: str
    model_b: str
    result: str
    count: int = 1


@dataclass(frozen=True)
class ModelStats:
    """One leaderboard row. `win_rate` = wins / (wins + losses): ties and both-bad excluded,
    None when the model has no decisive game. `votes` counts head-to-head outcomes involving
    the model (all four results)."""

    model: str
    wins: int
    losses: int
    ties: int
    both_bad: int
    votes: int
    win_rate: float | None
    rating: float
    ci_low: float
    ci_high: float
    provisional: bool


@dataclass(frozen=True)
class ThumbStats:
    """👍 / 👎 on single-provider posts: reported apart from head-to-head votes."""

    model: str
    up: int
    down: int


@dataclass(frozen=True)
class PairTable:
    """Votes counted per unordered pair (i < j): columns i wins, j wins, ties, both bad."""

    models: tuple[str, ...]
    pairs: np.ndarray  # (P, 2) model indices, i < j
    counts: np.ndarray  # (P, 4) int64


def pair_table(outcomes: Iterable[Outcome]) -> PairTable:
    """Aggregate outcomes first so that fitting and resampling never touch single votes."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for o in outcomes:
        if o.result not in RESULTS:
            raise ValueError(f"unknown result {o.result!r}")
        if o.count < 0:
            raise ValueError("an outcome count cannot be negative")
        if o.model_a == o.model_b or o.count == 0:
            continue
        first, second, result = o.model_a, o.model_b, o.result
        if first > second:
            first, second = second, first
            result = {A: B, B: A}.get(result, result)
        totals[(first, second)][RESULTS.index(result)] += o.count
    models = tuple(sorted({m for pair in totals for m in pair}))
    index = {m: k for k, m in enumerate(models)}
    keys = sorted(totals)
    pairs = np.array([(index[a], index[b]) for a, b in keys], dtype=np.int64).reshape(-1, 2)
    counts = np.array([totals[k] for k in keys], dtype=np.int64).reshape(-1, 4)
    return PairTable(models, pairs, counts)


def _fit(
    table: PairTable, counts: np.ndarray, prior: float, start: np.ndarray | None = None
) -> np.ndarray:
    """Log-strengths, shape (R, m), for R count tables of shape (R, P, 4) at once."""
    m, rounds = len(table.models), counts.shape[0]
    incidence = np.zeros((len(table.pairs), m))
    incidence[np.arange(len(table.pairs)), table.pairs[:, 0]] = 1.0
    incidence[np.arange(len(table.pairs)), table.pairs[:, 1]] = -1.0
    wins = counts[:, :, 0] + 0.5 * (counts[:, :, 2] + counts[:, :, 3])  # (R, P) for i
    games = counts.sum(axis=2).astype(float)
    theta = np.zeros((rounds, m)) if start is None else np.array(start, dtype=float)
    eye = np.eye(m)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(theta @ incidence.T)))  # (R, P): P(i beats j)
        grad = (wins - games * p) @ incidence
        weight = games * p * (1.0 - p)
        hess = (incidence.T[None] * weight[:, None, :]) @ incidence  # (R, m, m)
        if prior > 0:
            anchor = 1.0 / (1.0 + np.exp(-theta))
            grad += prior * (1.0 - 2.0 * anchor)
            hess += eye * (2.0 * prior * anchor * (1.0 - anchor))[:, :, None]
        else:  # the plain MLE is shift-invariant: pin the mean (the gradient sums to zero)
            hess += 1.0 / m
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        largest = np.abs(step).max(axis=1, keepdims=True)
        theta += step * np.minimum(1.0, _MAX_STEP / np.maximum(largest, 1e-300))
        if largest.max() < 1e-8:  # log-strength; 1e-8 is 4e-6 rating points
            break
    return theta


def _to_ratings(theta: np.ndarray) -> np.ndarray:
    """Log-strengths -> rating points with the mean rating at exactly 1000."""
    return 1000.0 + _SCALE * (theta - theta.mean(axis=-1, keepdims=True))


def bradley_terry(outcomes: Iterable[Outcome], prior: float = DEFAULT_PRIOR) -> dict[str, float]:
    """Maximum-likelihood (tiny prior) ratings on the Elo scale, mean 1000."""
    table = pair_table(outcomes)
    if not table.models:
        return {}
    theta = _fit(table, table.counts[None], prior)
    return dict(zip(table.models, _to_ratings(theta)[0].tolist(), strict=True))


def bootstrap_intervals(
    table: PairTable,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    prior: float = DEFAULT_PRIOR,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point ratings and percentile-bootstrap bounds, one entry per model of `table`.

    Resampling votes with replacement is a multinomial draw over the (pair, result) cells with
    the observed proportions, so each round costs O(cells), not O(votes).
    """
    point = _fit(table, table.counts[None], prior)
    flat = table.counts.reshape(-1)
    total = int(flat.sum())
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(total, flat / total, size=rounds).reshape(rounds, *table.counts.shape)
    theta = _fit(table, draws, prior, start=np.repeat(point, rounds, axis=0))
    ratings = _to_ratings(theta)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(ratings, [tail, 100.0 - tail], axis=0)
    return _to_ratings(point)[0], low, high


def model_stats(
    outcomes: Iterable[Outcome],
    min_votes: int = DEFAULT_MIN_VOTES,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    prior: float = DEFAULT_PRIOR,
) -> list[ModelStats]:
    """Leaderboard rows sorted by rating (highest first); provisional when votes < min_votes."""
    table = pair_table(outcomes)
    if not table.models:
        return []
    rating, low, high = bootstrap_intervals(table, rounds, seed, prior)
    tallies = np.zeros((len(table.models), 4), dtype=np.int64)  # wins, losses, ties, both bad
    for (i, j), (i_wins, j_wins, ties, both_bad) in zip(table.pairs, table.counts, strict=True):
        tallies[i] += (i_wins, j_wins, ties, both_bad)
        tallies[j] += (j_wins, i_wins, ties, both_bad)
    rows = []
    for k, model in enumerate(table.models):
        wins, losses, ties, both_bad = (int(x) for x in tallies[k])
        votes = wins + losses + ties + both_bad
        rows.append(
            ModelStats(
                model=model,
                wins=wins,
                losses=losses,
                ties=ties,
                both_bad=both_bad,
                votes=votes,
                win_rate=wins / (wins + losses) if wins + losses else None,
                rating=float(rating[k]),
                ci_low=float(low[k]),
                ci_high=float(high[k]),
                provisional=votes < min_votes,
            )
        )
    return sorted(rows, key=lambda r: (-r.rating, r.model))


def clear_leader(rows: Iterable[ModelStats], models: Iterable[str]) -> tuple[ModelStats, ...]:
    """(leader, runner-up) among `models` when the leader is clear, else ().

    Clear: both have their minimum of votes (not provisional; a bootstrap of a handful of
    votes is degenerate) and the leader's 95 % interval lies entirely above every other's."""
    wanted = set(models)
    ranked = sorted((r for r in rows if r.model in wanted), key=lambda r: -r.rating)
    if len(ranked) < 2 or len(ranked) < len(wanted) or any(r.provisional for r in ranked):
        return ()
    leader, others = ranked[0], ranked[1:]
    if all(leader.ci_low > other.ci_high for other in others):
        return (leader, others[0])
    return ()


def thumbs(counts: Iterable[tuple[str, str, int]]) -> list[ThumbStats]:
    """(model, "up"/"down", count) -> per-model thumbs, most 👍 first."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for model, choice, count in counts:
        if choice not in (UP, DOWN):
            raise ValueError(f"unknown thumb {choice!r}")
        totals[model][0 if choice == UP else 1] += count
    rows = [ThumbStats(model, up, down) for model, (up, down) in totals.items()]
    return sorted(rows, key=lambda r: (-r.up, r.down, r.model))
