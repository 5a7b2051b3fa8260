"""Membership: what the bot remembers about the channels it posts in, and how often it asks.

A real slack_sdk client against the fake Slack, which answers slowly here (as Slack does
under load), with many threads posting in one channel at once, as a burst of pictures does.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from slack_sdk import WebClient

from bot.slack.membership import Membership
from tests.fakes._http import Reply
from tests.fakes.slack import DEFAULT_SCOPES, FakeSlack

THREADS = 20


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        fake.latency = 0.3  # every thread arrives while the first call is on its way
        yield fake


def membership(slack: FakeSlack) -> Membership:
    return Membership(WebClient(token=slack.token, base_url=slack.url + "/api/", timeout=5))


def at_once(member: Membership, channel: str) -> list[bool | None]:
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda _: member.ensure(channel), range(THREADS)))


def test_a_burst_in_one_channel_asks_slack_once(slack):
    answers = at_once(membership(slack), "C123")
    assert answers == [True] * THREADS
    assert len(slack.calls_to("conversations.info")) == 1


def test_a_burst_in_a_channel_to_join_joins_once(slack):
    slack.not_member("C777")
    answers = at_once(membership(slack), "C777")
    assert answers == [True] * THREADS
    assert len(slack.calls_to("conversations.info")) == 1
    assert len(slack.calls_to("conversations.join")) == 1
    assert slack.delivers_events_from("C777")


def test_when_slack_does_not_say_the_whole_burst_posts_without_asking_again(slack):
    slack.enqueue(
        Reply(200, {"ok": False, "error": "internal_error"}), path_contains="conversations.info"
    )
    answers = at_once(membership(slack), "C123")
    assert answers == [None] * THREADS  # the posts decide
    assert len(slack.calls_to("conversations.info")) == 1


def test_a_private_channel_is_left_to_the_post_without_a_warning(slack, caplog):
    """conversations.info needs groups:read in a private channel, which the app does not ask
    for: the refusal is expected (the post decides), not a warning every ten minutes."""
    slack.add_channel("CPRIV", private=True)
    assert membership(slack).ensure("CPRIV") is None
    assert [c["channel"] for c in slack.calls_to("conversations.info")] == ["CPRIV"]
    assert "conversations.info failed" not in caplog.text


def test_a_public_channel_the_app_may_not_read_is_a_warning(caplog):
    """Without channels:read (an install that lost it) the bot cannot tell whether to join
    public channels, and votes there may never reach it: that is worth a warning."""
    with FakeSlack(scopes=DEFAULT_SCOPES - {"channels:read"}) as slack:
        assert membership(slack).ensure("C123") is None
    assert "conversations.info failed (missing_scope)" in caplog.text


def test_different_channels_are_asked_about_side_by_side(slack):
    slack.latency = 0.5
    member = membership(slack)
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(member.ensure, ["C123", "C777"]))
    assert answers == [True, True]
    assert time.monotonic() - started < 0.9  # one after the other would take 1 s
    infos = slack.calls_to("conversations.info")
    assert sorted(call["channel"] for call in infos) == ["C123", "C777"]
