"""The queue end to end, on the machine's Redis and PostgreSQL: `python -m bot serve` only
acknowledges and enqueues, `python -m bot worker` processes draw and post; workers are killed
and stopped mid-flight; a burst runs into fakes that enforce a quota per 10-second window.

Each test gets an empty Redis database and a fresh PostgreSQL schema (tests/services.py).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from tests.fakes._http import WindowQuota
from tests.fakes.openai_images import FakeOpenAIImages
from tests.fakes.slack import FakeSlack
from tests.fakes.vertex import FakeVertexAI, service_account_info
from tests.services import PrivateRedis, TcpProxy, postgres_schema, redis_database
from tests.slack_harness import (
    AppProcess,
    WorkerProcess,
    block_actions_body,
    providers_env,
    slack_env,
    slash_command_body,
)

FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def fakes():
    with (
        FakeSlack() as slack,
        FakeVertexAI() as vertex,
        FakeOpenAIImages(deployments={"img": "gpt-image-2"}) as openai,
    ):
        yield slack, vertex, openai, service_account_info(token_uri=vertex.url + "/token")


@pytest.fixture
def env(fakes):
    slack, vertex, openai, key = fakes
    for fake in (slack, vertex, openai):
        fake.quiesce()
        fake.reset()
    with redis_database() as redis_url, postgres_schema() as database_url:
        yield slack_env(
            slack,
            **providers_env(vertex, openai, key),
            REDIS_URL=redis_url,
            DATABASE_URL=database_url,
            IMAGINE_RETRY_BACKOFF="0.05",
            IMAGINE_WORKER_STOP_WAIT="1",
            IMAGINE_WORKER_THREADS="32",
        )


def send(app: AppProcess, slack: FakeSlack, text: str, user: str = "U123"):
    """A signed /imagine; returns (status, ack text, response_url)."""
    url = slack.response_url()
    status, body, _ = app.post_command(text, user_id=user, response_url=url)
    return status, body, url


def uploaded_prompts(slack: FakeSlack) -> Counter:
    """How many times each picture's prompt reached the channel (titles carry the prompt)."""
    return Counter(f.title for f in slack.uploaded_files)


def errors_told(slack: FakeSlack) -> list[str]:
    return [r.text or "" for r in slack.responses if ":warning:" in (r.text or "")]


def test_the_web_process_only_enqueues_and_a_worker_posts(fakes, env, start_app):
    slack, _, openai, _ = fakes
    web = start_app(env)
    status, body, _ = send(web, slack, "dalle3 a lighthouse at dusk")
    assert status == 200 and "Drawing a picture" in body
    time.sleep(1.0)
    assert not openai.calls("/images/") and not slack.uploaded_files  # nobody draws yet
    worker = start_app(env, cls=WorkerProcess)
    slack.wait_for(lambda: uploaded_prompts(slack)["a lighthouse at dusk"] == 1, timeout=15)
    request_id = json.loads(re.search(r'(\{"event": "command".*)', web.logs()).group(1))[
        "request_id"
    ]
    assert f'"request_id": "{request_id}"' in worker.logs()  # one id from ack to post
    assert '"event": "generation"' not in web.logs()
    done = 'imagine_jobs_total{kind="generate",outcome="ok"} 1.0'
    slack.wait_for(lambda: done in worker.get("/metrics")[1])  # counted as the job ends
    status, metrics, _ = web.get("/metrics")
    assert status == 200 and 'imagine_jobs_accepted_total{kind="generate"} 1.0' in metrics
    assert 'imagine_queue_depth{runner="redis"} 0.0' in metrics


def test_a_worker_killed_mid_flight_loses_nothing_and_doubles_nothing(fakes, env, start_app):
    slack, _, openai, _ = fakes
    openai.generation_delay = 4.0
    web = start_app(env)
    doomed = start_app(env, cls=WorkerProcess)
    prompts = [f"a kite number {i}" for i in range(12)]
    for i, prompt in enumerate(prompts):
        assert send(web, slack, f"dalle3 {prompt}", user=f"U{i:03d}")[0] == 200
    slack.wait_for(lambda: openai.in_flight >= 12, timeout=10)  # all twelve are being drawn
    doomed.kill()  # as an OOM kill would: no goodbye, no requeue
    killed_at = time.monotonic()
    start_app(env, cls=WorkerProcess)
    slack.wait_for(lambda: len(uploaded_prompts(slack)) == 12, timeout=45)
    assert time.monotonic() - killed_at < 30 + 4 + 5  # picked up within 30 s, then drawn
    time.sleep(1.0)
    assert uploaded_prompts(slack) == Counter(dict.fromkeys(prompts, 1))  # each exactly once
    assert not errors_told(slack)
    assert len(openai.calls("/images/generations")) == 24  # the lost twelve drawn again


