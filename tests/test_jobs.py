"""The application core: jobs as data, the provider choice, the job boards (in memory and on a
real Redis), the progress note, and the workflows' exactly-once delivery, run in process
against the fake Slack and the fake Vertex AI."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace

import pytest

from bot.config import Config, RetryConfig
from bot.core.choice import ProviderChoice
from bot.core.jobs import (
    CompareJob,
    GenerateJob,
    LeaderboardJob,
    UsageJob,
    job_from_payload,
    job_to_payload,
)
from bot.core.ports import Waiting
from bot.core.progress import MAX_NOTES, JobProgress
from bot.core.runner import Admission, DatabaseJobBoard, JobBoard, LocalJobBoard
from bot.generation.pacing import Turn, current_turn
from bot.generation.retry import next_wait
from bot.generation.service import GenerationService
from bot.generation.types import ConfigurationError, ImageRequest, InvalidRequestError
from bot.slack.app import build_web_client, publisher_factory
from bot.votes.db import TOLD, VoteStore
from bot.wiring import build_for_slack
from tests.fakes.slack import FakeSlack
from tests.fakes.vertex import FakeVertexAI
from tests.services import postgres_schema, redis_database
from tests.slack_harness import slack_env, vertex_env


def job(kind=GenerateJob, key="k1", user="U1", **fields):
    now = time.time()
    base = {
        "key": key,
        "request_id": "r1",
        "team_id": "T1",
        "channel_id": "C1",
        "user_id": user,
        "response_url": None,
        "created_at": now,
        "deadline": now + 600,
    }
    if kind not in (LeaderboardJob, UsageJob):
        base |= {"providers": ("imagen",), "request": ImageRequest("a red fox", n=2, seed=7)}
    return kind(**{**base, **fields})


# -- jobs are data ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [GenerateJob, CompareJob, LeaderboardJob])
def test_a_job_survives_json_unchanged(kind):
    original = job(kind, thread_ts="1700000000.000100")
    payload = json.loads(json.dumps(job_to_payload(original)))
    assert payload["kind"] == kind.kind
    assert job_from_payload(payload) == original


@pytest.mark.parametrize(
    "payload",
    [{"kind": "paint"}, {**job_to_payload(job()), "client": "live object"}],
)
def test_an_unknown_kind_or_field_is_refused(payload):
    with pytest.raises(ValueError):
        job_from_payload(payload)


# -- one provider choice for every front end -------------------------------------------------
GOOGLE = {"GOOGLE_CLOUD_PROJECT": "p"}
OPENAI = {"OPENAI_API_KEY": "sk-test-key-123456"}


@pytest.mark.parametrize(
    ("env", "named", "compare", "expected"),
    [
        ({**GOOGLE, **OPENAI}, None, False, ("imagen", "dalle3")),  # both: a comparison
        (OPENAI, None, False, ("dalle3",)),  # one configured: that one
        ({**GOOGLE, **OPENAI, "IMAGINE_DEFAULT_PROVIDER": "dall-e"}, None, False, ("dalle3",)),
        ({**GOOGLE, "IMAGINE_DEFAULT_PROVIDER": "compare"}, "gemini", False, ("imagen",)),
        ({**GOOGLE, **OPENAI}, None, True, ("imagen", "dalle3")),
    ],
)
def test_provider_choice(env, named, compare, expected):
    config = Config.from_env(env)
    choice = ProviderChoice(GenerationService.from_config(config), config.default_provider)
    assert choice.choose(named, compare=compare) == expected


@pytest.mark.parametrize(
    ("env", "named", "compare", "error", "words"),
    [
        ({}, None, False, ConfigurationError, "No image provider is configured"),
        (GOOGLE, None, True, ConfigurationError, "two configured providers"),
        ({**GOOGLE, "IMAGINE_DEFAULT_PROVIDER": "compare"}, None, False, ConfigurationError, "two"),
        ({**GOOGLE, "IMAGINE_DEFAULT_PROVIDER": "flux"}, None, False, InvalidRequestError, "flux"),
    ],
)
def test_provider_choice_refusals_say_what_to_do(env, named, compare, error, words):
    config = Config.from_env(env)
    choice = ProviderChoice(GenerationService.from_config(config), config.default_provider)
    with pytest.raises(error) as caught:
        choice.choose(named, compare=compare)
    assert words in caught.value.message


# -- job boards: deduplication, the per-person cap, cancellation -------------------------------
@pytest.fixture(params=["memory", "redis", "sqlite", "postgresql"])
def board(request, tmp_path) -> Iterator[JobBoard]:
    if request.param == "memory":
        yield LocalJobBoard(max_per_user=2)
        return
    if request.param in ("sqlite", "postgresql"):  # several web processes without Redis
        with database_url(request.param, tmp_path) as url:
            store = VoteStore(url)
            yield DatabaseJobBoard(store, max_per_user=2, stale=600)
            store.close()
        return
    with redis_database() as url:
        import redis

        from bot.core.queue import RedisJobBoard

        client = redis.Redis.from_url(url)
        yield RedisJobBoard(client, max_per_user=2)
        client.close()


def test_board_refuses_a_duplicate_and_a_third_picture(board):
    assert board.admit(job(key="a")) is Admission.ACCEPTED
    assert board.admit(job(key="a")) is Admission.DUPLICATE
    assert board.admit(job(key="b")) is Admission.ACCEPTED
    assert board.admit(job(key="c")) is Admission.TOO_MANY
    assert board.admit(job(key="d", user="U2")) is Admission.ACCEPTED  # someone else
    assert board.admit(job(LeaderboardJob, key="e")) is Admission.ACCEPTED  # draws nothing
    assert board.active() == 4
    board.finish(job(key="a"))
    assert board.admit(job(key="c")) is Admission.ACCEPTED  # a slot is free again
    assert board.admit(job(key="a")) is Admission.DUPLICATE  # still the same command


def test_only_the_owner_cancels_and_only_once(board):
    board.admit(job(key="a"))
    assert not board.cancel("a", "U2")
    assert not board.cancelled("a")
    assert board.cancel("a", "U1")
    assert board.cancelled("a")
    assert not board.cancel("a", "U1")
    assert board.admit(job(key="b")) is Admission.ACCEPTED
    assert board.admit(job(key="c")) is Admission.ACCEPTED  # the cancelled one left the cap
    board.finish(job(key="b"))
    assert not board.cancel("b", "U1")  # done: too late


def test_a_click_acts_once_within_its_window(board):
    assert board.once("click:T1:U1:imagine_cancel:k1:1.1", 0.5)
    assert not board.once("click:T1:U1:imagine_cancel:k1:1.1", 0.5)  # again: a repeat
    assert board.once("click:T1:U2:imagine_cancel:k1:1.1", 0.5)  # someone else's click
    with ThreadPoolExecutor(10) as pool:  # delivered to many threads (processes) at once
        firsts = list(pool.map(lambda _: board.once("click:same", 5), range(10)))
    assert firsts.count(True) == 1
    time.sleep(0.6)
    assert board.once("click:T1:U1:imagine_cancel:k1:1.1", 0.5)  # the window has passed


def test_board_admits_exactly_the_cap_under_concurrency(board):
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda i: board.admit(job(key=f"k{i}")), range(20)))
    assert answers.count(Admission.ACCEPTED) == 2
    assert answers.count(Admission.TOO_MANY) == 18


def test_redis_board_forgets_jobs_of_a_dead_worker_after_their_deadline():
    with redis_database() as url:
        import redis

        from bot.core.queue import GRACE, RedisJobBoard

        board = RedisJobBoard(redis.Redis.from_url(url), max_per_user=1)
        stale = time.time() - GRACE - 1  # its worker died long ago, its deadline long past
        assert board.admit(job(key="old", deadline=stale)) is Admission.ACCEPTED
        assert board.admit(job(key="new")) is Admission.ACCEPTED
        assert board.active() == 1


def test_redis_board_takes_a_burst_of_finished_jobs_off_together():
    """Jobs that end in the same moments leave the board in one round trip, not one each; the
    board's count and a stop's flush see them gone."""
    with redis_database() as url:
        import redis

        from bot.core.queue import RedisJobBoard

        class CountingRedis(redis.Redis):
            round_trips = 0

            def pipeline(self, *args, **kwargs):
                CountingRedis.round_trips += 1
                return super().pipeline(*args, **kwargs)

        client = CountingRedis.from_url(url)
        board = RedisJobBoard(client, max_per_user=100)
        jobs = [job(key=f"k{i}", user=f"U{i % 4}") for i in range(40)]
        for each in jobs:
            assert board.admit(each) is Admission.ACCEPTED
        with ThreadPoolExecutor(20) as pool:
            list(pool.map(board.finish_soon, jobs))
        assert board.active() == 0
        assert CountingRedis.round_trips <= 5  # a batch or two, and the count's flush: not 40
        assert board.admit(job(key="k40", user="U0")) is Admission.ACCEPTED
        board.finish_soon(job(key="k40", user="U0"))
        board.flush()  # at a stop
        assert client.zcard("imagine:jobs:all") == 0
        assert client.zcard("imagine:jobs:user:U0") == 0
        client.close()


def test_database_board_forgets_jobs_of_a_dead_process_after_they_go_stale(tmp_path):
    store = VoteStore(f"sqlite:///{tmp_path / 'board.db'}")
    now = [1_000_000.0]
    board = DatabaseJobBoard(store, max_per_user=1, stale=60, clock=lambda: now[0])
    assert board.admit(job(key="old")) is Admission.ACCEPTED  # its process then died
    now[0] += 30
    assert board.admit(job(key="new")) is Admission.TOO_MANY
    now[0] += 31
    assert board.admit(job(key="new")) is Admission.ACCEPTED
    assert board.active() == 1
    now[0] += 600
    assert board.admit(job(key="old")) is Admission.ACCEPTED  # long forgotten: a new command
    store.close()


@contextmanager
def database_url(kind: str, tmp_path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'board.db'}"
    else:
        with postgres_schema() as url:
            yield url


# -- the progress note ---------------------------------------------------------------------
class Notes:
    """A Publisher that keeps the progress notes (only `progress` is called here)."""

    def __init__(self) -> None:
        self.notes: list[Waiting | None] = []

    def progress(self, job, waiting) -> None:
        self.notes.append(waiting)


def test_progress_note_updates_rarely_and_always_says_when_drawing_starts():
    clock = [0.0]
    notes = Notes()
    progress = JobProgress(notes, job(), clock=lambda: clock[0])
    progress.waiting("imagen", 12)
    for ahead in range(11, 5, -1):  # changes within 10 s: no new note
        clock[0] += 1
        progress.waiting("imagen", ahead)
    clock[0] += 10
    progress.waiting("imagen", 3)
    clock[0] += 10
    progress.waiting("imagen", 1)  # the budget keeps one note for "drawing now"
    progress.started("imagen")
    progress.wait_sent()  # notes go out from their own threads, in order
    assert notes.notes == [Waiting({"imagen": 12}), Waiting({"imagen": 3}, update=True), None]
    assert len(notes.notes) <= MAX_NOTES


def test_no_note_at_all_when_nothing_waited():
    notes = Notes()
    progress = JobProgress(notes, job())
    progress.started("imagen")
    progress.wait_sent()
    assert notes.notes == []


def test_a_slow_note_never_holds_up_the_waiting_call():
    """The pacer calls back from the thread that waits for its turn: the note goes out from
    elsewhere, and notes of one job still arrive in order."""

    class SlowNotes(Notes):
        def progress(self, job, waiting) -> None:
            time.sleep(0.3)
            super().progress(job, waiting)

    notes = SlowNotes()
    progress = JobProgress(notes, job())
    started = time.monotonic()
    progress.waiting("imagen", 4)
    progress.started("imagen")
    assert time.monotonic() - started < 0.1
    progress.wait_sent()
    assert notes.notes == [Waiting({"imagen": 4}), None]


# -- the workflows, in process, against the fakes: exactly once ------------------------------
@pytest.fixture
def world(tmp_path):
    """A queue worker's workflows (the delivery ledger is on where jobs can run twice)."""
    with worker_world(tmp_path) as parts:
        yield parts


