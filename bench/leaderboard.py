"""The leaderboard with many votes, through the running app.

Bulk-loads N votes into a fresh database, starts the app (HTTP mode, fake Slack), sends
`/imagine leaderboard` several times and prints how long the person waits for the answer,
and how much of it is the ratings computation (query + Bradley-Terry fit + bootstrap).

    python -m bench.leaderboard --votes 100000
    python -m bench.leaderboard --votes 100000 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime

from sqlalchemy import text

from bot.votes.db import VoteStore
from tests.fakes.slack import FakeSlack
from tests.fakes.votes import seed_votes
from tests.slack_harness import AppProcess, slack_env


def run(votes: int, database_url: str | None, repeats: int) -> None:
    url = database_url or f"sqlite:///{tempfile.mkdtemp(prefix='imagine-bench-')}/imagine.db"
    store = VoteStore(url)
    with store.engine.begin() as conn:  # a bench database starts empty
        conn.execute(text("DELETE FROM votes"))
        conn.execute(text("DELETE FROM comparisons"))
    seeded = seed_votes(store, datetime.now(UTC), comparisons=votes // 5)
    with FakeSlack() as slack, AppProcess(slack_env(slack, DATABASE_URL=url)) as app:
        waits, computes = [], []
        for _ in range(repeats):
            response_url = slack.response_url()
            started = time.monotonic()
            app.post_command("leaderboard", response_url=response_url)
            [reply] = slack.wait_for(lambda u=response_url: slack.responses_to(u), timeout=60)
            waits.append(time.monotonic() - started)
            computes.append(float(re.search(r"computed in ([\d.]+) s", str(reply.body))[1]))
    backend = url.split(":")[0]
    print(
        f"{seeded} votes on {backend}: /imagine leaderboard answered in "
        f"p50 {statistics.median(waits):.2f} s, max {max(waits):.2f} s "
        f"(ratings computation p50 {statistics.median(computes):.2f} s) over {repeats} runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=100_000)
    parser.add_argument("--database-url", help="default: a new SQLite file")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    run(args.votes, args.database_url, args.repeats)


if __name__ == "__main__":
    main()