def test_sigterm_hands_unfinished_jobs_back_at_once(fakes, env, start_app):
    slack, _, openai, _ = fakes
    openai.generation_delay = 6.0
    web = start_app(env)
    stopping = start_app(env, cls=WorkerProcess)
    prompts = [f"a slow boat {i}" for i in range(4)]
    for i, prompt in enumerate(prompts):
        send(web, slack, f"dalle3 {prompt}", user=f"U{i}")
    slack.wait_for(lambda: openai.in_flight == 4, timeout=10)
    stopped_at = time.monotonic()
    assert stopping.stop(timeout=10) == 0
    assert time.monotonic() - stopped_at < 5  # IMAGINE_WORKER_STOP_WAIT=1, far inside 30 s
    assert "4 unfinished jobs handed back" in stopping.logs()
    start_app(env, cls=WorkerProcess)  # the next worker takes them at once
    slack.wait_for(lambda: len(uploaded_prompts(slack)) == 4, timeout=20)
    assert uploaded_prompts(slack) == Counter(dict.fromkeys(prompts, 1))
    assert not errors_told(slack)


def test_sigterm_lets_short_jobs_finish(fakes, env, start_app):
    slack, _, openai, _ = fakes
    openai.generation_delay = 1.5
    web = start_app(env)
    worker = start_app({**env, "IMAGINE_WORKER_STOP_WAIT": "15"}, cls=WorkerProcess)
    for i in range(3):
        send(web, slack, f"dalle3 a quick sketch {i}", user=f"U{i}")
    slack.wait_for(lambda: openai.in_flight == 3, timeout=10)
    assert worker.stop(timeout=20) == 0
    assert len(uploaded_prompts(slack)) == 3  # posted before the process ended
    assert "0 unfinished jobs handed back" in worker.logs()


def test_a_burst_of_60_under_a_quota_is_paced_not_refused(fakes, env, start_app):
    """60 people at once against a quota of 180 a minute, evaluated over 10-second windows
    (30 per window), shared by two workers: every picture arrives, nobody hears "quota"."""
    slack, vertex, _, _ = fakes
    vertex.quota = WindowQuota.per_minute(180)
    env = {**env, "IMAGEN_REQUESTS_PER_MINUTE": "180"}
    web = start_app(env)
    start_app(env, cls=WorkerProcess)
    start_app(env, cls=WorkerProcess)
    started = time.monotonic()
    with ThreadPoolExecutor(60) as pool:
        acks = list(
            pool.map(lambda i: send(web, slack, f"imagen burst {i}", f"U{i:03d}"), range(60))
        )
    assert all(status == 200 for status, _, _ in acks)
    slack.wait_for(lambda: len(uploaded_prompts(slack)) == 60, timeout=60)
    elapsed = time.monotonic() - started
    floor = 59 * 60 / 180  # the last of 60 calls may start 59 intervals after the first
    assert elapsed < 1.5 * floor + 5
    assert vertex.quota.refused <= 5
    assert vertex.quota.max_in_any_window() <= 30
    notes = (":hourglass_flowing_sand: Waiting", ":art: Drawing")  # progress, not failure
    assert all((r.text or "").startswith(notes) for r in slack.responses)


