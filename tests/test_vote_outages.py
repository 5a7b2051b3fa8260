"""The database goes away and comes back: the app as a real process, on SQLite and on
PostgreSQL, votes delivered exactly as Slack delivers them (and redelivers them).

SQLite goes "down" as it really does: another process holds its write lock for longer than
the app waits (`?timeout=1` in DATABASE_URL). PostgreSQL goes down behind a TCP proxy that
closes its port and drops every open connection, then comes back on the same port.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
import urllib.error
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bot.slack.listeners.actions import NOT_NOW
from bot.slack.messages import NOT_VOTABLE
from bot.votes.db import VoteStore, normalise_url
from bot.votes.schema import EVENTS, GENERATIONS
from tests.fakes._http import HANG_UP
from tests.fakes.slack import FakeSlack
from tests.services import TcpProxy, postgres_schema
from tests.slack_harness import (
    AppProcess,
    event_body,
    reaction_added,
    reaction_removed,
    sign,
    slack_env,
)
from tests.worlds import all_fakes

POSITIONS = {
    "A": {"provider": "imagen", "model": "gemini-3.1-flash-image"},
    "B": {"provider": "dalle3", "model": "gpt-image-2"},
}
CHOICES = {"a": "A", "b": "B", "handshake": "tie", "x": "both_bad"}
SLACK_TIMEOUT = 3.0  # Slack waits 3 s for an answer
RETRY_DELAYS = (0.0, 1.0, 3.0)  # Slack: at once, after 1 minute, after 5 minutes (scaled down)


@dataclass
class Database:
    """The app's DATABASE_URL, the test's own store on the same data, and the outage."""

    app_url: str
    store: VoteStore
    down: Callable[[], None]
    up: Callable[[], None]


class SqliteLock:
    """Another process's write transaction on the app's SQLite file (a script, a backup)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def down(self) -> None:
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN EXCLUSIVE")

    def up(self) -> None:
        if self.conn is not None:
            self.conn.execute("COMMIT")
            self.conn.close()
            self.conn = None


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:
    if request.param == "sqlite":
        path = str(tmp_path / "imagine.db")
        store = VoteStore(f"sqlite:///{path}")
        lock = SqliteLock(path)
        try:
            yield Database(f"sqlite:///{path}?timeout=1", store, lock.down, lock.up)
        finally:
            lock.up()
            store.close()
        return
    with postgres_schema() as url:
        server = make_url(normalise_url(url))
        with TcpProxy(server.host or "127.0.0.1", server.port or 5432) as proxy:
            store = VoteStore(url)
            try:
                yield Database(proxy.url(url), store, proxy.cut, proxy.restore)
            finally:
                store.close()


# -- Slack's deliveries ---------------------------------------------------------------------
def deliver_like_slack(app: AppProcess, event: dict, event_id: str) -> list[int | str]:
    """One event as Slack delivers it: answered 2xx within 3 s, or delivered again (up to 3
    times, with X-Slack-Retry-Num, the same event_id). Returns every attempt's outcome."""
    outcomes: list[int | str] = []
    for attempt in range(1 + len(RETRY_DELAYS)):
        if attempt:
            time.sleep(RETRY_DELAYS[attempt - 1])
        body = event_body(event, event_id=event_id)
        headers = {"Content-Type": "application/json", **sign(body)}
        if attempt:
            reason = "http_timeout" if outcomes[-1] == "timeout" else "http_error"
            headers |= {"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": reason}
        try:
            status = app.request("POST", "/slack/events", body, headers, SLACK_TIMEOUT)[0]
        except (TimeoutError, urllib.error.URLError):
            status = "timeout"
        outcomes.append(status)
        if isinstance(status, int) and 200 <= status < 300:
            break
    return outcomes


def reaction_traffic(seed: int, count: int, messages: list[str]) -> list[dict]:
    """Realistic votes: people add and remove voting emoji on the given messages."""
    rng = random.Random(seed)
    present: dict[tuple[str, str], set[str]] = {}
    traffic = []
    for n in range(count):
        ts, voter = rng.choice(messages), f"W{rng.randrange(50)}"
        have = present.setdefault((ts, voter), set())
        if have and rng.random() < 0.3:
            name, added = rng.choice(sorted(have)), False
            have.discard(name)
        else:
            name, added = rng.choice(sorted(CHOICES)), True
            have.add(name)
        traffic.append(
            {"event_id": f"EvO{n:04d}", "ts": ts, "voter": voter, "name": name, "added": added,
             "event_ts": f"1700002000.{n:06d}"}
        )  # fmt: skip
    return traffic


