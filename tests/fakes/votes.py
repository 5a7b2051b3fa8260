"""Many votes at once, bulk-loaded as `apply_reaction` would have written them (for the
100,000-vote leaderboard test and `bench/leaderboard.py`)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

from bot.votes.db import VoteStore
from bot.votes.schema import COMPARISONS, VOTES

MODELS = (
    {"provider": "imagen", "model": "gemini-image"},
    {"provider": "dalle3", "model": "gpt-image"},
    {"provider": "imagen", "model": "imagen-4"},
)
SKILL = {"gemini-image": 0.6, "gpt-image": 0.5, "imagen-4": 0.35}


def seed_votes(
    store: VoteStore, now: datetime, comparisons: int = 20_000, voters: int = 5, seed: int = 0
) -> int:
    """`comparisons` x `voters` votes from models of known skill; returns the vote count.

    Even comparisons are revealed; odd ones are blind. Channels C0..C6; one minute apart.
    """
    rng = random.Random(seed)
    rows, votes = [], []
    for cid in range(1, comparisons + 1):
        a, b = rng.sample(MODELS, 2)
        rows.append(
            {"id": cid, "created_at": now, "channel_id": f"C{cid % 7}", "message_ts": f"{cid}.0",
             "requester_id": "U1", "prompt": "p", "positions": json.dumps({"A": a, "B": b}),
             "revealed": cid % 2 == 0, "details": "{}"}
        )  # fmt: skip
        p_a = SKILL[a["model"]] / (SKILL[a["model"]] + SKILL[b["model"]])
        for voter in range(voters):
            roll = rng.random()
            choice = "tie" if roll < 0.08 else "both_bad" if roll < 0.12 else None
            choice = choice or ("A" if rng.random() < p_a else "B")
            votes.append(
                {"comparison_id": cid, "voter_id": f"V{voter}", "choice": choice,
                 "cast_at": now - timedelta(minutes=cid), "hidden": cid % 2 == 1}
            )  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(COMPARISONS.insert(), rows)
        conn.execute(VOTES.insert(), votes)
    return len(votes)