def test_waiting_people_are_served_in_turn_and_can_cancel(fakes, env, start_app):
    slack, vertex, _, _ = fakes
    vertex.quota = WindowQuota.per_minute(30)
    env = {**env, "IMAGEN_REQUESTS_PER_MINUTE": "30"}  # one call every 2 s
    web = start_app(env)
    start_app(env, cls=WorkerProcess)
    alice = {f"alice {i}": send(web, slack, f"imagen alice {i}", "UALICE")[2] for i in range(5)}

    def waiting_notes() -> dict[str, str]:
        """Alice's prompts whose note says they wait, with that note's text."""
        notes = {p: [r.text for r in slack.responses_to(url)] for p, url in alice.items()}
        return {p: texts[0] for p, texts in notes.items() if texts and "Waiting" in texts[0]}

    # One is drawn at once; the worker's threads take the other four in any order, and each
    # note tells its place in line (next, 1, 2 or 3 ahead).
    notes = slack.wait_for(lambda: len(waiting_notes()) == 4 and waiting_notes(), timeout=10)
    _, _, bob = send(web, slack, "imagen bob 0", "UBOB")
    [last] = [p for p, text in notes.items() if "3 ahead of you" in text]
    [note] = [r for r in slack.responses_to(alice[last]) if "ahead" in r.text]
    assert note.body["replace_original"] is True
    [button] = [e for b in note.body["blocks"] if b["type"] == "actions" for e in b["elements"]]
    click_url = slack.response_url()
    click = block_actions_body(
        action_id=button["action_id"],
        value=button["value"],
        user_id="UALICE",
        response_url=click_url,
        is_ephemeral=True,
    )
    signed_at = int(time.time())
    assert web.post_signed(click, FORM, timestamp=signed_at)[0] == 200
    [cancelled] = slack.wait_for(lambda: slack.responses_to(click_url))
    assert "Cancelled" in cancelled.text and cancelled.body["replace_original"] is True
    assert web.post_signed(click, FORM, timestamp=signed_at)[0] == 200  # delivered again
    slack.wait_for(lambda: len(uploaded_prompts(slack)) == 5, timeout=30)
    time.sleep(2.5)
    drawn = [json.loads(c.body)["contents"][0]["parts"][0]["text"] for c in vertex.api_calls()]
    assert last not in drawn and len(drawn) == 5  # cancelled: never drawn
    assert drawn.index("bob 0") <= 2  # served in turn, not behind Alice's five
    bob_notes = [r.text for r in slack.responses_to(bob)]
    assert any("Drawing" in text for text in bob_notes) or not bob_notes
    assert [r.text for r in slack.responses_to(click_url)] == [cancelled.text]  # answered once


def test_the_same_signed_command_twice_draws_once(fakes, env, start_app):
    slack, _, openai, _ = fakes
    web = start_app(env)
    start_app(env, cls=WorkerProcess)
    url = slack.response_url()
    body = slash_command_body("dalle3 a twice-told tale", response_url=url)
    signed_at = int(time.time())
    for _ in range(2):
        assert web.post_signed(body, FORM, timestamp=signed_at)[0] == 200
    slack.wait_for(lambda: uploaded_prompts(slack)["a twice-told tale"], timeout=15)
    assert web.post_signed(body, FORM, timestamp=signed_at)[0] == 200  # after it was posted
    time.sleep(1.5)
    assert uploaded_prompts(slack) == Counter({"a twice-told tale": 1})
    assert len(openai.calls("/images/generations")) == 1 and not slack.responses_to(url)


def test_the_per_person_cap_refuses_with_a_sentence(fakes, env, start_app):
    slack, _, openai, _ = fakes
    openai.generation_delay = 2.0
    env = {**env, "IMAGINE_MAX_QUEUED_PER_USER": "2"}
    web = start_app(env)
    start_app(env, cls=WorkerProcess)
    answers = [send(web, slack, f"dalle3 a hat {i}", "UCAP")[1] for i in range(3)]
    assert "Drawing" in answers[0] and "Drawing" in answers[1]
    assert "already have 2 pictures on the way" in answers[2]
    slack.wait_for(lambda: len(uploaded_prompts(slack)) == 2, timeout=15)
    assert len(openai.calls("/images/generations")) == 2  # the third was never queued
    time.sleep(0.5)  # the jobs end just after their posts
    assert "Drawing" in send(web, slack, "dalle3 a hat 3", "UCAP")[1]  # room again


def test_a_redis_restart_loses_no_job_and_the_app_recovers(fakes, env, start_app, tmp_path):
    """Redis with its append-only file restarts while a picture is being drawn: that picture
    arrives once, a command sent while Redis is down gets a sentence, later ones work."""
    slack, _, openai, _ = fakes
    openai.generation_delay = 3.0
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        env = {**env, "REDIS_URL": server.url}
        web = start_app(env)
        start_app(env, cls=WorkerProcess)
        assert "Drawing" in send(web, slack, "dalle3 drawn across the restart", "U1")[1]
        slack.wait_for(lambda: openai.in_flight == 1, timeout=10)
        server.stop()
        down = send(web, slack, "dalle3 sent while redis is down", "U2")[1]
        assert "queue is unreachable" in down
        server.start()
        slack.wait_for(lambda: uploaded_prompts(slack)["drawn across the restart"], timeout=30)
        assert "Drawing" in send(web, slack, "dalle3 after the restart", "U3")[1]
        slack.wait_for(lambda: uploaded_prompts(slack)["after the restart"], timeout=30)
        time.sleep(2.0)
        assert uploaded_prompts(slack) == Counter(
            {"drawn across the restart": 1, "after the restart": 1}
        )
        assert not errors_told(slack)
    finally:
        server.stop()