def expected_votes(traffic: list[dict], ts: str) -> dict[str, str]:
    current: dict[str, str] = {}
    for e in sorted(traffic, key=lambda e: Decimal(e["event_ts"])):
        if e["ts"] != ts:
            continue
        if e["added"]:
            current[e["voter"]] = CHOICES[e["name"]]
        elif current.get(e["voter"]) == CHOICES[e["name"]]:
            del current[e["voter"]]
    return current


def scalar(store: VoteStore, query) -> object:
    with store.engine.connect() as conn:
        return conn.execute(query).scalar()


def settle(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)


# -- votes ------------------------------------------------------------------------------------
def test_200_votes_across_a_database_outage_are_each_counted_once(database: Database) -> None:
    store = database.store
    registered, later = "1700001000.000100", "1700001000.000200"
    cid = store.register_comparison("C1", registered, "U1", "a fox", POSITIONS)
    traffic = reaction_traffic(seed=12, count=200, messages=[registered] * 5 + [later])

    def send(item: tuple[int, dict]) -> list[int | str]:
        n, e = item
        time.sleep(max(0.0, started + n * 0.015 - time.monotonic()))  # 200 over 3 seconds
        build = reaction_added if e["added"] else reaction_removed
        event = build(e["voter"], e["name"], "C1", e["ts"])
        event["event_ts"] = e["event_ts"]
        return deliver_like_slack(app, event, e["event_id"])

    with FakeSlack() as slack, AppProcess(slack_env(slack, DATABASE_URL=database.app_url)) as app:
        with ThreadPoolExecutor(24) as pool:
            started = time.monotonic()
            outcomes = pool.map(send, enumerate(traffic))
            time.sleep(0.8)
            database.down()  # mid-burst
            time.sleep(1.5)
            database.up()
            outcomes = list(outcomes)
        # the other comparison is registered after the outage (the post came first)
        later_id = store.register_comparison("C1", later, "U1", "a hare", POSITIONS)
        settle(lambda: store.votes(cid) == expected_votes(traffic, registered))
        assert store.votes(later_id) == expected_votes(traffic, later)
        logs = app.logs()

    failed = [o for o in outcomes if not isinstance(o[-1], int) or o[-1] >= 300]
    assert failed == []  # every event was stored by the time Slack stopped redelivering it
    refused = sum(o[:-1].count(503) + o[:-1].count("timeout") for o in outcomes)
    assert refused >= 10, "the outage was too short to test anything"
    assert sum(len(o) > 1 for o in outcomes) >= 10  # many were redelivered
    assert scalar(store, select(func.count()).select_from(EVENTS)) == 200  # each stored once
    assert "Slack will deliver it again" in logs
    assert "xoxb-" not in logs and "password" not in logs


def test_a_reveal_while_the_database_is_down_gets_a_sentence(database: Database) -> None:
    ts = "1700001000.000300"
    database.store.register_comparison("C1", ts, "U123", "a fox", POSITIONS)
    with FakeSlack() as slack, AppProcess(slack_env(slack, DATABASE_URL=database.app_url)) as app:
        database.down()
        try:
            url = slack.response_url()
            status, _, _ = app.post_action(
                action_id="imagine_reveal", user_id="U123", channel_id="C1", message_ts=ts,
                value="reveal", response_url=url,
            )  # fmt: skip
            assert status == 200
            [reply] = slack.wait_for(lambda: slack.responses_to(url), timeout=15)
        finally:
            database.up()
        assert reply.text == NOT_NOW
        assert slack.calls_to("chat.update") == []
        assert not database.store.comparison_at("C1", ts).revealed  # so it can be asked again


# -- posts while the database is down ---------------------------------------------------------
@pytest.fixture
def drawing_app(database: Database, tmp_path) -> Iterator[tuple]:
    """The app with both providers (each taking 1 s) and a bucket, on `database`."""
    with all_fakes() as fakes:
        fakes.vertex.latency = fakes.openai.latency = 1.0
        env = fakes.env(DATABASE_URL=database.app_url)
        with AppProcess(env, workdir=tmp_path / "app") as app:
            yield fakes.slack, fakes.vertex, app


