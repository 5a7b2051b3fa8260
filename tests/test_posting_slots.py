"""A burst of pictures is posted a few at a time (`IMAGINE_POSTS_AT_ONCE`): every picture
arrives, no more than the slots are in Slack at once, and a picture whose deadline passes
while it waits for a slot is told in one sentence rather than posted late. In process, the
real slack_sdk client against the fake Slack."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.config import Config
from bot.core.jobs import GenerateJob
from bot.core.ports import DeliveryFailed
from bot.generation.types import ImageRequest, ProviderResult, StoredImage
from bot.slack.app import build_web_client
from bot.slack.publisher import SlackPublisher
from tests.fakes.slack import FakeSlack

CHANNEL = "C123"
LATENCY = 0.3  # seconds the fake Slack takes to answer each call


def publisher(slack: FakeSlack, slots: int) -> SlackPublisher:
    config = Config.from_env(
        {
            "SLACK_BOT_TOKEN": slack.token,
            "SLACK_API_URL": slack.url + "/api/",
            "IMAGINE_POSTS_AT_ONCE": str(slots),
        }
    )
    client = build_web_client(config)
    return SlackPublisher(client, config.voting, posts_at_once=config.slack.posts_at_once)


def picture_job(number: int, deadline_in: float = 600.0) -> GenerateJob:
    now = time.time()
    return GenerateJob(
        key=f"command:T1:{number}",
        request_id=f"r{number}",
        team_id="T1",
        channel_id=CHANNEL,
        user_id=f"U{number}",
        response_url=None,
        created_at=now,
        deadline=now + deadline_in,
        providers=("imagen",),
        request=ImageRequest(f"picture {number}"),
    )


def drawn(number: int) -> ProviderResult:
    url = f"https://storage.googleapis.com/bucket/picture-{number}.png"
    return ProviderResult("imagen", model="gemini-image", images=[StoredImage(url)])


def posted_prompts(slack: FakeSlack) -> list[str]:
    return [
        text
        for call in slack.calls("/api/chat.postMessage")
        for text in [str(call.json() or call.form())]
        if "picture " in text
    ]


def test_a_burst_is_posted_a_few_at_a_time_and_all_of_it_arrives():
    with FakeSlack() as slack:
        slack.latency = LATENCY
        slots = publisher(slack, slots=2)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: slots.post_pictures(picture_job(n), drawn(n), 1.0), range(8)))
        posts = sorted(call.at for call in slack.calls("/api/chat.postMessage"))
        assert len(posts) == 8 and len(posted_prompts(slack)) == 8
        # each post holds its slot for at least one answer: at most two begin in any stretch
        # shorter than that (all eight began within milliseconds of each other without slots)
        for i in range(len(posts) - 2):
            assert posts[i + 2] - posts[i] > LATENCY * 0.8


def test_a_picture_whose_deadline_passes_while_it_waits_is_told_not_posted():
    with FakeSlack() as slack:
        slack.latency = LATENCY
        slots = publisher(slack, slots=1)
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(slots.post_pictures, picture_job(1), drawn(1), 1.0)
            time.sleep(0.05)  # the first holds the only slot
            late = pool.submit(slots.post_pictures, picture_job(2, deadline_in=0.1), drawn(2), 1.0)
            first.result(10)
            with pytest.raises(DeliveryFailed, match="could not be posted"):
                late.result(10)
        assert len(slack.calls("/api/chat.postMessage")) == 1  # the first picture only


def test_the_slots_are_a_setting_of_at_least_one():
    assert Config.from_env({}).slack.posts_at_once == 8
    assert Config.from_env({"IMAGINE_POSTS_AT_ONCE": "3"}).slack.posts_at_once == 3
    with pytest.raises(Exception, match="IMAGINE_POSTS_AT_ONCE"):
        Config.from_env({"IMAGINE_POSTS_AT_ONCE": "0"})
