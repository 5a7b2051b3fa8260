"""Several gunicorn worker processes (WEB_CONCURRENCY=3) sharing one PostgreSQL database.

The services are built once, before gunicorn forks: a database connection opened then would
be shared by every worker process, each talking over the same socket at once. A burst of
comparisons and votes spread over the three workers must lose nothing and log no error.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.votes.db import VoteStore
from tests.services import postgres_schema
from tests.slack_harness import (
    AppProcess,
    reaction_added,
    slash_command_body,
)
from tests.worlds import all_fakes

FORM = "application/x-www-form-urlencoded"
COMPARISONS = 12
VOTERS = ("V1", "V2", "V3")
EMOJI = ("a", "b", "handshake")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with postgres_schema() as database_url, all_fakes() as fakes:
        env = fakes.env(DATABASE_URL=database_url, REVEAL_AFTER_VOTES="10", WEB_CONCURRENCY="3")
        workdir = tmp_path_factory.mktemp("three-workers")
        with AppProcess(env, workdir=workdir) as app:
            store = VoteStore(database_url)
            yield fakes.slack, app, store, fakes.openai
            store.close()


def test_three_workers_on_postgresql_lose_no_comparison_and_no_vote(world):
    slack, app, store, _ = world

    def ask(i: int) -> int:
        status, body, _ = app.post_command(
            f"compare a lighthouse number {i}",
            user_id=f"U{i:02d}",
            response_url=slack.response_url(),
        )
        assert "Comparing 2 models" in body, body
        return status

    with ThreadPoolExecutor(COMPARISONS) as pool:
        assert list(pool.map(ask, range(COMPARISONS))) == [200] * COMPARISONS

    def message(i: int) -> dict:
        needle = f"“a lighthouse number {i}”"
        return [m for m in slack.messages("C123") if needle in json.dumps(m, ensure_ascii=False)]

    messages = [slack.wait_for(lambda i=i: message(i), timeout=30)[0] for i in range(COMPARISONS)]
    comparisons = [
        slack.wait_for(lambda m=m: store.comparison_at("C123", m["ts"]), timeout=10)
        for m in messages
    ]
    for m in messages:  # the voting reactions are the last thing a job does
        slack.wait_for(lambda m=m: len(slack.reactions("C123", m["ts"])) == 4, timeout=10)

    def vote(args: tuple[str, str, str]) -> int:
        voter, emoji, ts = args
        return app.post_event(reaction_added(voter, emoji, "C123", ts))[0]

    votes = [(v, e, m["ts"]) for m in messages for v, e in zip(VOTERS, EMOJI, strict=True)]
    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(vote, votes)) == {200}
    for comparison in comparisons:
        slack.wait_for(lambda c=comparison: store.vote_count(c.id) == len(VOTERS), timeout=10)
        assert store.votes(comparison.id) == {"V1": "A", "V2": "B", "V3": "tie"}

    logs = app.logs()
    served_by = {
        line.split("[")[2].split("]")[0] for line in logs.splitlines() if "Booting" in line
    }
    assert len(served_by) == 3, logs  # three worker processes
    for trouble in ("Traceback", "ERROR", "can't change 'autocommit'"):
        assert trouble not in logs, logs


def test_a_command_sent_to_every_worker_is_drawn_once_and_the_cap_counts_all_of_them(world):
    """Without Redis the three workers share their job board through the database: a command
    delivered again (into another worker) is drawn once, and one person's pictures on the way
    are counted across the workers."""
    slack, app, _, openai = world
    openai.generation_delay = 2.0
    try:
        body = slash_command_body("dalle3 a twice-told tale", response_url=slack.response_url())
        signed_at = int(time.time())
        with ThreadPoolExecutor(9) as pool:  # at once, so that every worker gets copies
            copies = list(
                pool.map(lambda _: app.post_signed(body, FORM, timestamp=signed_at), range(9))
            )
        assert [status for status, _, _ in copies] == [200] * 9
        assert sum("Drawing" in text for _, text, _ in copies) == 1

        def ask(i: int) -> str:
            return app.post_command(
                f"dalle3 a hat {i}", user_id="UCAP", response_url=slack.response_url()
            )[1]

        with ThreadPoolExecutor(9) as pool:
            answers = list(pool.map(ask, range(9)))
        assert sum("Drawing" in a for a in answers) == 5  # IMAGINE_MAX_QUEUED_PER_USER
        assert sum("already have 5 pictures on the way" in a for a in answers) == 4

        def posts(prompt: str) -> int:
            return sum(prompt in json.dumps(m) for m in slack.messages("C123"))

        slack.wait_for(lambda: sum(posts(f"a hat {i}") for i in range(9)) == 5, timeout=30)
        slack.quiesce()
        assert posts("a twice-told tale") == 1
    finally:
        openai.generation_delay = 0.0