def test_a_comparison_that_cannot_be_registered_is_not_votable(database, drawing_app) -> None:
    slack, vertex, app = drawing_app
    url = slack.response_url()
    status, body, _ = app.post_command("compare a fox in the rain", response_url=url)
    assert status == 200 and "Comparing 2 models" in body
    slack.wait_for(lambda: vertex.calls(":generateContent"))
    database.down()  # while the models draw
    try:
        [message] = slack.wait_for(lambda: slack.messages("C123"), timeout=20)
        [update] = slack.wait_for(lambda: slack.calls_to("chat.update"), timeout=20)
    finally:
        database.up()
    assert update["ts"] == message["ts"]
    shown = json.dumps(update["blocks"])
    assert "React to vote" not in shown and "imagine_reveal" not in shown
    assert NOT_VOTABLE in shown
    assert "gemini-3.1-flash-image" in shown and "gpt-image-2" in shown  # the models named
    assert any(b["type"] == "image" for b in update["blocks"])  # the pictures stay
    time.sleep(0.5)
    assert slack.calls_to("reactions.add") == []  # no voting reactions
    assert slack.responses_to(url) == []  # nobody is told that something failed
    assert database.store.comparison_at("C123", message["ts"]) is None
    logs = app.logs()
    assert "could not register the comparison" in logs
    assert "X-Goog-Signature" not in logs  # the failed insert's parameters hold object names


def test_an_uploaded_comparison_that_cannot_be_registered_says_so_in_its_thread(
    database, drawing_app, tmp_path
) -> None:
    """Without a bucket the comparison is an upload, which an app cannot edit."""
    slack, vertex, shared = drawing_app
    env = {k: v for k, v in shared.env.items() if k not in ("PORT", "HOME", "PYTHONPATH")}
    with AppProcess({**env, "GCS_BUCKET": ""}, workdir=tmp_path / "uploads") as app:
        url = slack.response_url()
        # the reply is posted but its answer lost: the bot finds it in the thread, posts once
        slack.lose_answer("chat.postMessage", status=HANG_UP)
        app.post_command("compare a paper boat", channel_id="CUP", response_url=url)
        slack.wait_for(lambda: vertex.calls(":generateContent"))
        database.down()
        try:
            message = slack.wait_for(lambda: slack.messages("CUP"), timeout=20)[0]
            [reply] = slack.wait_for(
                lambda: [m for m in slack.messages("CUP") if m.get("thread_ts")], timeout=20
            )
        finally:
            database.up()
    slack.wait_for(lambda: slack.calls_to("conversations.replies"), timeout=15)
    time.sleep(0.5)
    slack.quiesce()
    assert len([m for m in slack.messages("CUP") if m.get("thread_ts")]) == 1
    assert reply["thread_ts"] == message["ts"] and NOT_VOTABLE in reply["text"]
    assert "gemini-3.1-flash-image" in reply["text"] and "gpt-image-2" in reply["text"]
    assert slack.calls_to("reactions.add") == [] and slack.responses_to(url) == []


def test_a_picture_posted_while_the_database_is_down_is_not_reported_as_failed(
    database, drawing_app
) -> None:
    slack, vertex, app = drawing_app
    url = slack.response_url()
    status, _, _ = app.post_command("imagen a lighthouse at night", response_url=url)
    assert status == 200
    slack.wait_for(lambda: vertex.calls(":generateContent"))
    database.down()
    try:
        [message] = slack.wait_for(lambda: slack.messages("C123"), timeout=20)
        time.sleep(2.5)  # the history is written (and fails) a moment after the post
    finally:
        database.up()
    assert "a lighthouse at night" in json.dumps(message)
    assert slack.responses_to(url) == []  # the picture is there: no "something went wrong"
    assert "could not record" in app.logs()
    # and the app carries on once the database is back
    again = slack.response_url()
    app.post_command("imagen a lighthouse at dawn", response_url=again)
    dawn = select(func.count()).select_from(GENERATIONS).where(GENERATIONS.c.prompt.like("%dawn"))
    settle(lambda: scalar(database.store, dawn) == 1)