@contextmanager
def worker_world(tmp_path, **settings: str):
    with FakeSlack() as slack, FakeVertexAI() as vertex, redis_database() as redis_url:
        config = Config.from_env(
            slack_env(
                slack,
                **vertex_env(vertex),
                DATABASE_URL=f"sqlite:///{tmp_path / 'imagine.db'}",
                REDIS_URL=redis_url,
                **settings,
            )
        )
        client = build_web_client(config)
        services = build_for_slack(config, publisher_factory(config, client), worker=True)
        yield slack, vertex, services
        services.close()


def slack_job(slack, **fields):
    return job(response_url=slack.response_url(), **fields)


def test_a_job_run_twice_posts_once(world):
    slack, vertex, services = world
    twice = slack_job(slack, key="command:T1:123.456")
    assert services.workflows.run(twice) == "ok"
    services.workflows.close()  # the outcome is written with the history
    assert services.store.delivery_state(twice.key) == "posted"
    assert services.workflows.run(twice) == "duplicate"  # a queue redelivery, say
    assert len(slack.uploaded_files) == 2  # n=2: one upload of two files, once
    assert not slack.responses_to(twice.response_url)  # and no word about it


def test_a_run_that_died_while_posting_is_told_not_posted_again(world):
    slack, vertex, services = world
    interrupted = slack_job(slack)
    services.store.claim_delivery(interrupted.key, "C1")  # the first run got this far
    assert services.workflows.run(interrupted) == "interrupted"
    [reply] = slack.responses_to(interrupted.response_url)
    assert "may not have arrived" in reply.text and "a red fox" in reply.text
    assert not slack.uploaded_files  # drawn again, but never posted twice
    services.workflows.close()
    assert services.store.delivery_state(interrupted.key) == TOLD