def test_a_hung_redis_is_answered_within_slacks_three_seconds(fakes, env, start_app, tmp_path):
    """Redis stops answering (paused: it accepts connections and answers nothing). Commands
    sent meanwhile, more at once than the web process has connections, are each answered
    inside Slack's 3 s with a sentence; once Redis answers again the app carries on, and
    nothing refused is drawn or counts toward a person's cap."""
    import redis

    slack, _, _, _ = fakes
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        env = {**env, "REDIS_URL": server.url, "IMAGINE_REDIS_CONNECTIONS": "4"}
        web = start_app(env)
        start_app(env, cls=WorkerProcess)
        assert "Drawing" in send(web, slack, "dalle3 before the pause", "U1")[1]
        slack.wait_for(lambda: uploaded_prompts(slack)["before the pause"], timeout=30)
        server.pause()
        try:
            with ThreadPoolExecutor(8) as pool:
                answers = list(
                    pool.map(
                        lambda i: web.post_command(f"dalle3 paused {i}", user_id=f"U2{i:02d}"),
                        range(8),
                    )
                )
        finally:
            server.resume()
        for status, text, elapsed in answers:
            assert status == 200 and elapsed < 3.0, (status, elapsed)
            assert "queue is unreachable" in text
        # Redis ran the admissions it had received once it answered again; the web process
        # takes those entries off the board, so the eight people's caps count nothing.
        board = redis.Redis.from_url(server.url)
        users = [f"imagine:jobs:user:U2{i:02d}" for i in range(8)]
        deadline = time.monotonic() + 15
        while any(board.zcard(user) for user in users) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(board.zcard(user) for user in users)
        board.close()
        assert "Drawing" in send(web, slack, "dalle3 after the pause", "U1")[1]
        slack.wait_for(lambda: uploaded_prompts(slack)["after the pause"], timeout=30)
        time.sleep(2.0)
        assert uploaded_prompts(slack) == Counter({"before the pause": 1, "after the pause": 1})
    finally:
        server.resume()
        server.stop()


def test_a_job_stored_after_its_sender_was_told_no_is_never_posted(fakes, env, start_app):
    """Redis takes a job but its answer never arrives (lost on the way back, or sent after
    the web process gave up): the person is told the queue is unreachable, so the picture a
    worker draws later must not appear. The web process records in the delivery ledger that
    the person was told; the worker's run finds it and posts nothing. (The record is written
    once the web process gives up waiting, after 1 s: a picture drawn faster than that could
    still be posted; no image model is that fast.)"""
    slack, _, openai, _ = fakes
    openai.generation_delay = 2.0
    redis_url = urlsplit(env["REDIS_URL"])
    with TcpProxy(redis_url.hostname or "127.0.0.1", redis_url.port or 6379) as proxy:
        env = {**env, "REDIS_URL": redis_url._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()}
        web = start_app(env)
        start_app(env, cls=WorkerProcess)
        assert "Drawing" in send(web, slack, "dalle3 before the loss", "U1")[1]
        slack.wait_for(lambda: uploaded_prompts(slack)["before the loss"], timeout=30)
        proxy.lose_replies(b"enqueue")  # Dramatiq's script, as the web process sends a job
        status, text, elapsed = web.post_command("dalle3 lost answer", user_id="U2")
        assert status == 200 and elapsed < 3.0 and "queue is unreachable" in text
        drawn = lambda: any(b"lost answer" in c.body for c in openai.calls("/images/"))  # noqa: E731
        slack.wait_for(drawn, timeout=30)  # the job was stored, and a worker ran it
        assert "Drawing" in send(web, slack, "dalle3 after the loss", "U1")[1]
        slack.wait_for(lambda: uploaded_prompts(slack)["after the loss"], timeout=30)
        time.sleep(1.0)
    assert uploaded_prompts(slack) == Counter({"before the loss": 1, "after the loss": 1})
    assert not any("lost answer" in (r.text or "") for r in slack.responses)
