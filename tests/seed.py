"""Votes and history written straight into the store an app or the CLI reads."""

from __future__ import annotations

import itertools

from bot.votes.db import ModelRef, VoteStore

_messages = itertools.count(1)


def seed_comparison(
    store: VoteStore, first: ModelRef, second: ModelRef, a_wins: int, b_wins: int
) -> None:
    """One comparison (A = `first`, B = `second`) with `a_wins` votes for A and `b_wins` for
    B, each from a different voter, through the store's own reaction path."""
    n = next(_messages)
    ts = f"1800000000.{n:06d}"
    store.register_comparison("CSEED", ts, "USEED", "seeded", {"A": first, "B": second})
    for i, choice in enumerate(["A"] * a_wins + ["B"] * b_wins):
        store.apply_reaction(f"EvSeed{n}x{i}", "CSEED", ts, f"UV{i}", choice, True, f"{ts}{i}")