def test_a_job_whose_person_was_told_no_posts_nothing_and_says_nothing(world):
    slack, vertex, services = world
    disowned = slack_job(slack)
    services.store.claim_delivery(disowned.key, "C1", TOLD)  # its hand-over seemed to fail
    assert services.workflows.run(disowned) == "duplicate"
    assert not slack.uploaded_files and not slack.responses_to(disowned.response_url)
    assert services.store.delivery_state(disowned.key) == TOLD


@pytest.mark.parametrize("kind", [LeaderboardJob, UsageJob])
def test_figures_are_shown_once_and_not_to_a_person_told_no(world, kind):
    """A leaderboard or usage request is not drawn, but it is shown: shown once, and not at
    all to a person who was told its hand-over failed; a run that died while showing it
    shows it again."""
    slack, _, services = world
    shown = slack_job(slack, kind=kind, key="figures-once")
    assert services.workflows.run(shown) == "ok"
    services.workflows.close()  # the outcome is written with the history
    assert services.workflows.run(shown) == "duplicate"  # a queue redelivery, say
    assert len(slack.responses_to(shown.response_url)) == 1
    disowned = slack_job(slack, kind=kind, key="figures-told-no")
    services.store.claim_delivery(disowned.key, "C1", TOLD)
    assert services.workflows.run(disowned) == "duplicate"
    assert not slack.responses_to(disowned.response_url)
    interrupted = slack_job(slack, kind=kind, key="figures-interrupted")
    services.store.claim_delivery(interrupted.key, "C1")  # the first run got this far
    assert services.workflows.run(interrupted) == "ok"
    assert len(slack.responses_to(interrupted.response_url)) == 1
    services.workflows.close()
    assert services.store.delivery_state(shown.key) == "posted"
    assert services.store.delivery_state(disowned.key) == TOLD


