"""A burst of pictures is posted a few at a time (`IMAGINE_POSTS_AT_ONCE`): every picture
arrives, no more than the slots are in Slack at once, and a picture whose deadline passes
while it waits for a slot is told in one sentence, having claimed nothing. In process: the
workflows, the real clients, the fake Slack and the fake Vertex AI."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from bot.config import Config
from bot.core.jobs import GenerateJob
from bot.core.workflows import Workflows
from bot.generation.types import ImageRequest
from bot.slack.app import build_web_client, publisher_factory
from bot.wiring import build_for_slack
from tests.fakes.slack import FakeSlack
from tests.fakes.vertex import FakeVertexAI
from tests.slack_harness import slack_env, vertex_env

CHANNEL = "C123"
LATENCY = 0.3  # seconds the fake Slack takes to answer each call


@contextmanager
def posting_world(tmp_path, slots: int) -> Iterator[tuple[FakeSlack, Workflows]]:
    """A queue worker's workflows (the delivery ledger on) with `slots` posting slots."""
    with FakeSlack() as slack, FakeVertexAI() as vertex:
        config = Config.from_env(
            slack_env(
                slack,
                **vertex_env(vertex),
                DATABASE_URL=f"sqlite:///{tmp_path / 'imagine.db'}",
                IMAGINE_POSTS_AT_ONCE=str(slots),
            )
        )
        services = build_for_slack(config, publisher_factory(config, build_web_client(config)))
        assert services.workflows is not None
        workflows = Workflows(
            services.service,
            services.store,
            services.workflows.publisher,
            config.voting,
            posts_at_once=config.jobs.posts_at_once,
        )
        slack.latency = LATENCY
        try:
            yield slack, workflows
        finally:
            workflows.close()
            services.close()


def picture_job(slack: FakeSlack, number: int, deadline_in: float = 600.0) -> GenerateJob:
    now = time.time()
    return GenerateJob(
        key=f"command:T1:{number}",
        request_id=f"r{number}",
        team_id="T1",
        channel_id=CHANNEL,
        user_id=f"U{number}",
        response_url=slack.response_url(),
        created_at=now,
        deadline=now + deadline_in,
        providers=("imagen",),
        request=ImageRequest(f"picture {number}"),
    )


def test_a_burst_is_posted_a_few_at_a_time_and_all_of_it_arrives(tmp_path):
    with posting_world(tmp_path, slots=2) as (slack, workflows):
        jobs = [picture_job(slack, n) for n in range(6)]
        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(workflows.run, jobs))
        assert outcomes == ["ok"] * 6
        assert sorted(f.title for f in slack.uploaded_files) == sorted(
            f"picture {n}" for n in range(6)
        )
        # a post holds its slot through its calls: at most two posts begin in any stretch
        # shorter than one answer (all six began within milliseconds without slots)
        begun = sorted(call.at for call in slack.calls("/api/files.getUploadURLExternal"))
        assert len(begun) == 6
        for first, third in zip(begun, begun[2:], strict=False):
            assert third - first > LATENCY * 0.8


def test_a_picture_whose_deadline_passes_while_it_waits_is_told_and_claims_nothing(tmp_path):
    with posting_world(tmp_path, slots=1) as (slack, workflows):
        first, late = picture_job(slack, 1), picture_job(slack, 2, deadline_in=1.0)
        holding = threading.Thread(target=workflows.run, args=(first,))
        holding.start()
        # the first holds the only slot for four answers (membership, then the upload's three)
        slack.wait_for(lambda: slack.calls("/api/files.getUploadURLExternal"), timeout=10)
        assert workflows.run(late) == "undelivered"
        holding.join(10)
        assert [f.title for f in slack.uploaded_files] == ["picture 1"]
        [told] = slack.responses_to(late.response_url)
        assert "could not be posted before its deadline" in told.text
        workflows.history.flush()  # the outcomes are written with the history
        assert workflows.store.delivery_state(first.key) == "posted"
        assert workflows.store.delivery_state(late.key) is None  # unclaimed: a re-run posts it


def test_the_slots_are_a_setting_of_at_least_one():
    assert Config.from_env({}).jobs.posts_at_once == 8
    assert Config.from_env({"IMAGINE_POSTS_AT_ONCE": "3"}).jobs.posts_at_once == 3
    with pytest.raises(Exception, match="IMAGINE_POSTS_AT_ONCE"):
        Config.from_env({"IMAGINE_POSTS_AT_ONCE": "0"})
