"""A post that must appear once: chat.postMessage has no idempotency key, and Slack's edge can
answer 5xx after the post went through. The real slack_sdk client against the fake Slack."""

from __future__ import annotations

import time

import pytest
from slack_sdk.errors import SlackApiError

from bot.config import Config
from bot.slack.app import build_web_client
from bot.slack.delivery import Delivery
from bot.slack.retry import SlackWebClient, retry_handlers, within
from tests.fakes._http import HANG_UP
from tests.fakes.slack import FakeSlack
from tests.slack_harness import slack_env

SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "a lighthouse"}}
MESSAGE = {"text": "a lighthouse", "blocks": [SECTION]}


@pytest.fixture(scope="module")
def shared_slack():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def slack(shared_slack: FakeSlack) -> FakeSlack:
    shared_slack.reset()
    return shared_slack


@pytest.fixture
def delivery(slack: FakeSlack) -> Delivery:
    """The app's own client (its retry policy), with a short backoff."""
    config = Config.from_env(slack_env(slack, IMAGINE_RETRY_BACKOFF="0.1"))
    return Delivery(build_web_client(config))


def ours(slack: FakeSlack, channel: str) -> list[dict]:
    return [m for m in slack.messages(channel) if m.get("user") == slack.bot_user_id]


@pytest.mark.parametrize("status", [500, 503, 504])
def test_a_post_whose_answer_was_lost_is_found_not_posted_again(slack, delivery, status, caplog):
    slack.lose_answer("chat.postMessage", status=status)
    ts = delivery.post_message("C123", dict(MESSAGE), once="tag-1")
    [posted] = ours(slack, "C123")
    assert posted["ts"] == ts and posted["text"] == "a lighthouse"
    assert len(slack.calls_to("chat.postMessage")) == 1
    [read] = slack.calls_to("conversations.history")
    assert read["channel"] == "C123" and read["include_all_metadata"] in (True, "1", "true")
    assert "a post that had gone through" in caplog.text


def test_a_post_whose_connection_was_lost_is_found_not_posted_again(slack, delivery, caplog):
    """The connection closed after the post was made and before its answer: slack_sdk would
    send it again at once; it is looked for instead."""
    slack.lose_answer("chat.postMessage", status=HANG_UP)
    ts = delivery.post_message("C123", dict(MESSAGE), once="tag-lost")
    assert [m["ts"] for m in ours(slack, "C123")] == [ts]
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert "answer to a post was lost (RemoteDisconnected)" in caplog.text


def test_a_post_answered_after_the_clients_timeout_is_found_not_posted_again(slack, caplog):
    """The client gave up waiting (its timeout) while Slack posted: before, the person was
    told the picture could not be posted; it is found in the channel instead."""
    client = SlackWebClient(
        token=slack.token,
        base_url=slack.url + "/api/",
        timeout=1,
        retry_handlers=retry_handlers(0.1, 30),
    )
    slack.answer_late("chat.postMessage", seconds=3)
    ts = Delivery(client).post_message("C123", dict(MESSAGE), once="tag-late")
    assert [m["ts"] for m in ours(slack, "C123")] == [ts]
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert "answer to a post was lost (TimeoutError)" in caplog.text


def test_an_untagged_post_whose_connection_was_lost_is_retried_once(slack, delivery):
    """What slack_sdk does, and still does for a post not tagged (a budget alert): once."""
    slack.lose_answer("chat.postMessage", status=HANG_UP)
    delivery.post_message("C123", dict(MESSAGE))
    assert len(ours(slack, "C123")) == 2  # why a picture's post is tagged


def test_a_post_that_failed_before_posting_is_posted_after_looking(slack, delivery):
    slack.server_error("chat.postMessage", times=2)
    ts = delivery.post_message("C123", dict(MESSAGE), once="tag-2")
    [posted] = ours(slack, "C123")
    assert posted["ts"] == ts
    assert len(slack.calls_to("chat.postMessage")) == 3
    assert len(slack.calls_to("conversations.history")) == 2


def test_a_reply_in_a_thread_is_looked_for_in_the_thread(slack, delivery):
    parent = slack.person_says("C123", "U1", "draw me a lighthouse")
    slack.lose_answer("chat.postMessage")
    ts = delivery.post_message("C123", dict(MESSAGE), once="tag-3", thread_ts=parent)
    replies = [m for m in ours(slack, "C123") if m.get("thread_ts") == parent]
    assert [m["ts"] for m in replies] == [ts]
    [read] = slack.calls_to("conversations.replies")
    assert read["ts"] == parent


def test_another_posts_tag_is_not_taken_for_this_one(slack, delivery):
    """An earlier post of another job (another tag) in the channel: this one is posted."""
    delivery.post_message("C123", dict(MESSAGE), once="someone-else")
    slack.lose_answer("chat.postMessage")
    slack.server_error("chat.postMessage")  # the lost answer's post, then one that failed
    ts = delivery.post_message("C123", {"text": "a second lighthouse"}, once="tag-4")
    posted = ours(slack, "C123")
    assert [m["text"] for m in posted] == ["a lighthouse", "a second lighthouse"]
    assert posted[1]["ts"] == ts


def test_without_the_history_scope_the_post_is_made_again(slack, delivery, caplog):
    """An install without channels:history cannot look: it posts again rather than lose the
    picture (it may then appear twice, as before the tag), and says why in the log."""
    slack.scopes.discard("channels:history")
    slack.lose_answer("chat.postMessage")
    delivery.post_message("C123", dict(MESSAGE), once="tag-5")
    assert len(ours(slack, "C123")) == 2
    assert "could not read whether a post went through: missing_scope" in caplog.text


def test_slack_failing_until_the_deadline_raises(slack, delivery):
    slack.server_error("chat.postMessage", times=100)
    started = time.monotonic()
    with within(time.time() + 1.5), pytest.raises(SlackApiError) as failed:
        delivery.post_message("C123", dict(MESSAGE), once="tag-6")
    assert failed.value.response.status_code == 503
    assert time.monotonic() - started < 3 and not ours(slack, "C123")


def test_an_untagged_post_is_retried_as_before(slack, delivery):
    slack.server_error("chat.postMessage")
    delivery.post_message("C123", dict(MESSAGE))
    assert len(ours(slack, "C123")) == 1
    assert not slack.calls_to("conversations.history")