def test_a_job_past_its_deadline_is_given_up_with_a_sentence(world):
    slack, vertex, services = world
    late = slack_job(slack, created_at=time.time() - 700, deadline=time.time() - 100)
    assert services.workflows.run(late) == "expired"
    [reply] = slack.responses_to(late.response_url)
    assert "could not be drawn within 10 minutes" in reply.text
    assert not vertex.api_calls() and not slack.uploaded_files


def test_a_cancelled_job_draws_nothing(tmp_path):
    # Cancel is on the note of a job that waited for its quota: the provider is paced
    with worker_world(tmp_path, IMAGEN_REQUESTS_PER_MINUTE="600") as (slack, vertex, services):
        cancelled = slack_job(slack)
        assert services.board.admit(cancelled) is Admission.ACCEPTED
        assert services.board.cancel(cancelled.key, cancelled.user_id)
        assert services.workflows.run(cancelled) == "cancelled"
        assert not vertex.api_calls() and not slack.uploaded_files
        assert services.board.active() == 0


def test_an_unpaced_job_does_not_ask_the_board_whether_it_was_cancelled(world):
    # no quota: no job ever waits, so no Cancel button exists, and the board is not asked
    slack, vertex, services = world
    drawn = slack_job(slack)
    assert services.board.admit(drawn) is Admission.ACCEPTED
    assert services.board.cancel(drawn.key, drawn.user_id)  # only a paced job can be
    assert services.workflows.run(drawn) == "ok"
    assert vertex.api_calls() and slack.uploaded_files


def test_when_all_retries_crashed_the_person_hears_once(world):
    slack, _, services = world
    crashed = slack_job(slack)
    services.workflows.give_up(crashed)
    services.workflows.close()
    services.workflows.give_up(replace(crashed))  # the queue's notice, delivered twice
    [reply] = slack.responses_to(crashed.response_url)
    assert "Something went wrong" in reply.text
    assert services.store.delivery_state(crashed.key) == TOLD
    assert services.store.delivery_state("never-seen") is None


# -- 429s within a job: retried until its deadline ----------------------------------------------
@pytest.mark.parametrize(
    ("remaining", "retry_after", "expected"),
    [
        (60.0, None, "backoff"),  # our own jittered backoff
        (60.0, 20.0, 20.0),  # the provider said when
        (10.0, 20.0, None),  # ... and that is after the deadline: say so now
        (2.0, None, (0, 1.5)),  # the backoff is cut so one last try starts before the deadline
        (0.3, None, None),  # too late for another try
    ],
)
def test_a_refused_call_in_a_job_is_retried_until_the_deadline(remaining, retry_after, expected):
    config = RetryConfig(max_retries=2, backoff=1.0, max_wait=30.0)
    token = current_turn.set(Turn(user="U1", deadline=time.time() + remaining))
    try:
        wait = next_wait(9, retry_after, config, throttled=True)  # long past max_retries
    finally:
        current_turn.reset(token)
    if expected == "backoff":
        assert 15.0 <= wait <= 30.0  # 2**9 s, capped at max_wait, jittered down to half
    elif isinstance(expected, tuple):
        assert expected[0] < wait <= expected[1]
    else:
        assert wait == expected
    assert next_wait(9, None, config) is None  # outside a job: max_retries still holds
