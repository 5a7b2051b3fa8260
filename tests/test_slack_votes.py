"""Compare, vote and leaderboard end to end: the app as a real process, signed commands and
events exactly as Slack sends them, the fakes on 127.0.0.1, the vote store read back from
the same SQLite file the app writes.
"""

from __future__ import annotations

import html
import io
import json
import random
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from PIL import Image
from sqlalchemy import text

from bot.votes.db import Comparison, ModelRef, VoteStore
from tests.fakes._http import HANG_UP
from tests.fakes.slack import FakeSlack, shared_words
from tests.slack_harness import (
    AppProcess,
    block_actions_body,
)
from tests.worlds import all_fakes

FORM = "application/x-www-form-urlencoded"
MODELS = {"gemini-3.1-flash-image", "gpt-image-2"}
CHOICES = {"a": "A", "b": "B", "handshake": "tie", "x": "both_bad"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    db = f"sqlite:///{tmp_path_factory.mktemp('votes') / 'imagine.db'}"
    with all_fakes() as fakes:
        env = fakes.env(DATABASE_URL=db, REVEAL_AFTER_VOTES="3", IMAGINE_RETRY_BACKOFF="0.01")
        with AppProcess(env) as app:
            app.env_for_tests = env
            app.slack_for_tests = fakes.slack
            yield fakes.slack, fakes.vertex, fakes.openai, app, VoteStore(db)


@pytest.fixture(autouse=True)
def clean(world):
    slack, vertex, openai, _, _ = world
    for fake in (slack, vertex, openai):
        fake.quiesce()  # the previous test's jobs may still be finishing
        fake.reset()


def compare(world, text="compare a red fox", channel="C123", user="U123", prompt=None):
    """Run a comparison; return its message in the fake Slack and the stored comparison.
    `prompt`: as the post shows it, when that is not the text after `compare`."""
    slack, _, _, app, store = world
    before = len(slack.messages(channel))
    status, body, _ = app.post_command(
        text, channel_id=channel, user_id=user, response_url=slack.response_url()
    )
    assert status == 200 and "Comparing 2 models" in body
    prompt = prompt or text.removeprefix("compare ")
    message = slack.wait_for(
        lambda: [
            m
            for m in slack.messages(channel)[before:]
            if f"“{prompt}”" in json.dumps(m, ensure_ascii=False)
        ],
        timeout=20,
    )[0]
    comparison = slack.wait_for(lambda: store.comparison_at(channel, message["ts"]))
    slack.wait_for(lambda: len(slack.reactions(channel, message["ts"])) == 4)
    return message, comparison


def react(app, user, name, channel, ts, added=True, event_id=None, event_ts=None, retry=None):
    """A person's reaction, sent to the app as Slack would (only from channels the bot is in)."""
    slack = app.slack_for_tests
    status = app.react(
        slack, user, name, channel, ts, added, retry, event_id=event_id, event_ts=event_ts
    )
    assert status == 200, "Slack would not send this reaction: the bot is not in the channel"


def posted(slack: FakeSlack, channel: str, needle: str) -> dict:
    """The message in `channel` whose text mentions `needle` (another test's may be there)."""
    return slack.wait_for(
        lambda: [m for m in slack.messages(channel) if needle in json.dumps(m)], timeout=20
    )[0]


def query(store: VoteStore, sql: str, **params) -> list:
    """Rows of one read-only query, in a short transaction of its own."""
    with store.engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def settle(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)


# -- the post ---------------------------------------------------------------------------
def test_comparison_is_posted_blind_with_voting_reactions(world):
    slack, _, _, _, _ = world
    message, comparison = compare(world)
    text = json.dumps(message["blocks"]) + message["text"]
    for name in ("imagen", "dalle3", "gemini", "gpt-image", "Google", "OpenAI"):
        assert name not in text  # blind
    [picture] = [b for b in message["blocks"] if b["type"] == "image"]
    image = Image.open(io.BytesIO(requests.get(picture["image_url"], timeout=5).content))
    assert image.width > 1.8 * image.height  # two square pictures side by side
    assert "React to vote" in text and ":a: A is better" in text and ":x: both bad" in text
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    assert actions["elements"][0]["action_id"] == "imagine_reveal"
    assert slack.reactions("C123", message["ts"]) == {n: ["UBOT"] for n in CHOICES}
    assert {ref.model for ref in comparison.positions.values()} == MODELS
    assert not comparison.revealed


def test_left_right_order_is_random(world):
    slack, _, _, app, store = world
    first = set()
    for i in range(12):
        _, comparison = compare(world, f"compare picture {i}")
        first.add(comparison.positions["A"].provider)
        if len(first) == 2:
            break
    assert first == {"imagen", "dalle3"}


def test_a_slack_5xx_on_the_post_is_retried_and_posts_once(world):
    slack = world[0]
    slack.server_error("chat.postMessage", times=1)
    message, _ = compare(world, "compare a resilient fox")
    slack.quiesce()
    assert len(slack.calls_to("chat.postMessage")) == 2
    assert [m["ts"] for m in slack.messages("C123")] == [message["ts"]]


def test_a_post_slack_made_before_its_5xx_is_found_and_voted_on(world):
    """The comparison went through but Slack's edge answered 504: the bot finds it in the
    channel (its tag), posts no second one, and voting opens on the one that is there."""
    slack, _, _, app, store = world
    slack.lose_answer("chat.postMessage")
    message, comparison = compare(world, "compare a fox that held")
    slack.quiesce()
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert [m["ts"] for m in slack.messages("C123")] == [message["ts"]]
    assert comparison.message_ts == message["ts"]
    react(app, "U9", "a", "C123", message["ts"])
    settle(lambda: store.votes(comparison.id) == {"U9": "A"})


def test_five_slack_429s_on_the_post_are_waited_out(world):
    slack = world[0]
    slack.rate_limit("chat.postMessage", times=5, retry_after=1)
    message, _ = compare(world, "compare a patient fox")
    slack.quiesce()
    assert len(slack.calls_to("chat.postMessage")) == 6
    assert [m["ts"] for m in slack.messages("C123")] == [message["ts"]]
    assert not slack.responses  # nobody was told anything went wrong


def test_a_prompt_without_provider_compares_when_both_are_configured(world):
    message, comparison = compare(world, "a lighthouse at dusk")
    assert comparison.prompt == "a lighthouse at dusk"


def test_four_pictures_a_side_link_every_full_size_picture_whole(world):
    """Signed URLs are long: with --n 4 the "Full size" links passed Slack's 3,000 characters
    and were cut mid-link. They go on in further elements instead."""
    message, _ = compare(world, "compare a red fox --n 4", prompt="a red fox")
    texts = [
        e["text"]
        for b in message["blocks"]
        if b["type"] == "context"
        for e in b["elements"]
        if e["text"].startswith("Full size")
    ]
    links = [re.findall(r"<([^<>|]+)\|(\d)>", text) for text in texts]
    assert sum(len(found) for found in links) == 8
    assert sum(len(text) for text in texts) > 3000  # long enough to have been cut before
    assert all(text.count("<") == text.count(">") and len(text) <= 3000 for text in texts)
    for found in links:
        for url, _ in found:
            assert "X-Goog-Signature=" in url
            picture = requests.get(html.unescape(url), timeout=5)
            assert picture.status_code == 200 and picture.content[:4] == b"\x89PNG"


def test_a_prompt_cannot_ping_the_channel_from_a_comparison_or_its_reveal(world):
    slack, _, _, app, store = world
    typed = "compare &lt;!channel&gt; a fox <@U666|bob> &lt;http://evil.example|free pizza&gt;"
    shown = "&lt;!channel&gt; a fox @bob &lt;http://evil.example|free pizza&gt;"
    message, comparison = compare(world, typed, prompt=shown)
    assert comparison.prompt == "<!channel> a fox @bob <http://evil.example|free pizza>"
    assert shown in message["text"] and "<@U123>" in message["text"]
    app.post_action(
        action_id="imagine_reveal", value="reveal", user_id="U123", message_ts=message["ts"]
    )
    slack.wait_for(lambda: slack.calls_to("chat.update"))
    sent = json.dumps(
        [slack.calls_to(m) for m in ("chat.postMessage", "chat.update")]
        + [r.body for r in slack.responses],
        ensure_ascii=False,
    )
    for ping in ("<!channel", "<@U666", "<http://evil"):
        assert ping not in sent


# -- votes -------------------------------------------------------------------------------
def test_vote_change_and_withdraw(world):
    _, _, _, app, store = world
    message, comparison = compare(world)
    ts = message["ts"]
    react(app, "U1", "a", "C123", ts)
    settle(lambda: store.votes(comparison.id) == {"U1": "A"})
    react(app, "U1", "b", "C123", ts)  # a new choice replaces the old one
    settle(lambda: store.votes(comparison.id) == {"U1": "B"})
    react(app, "U1", "a", "C123", ts, added=False)  # removing the replaced reaction: no change
    react(app, "U1", "b", "C123", ts, added=False)  # removing the vote's reaction withdraws it
    settle(lambda: store.votes(comparison.id) == {})
    react(app, "U2", "handshake", "C123", ts)
    react(app, "U3", "x::skin-tone-2", "C123", ts)
    settle(lambda: store.votes(comparison.id) == {"U2": "tie", "U3": "both_bad"})


def test_votes_arrive_from_a_public_channel_the_bot_was_not_in(world):
    """chat:write.public would let the bot post without joining, but then Slack would never
    send it the votes: it joins first, and asks Slack about a channel only once."""
    slack, _, _, app, store = world
    slack.not_member("CPUB")
    message, comparison = compare(world, channel="CPUB")
    called = slack.methods_called()
    assert called.index("conversations.join") < called.index("chat.postMessage")
    react(app, "U1", "a", "CPUB", message["ts"])
    settle(lambda: store.votes(comparison.id) == {"U1": "A"})
    compare(world, "compare a second fox", channel="CPUB")
    assert len(slack.calls_to("conversations.info")) == 1  # membership is remembered
    assert len(slack.calls_to("conversations.join")) == 1


def test_a_comparison_that_cannot_be_voted_on_says_so(world):
    """An install without channels:join cannot join: the comparison is posted (with
    chat:write.public), and the requester learns in one sentence why votes will not count."""
    slack, _, _, app, store = world
    slack.scopes.discard("channels:join")
    slack.not_member("CNOJOIN")
    url = slack.response_url()
    app.post_command("compare a lonely fox", channel_id="CNOJOIN", response_url=url)
    [message] = slack.wait_for(lambda: slack.messages("CNOJOIN"), timeout=20)
    [told] = slack.wait_for(lambda: slack.responses_to(url), timeout=10)
    assert "/invite @Imagine" in told.text and "vote" in told.text
    assert told.body["response_type"] == "ephemeral"
    assert not slack.delivers_events_from("CNOJOIN")


def test_bot_reactions_other_emoji_and_other_messages_are_ignored(world):
    slack, _, _, app, store = world
    message, comparison = compare(world)
    react(app, "UBOT", "a", "C123", message["ts"])  # the bot's own
    react(app, "U1", "tada", "C123", message["ts"])  # not a voting emoji
    react(app, "U1", "+1", "C123", message["ts"])  # thumbs are for single posts
    react(app, "U1", "a", "C123", "1699999999.000001")  # someone else's message
    react(app, "U9", "b", "C123", message["ts"])  # a real vote, to know the others were seen
    settle(lambda: store.votes(comparison.id) == {"U9": "B"})
    time.sleep(0.3)
    assert store.votes(comparison.id) == {"U9": "B"}
    assert store.comparison_at("C123", "1699999999.000001") is None


def test_retried_deliveries_never_count_twice(world):
    _, _, _, app, store = world
    message, comparison = compare(world)
    ts = message["ts"]
    react(app, "U1", "a", "C123", ts, event_id="EvADD1", event_ts="1700000100.000001")
    react(app, "U1", "a", "C123", ts, event_id="EvADD1", event_ts="1700000100.000001", retry=1)
    react(app, "U2", "b", "C123", ts, event_id="EvADD2", event_ts="1700000100.000002")
    settle(lambda: store.votes(comparison.id) == {"U1": "A", "U2": "B"})
    react(app, "U1", "a", "C123", ts, added=False, event_id="EvDEL1", event_ts="1700000101.000001")
    settle(lambda: store.votes(comparison.id) == {"U2": "B"})
    # a late retry of the original add must not bring the withdrawn vote back
    react(app, "U1", "a", "C123", ts, event_id="EvADD1", event_ts="1700000100.000001", retry=2)
    time.sleep(0.3)
    assert store.votes(comparison.id) == {"U2": "B"}


# -- reveal ------------------------------------------------------------------------------
def test_reveal_by_button_only_for_the_requester(world):
    slack, _, _, app, store = world
    message, comparison = compare(world, user="U123")
    url = slack.response_url()
    app.post_action(
        action_id="imagine_reveal",
        value="reveal",
        user_id="U777",
        message_ts=message["ts"],
        response_url=url,
    )
    [reply] = slack.wait_for(lambda: slack.responses_to(url))
    assert "Only <@U123> can reveal" in reply.text
    assert not store.comparison(comparison.id).revealed
    react(app, "U5", "a", "C123", message["ts"])
    settle(lambda: store.votes(comparison.id) == {"U5": "A"})
    app.post_action(
        action_id="imagine_reveal",
        value="reveal",
        user_id="U123",
        message_ts=message["ts"],
        response_url=slack.response_url(),
    )
    [update] = slack.wait_for(lambda: slack.calls_to("chat.update"))
    revealed = json.dumps(update["blocks"])
    a, b = comparison.positions["A"], comparison.positions["B"]
    assert f"A was *{a.provider}* (`{a.model}`)" in revealed
    assert f"B was *{b.provider}* (`{b.model}`)" in revealed
    assert "A is better: 1" in revealed and "imagine_reveal" not in revealed
    assert store.comparison(comparison.id).revealed


def test_a_reveal_click_delivered_twice_acts_once(world):
    slack, _, _, app, _ = world
    message, comparison = compare(world, user="U123")
    url = slack.response_url()
    body = block_actions_body(
        action_id="imagine_reveal", value="reveal", message_ts=message["ts"], response_url=url
    )
    signed_at = int(time.time())
    assert app.post_signed(body, FORM, timestamp=signed_at)[0] == 200
    slack.wait_for(lambda: slack.calls_to("chat.update"))
    assert app.post_signed(body, FORM, timestamp=signed_at)[0] == 200  # delivered again
    slack.quiesce()
    assert len(slack.calls_to("chat.update")) == 1
    assert not slack.responses_to(url)  # no "already revealed" for a click made once


def database_text(store: VoteStore) -> str:
    """Every row of every table, as one text."""
    with store.engine.connect() as conn:
        names = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
        tables = [row[0] for row in names]
        return json.dumps(
            {
                t: [list(map(str, r)) for r in conn.execute(text(f'SELECT * FROM "{t}"'))]
                for t in tables
            }
        )


def linked_urls(blocks: list[dict]) -> list[str]:
    """The URLs of the links in `blocks`' text, as Slack reads them (entities decoded)."""
    return [html.unescape(u) for u in re.findall(r"<(http[^|>]+)\|", json.dumps(blocks))]


def signed_at(url: str) -> datetime:
    [date] = parse_qs(urlsplit(url).query)["X-Goog-Date"]
    return datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def test_object_names_are_stored_and_a_reveal_posts_freshly_signed_urls(world):
    slack, _, _, app, store = world
    message, comparison = compare(world, "compare a signed heron", user="U123")
    [picture] = [b["image_url"] for b in message["blocks"] if b["type"] == "image"]
    links = linked_urls(message["blocks"])
    assert len(links) == 2 and all("X-Goog-Signature=" in u for u in [picture, *links])
    kept = comparison.details["post"]
    assert kept["pictures"][0].startswith("gs://imgs/")
    assert all(r[0].startswith("gs://imgs/") for r in kept["originals"].values())
    heron = "SELECT count(*) FROM generations WHERE prompt = 'a signed heron'"
    settle(lambda: query(store, heron)[0][0] == 2)  # the history is written too
    assert "X-Goog-" not in database_text(store)  # no signature, no credential, in any table

    time.sleep(1.1)  # a V4 signature is dated to the second: a fresh one differs
    before = datetime.now(UTC).replace(microsecond=0)
    app.post_action(
        action_id="imagine_reveal",
        value="reveal",
        user_id="U123",
        message_ts=message["ts"],
        response_url=slack.response_url(),
    )
    [update] = slack.wait_for(lambda: slack.calls_to("chat.update"))
    [fresh] = [b["image_url"] for b in update["blocks"] if b["type"] == "image"]
    fresh_links = linked_urls(update["blocks"])
    for old, new in zip([picture, *links], [fresh, *fresh_links], strict=True):
        assert urlsplit(new).path == urlsplit(old).path  # the same object
        assert signed_at(new) >= before > signed_at(old)  # signed at the reveal, not before
        assert requests.get(new, timeout=5).content == requests.get(old, timeout=5).content
    assert "X-Goog-" not in database_text(store)


def test_reveal_after_three_votes_and_hidden_flag(world):
    slack, _, _, app, store = world
    message, comparison = compare(world)
    for user, emoji in (("U1", "a"), ("U2", "a"), ("U3", "b")):
        react(app, user, emoji, "C123", message["ts"])
    [update] = slack.wait_for(lambda: slack.calls_to("chat.update"))
    assert "A is better: 2" in json.dumps(update["blocks"])
    react(app, "U4", "b", "C123", message["ts"])  # cast after the reveal
    settle(lambda: len(store.votes(comparison.id)) == 4)
    hidden = dict(
        query(store, "SELECT voter_id, hidden FROM votes WHERE comparison_id = :c", c=comparison.id)
    )
    assert {k: bool(v) for k, v in hidden.items()} == {
        "U1": True,
        "U2": True,
        "U3": True,
        "U4": False,
    }
    time.sleep(0.3)
    assert len(slack.calls_to("chat.update")) == 1  # revealed once


def test_one_provider_failing_posts_the_other_without_voting(world):
    slack, vertex, _, app, store = world
    vertex.block_prompt("PROHIBITED_CONTENT")
    app.post_command("compare a thing", response_url=slack.response_url())
    message = posted(slack, "C123", "a thing")
    text = json.dumps(message["blocks"])
    assert "gpt-image-2" in text and "incomplete, so there is no vote" in text
    assert "imagen" in text  # the failure is named
    time.sleep(0.3)
    assert store.comparison_at("C123", message["ts"]) is None
    assert not slack.calls_to("reactions.add")


def uploading_app(world, start_app):
    """The app without a bucket: comparisons are uploaded, and revealed in their thread."""
    shared_app = world[3]
    return start_app({**shared_app.env_for_tests, "GCS_BUCKET": "", "STORAGE_EMULATOR_HOST": ""})


def uploaded_comparison(world, channel: str, url: str) -> tuple[dict, Comparison, dict]:
    """Once the uploaded comparison is in `channel` and registered, with its voting reactions
    and the requester's private Reveal button: its message, the comparison, the button."""
    slack, store = world[0], world[4]
    [message] = slack.wait_for(lambda: slack.messages(channel), timeout=20)
    comparison = slack.wait_for(lambda: store.comparison_at(channel, message["ts"]))
    slack.wait_for(lambda: len(slack.reactions(channel, message["ts"])) == 4)
    [private] = slack.wait_for(lambda: slack.responses_to(url))  # the requester's button
    [button] = private.body["blocks"][1]["elements"]
    return message, comparison, button


def press_private_reveal(app, button: dict, channel: str, response_url: str) -> None:
    app.post_action(
        action_id="imagine_reveal",
        value=button["value"],
        user_id="U123",
        channel_id=channel,
        message_ts="1700000999.000001",  # the private message's, not the comparison's
        is_ephemeral=True,
        response_url=response_url,
    )


def test_without_a_bucket_the_comparison_is_uploaded_and_revealed_in_a_thread(world, start_app):
    slack = world[0]
    app = uploading_app(world, start_app)
    url = slack.response_url()
    app.post_command("compare a paper boat", channel_id="CUP", response_url=url)
    [upload] = slack.wait_for(lambda: slack.calls_to("files.completeUploadExternal"))
    comment = shared_words(upload)
    assert "Which picture is better?" in comment and "React to vote" in comment
    assert "imagen" not in comment and "gpt-image" not in comment
    files = slack.uploaded_files
    assert [f.title for f in files] == ["A and B side by side", "A, full size", "B, full size"]
    message, comparison, button = uploaded_comparison(world, "CUP", url)
    assert button["value"] == f"CUP|{message['ts']}"
    press_private_reveal(app, button, "CUP", slack.response_url())
    [reply] = slack.wait_for(lambda: [m for m in slack.messages("CUP") if m.get("thread_ts")])
    a = comparison.positions["A"]
    assert reply["thread_ts"] == message["ts"] and f"A was *{a.provider}*" in reply["text"]


def test_a_reveal_that_slack_refuses_is_made_by_the_next_vote(world):
    """Slack refusing the redrawn message leaves the comparison unrevealed, not marked as
    revealed with the names never shown: the next vote reveals it."""
    slack, _, _, app, store = world
    message, comparison = compare(world)
    slack.fail("chat.update", "fatal_error")
    for user, emoji in (("U1", "a"), ("U2", "a"), ("U3", "b")):
        react(app, user, emoji, "C123", message["ts"])
    slack.wait_for(lambda: slack.calls_to("chat.update"))
    settle(lambda: len(store.votes(comparison.id)) == 3)
    time.sleep(0.3)
    assert not store.comparison(comparison.id).revealed
    react(app, "U4", "b", "C123", message["ts"])
    [_, update] = slack.wait_for(
        lambda: slack.calls_to("chat.update")[1:] and slack.calls_to("chat.update")
    )
    a = comparison.positions["A"]
    assert f"A was *{a.provider}*" in json.dumps(update["blocks"])
    settle(lambda: store.comparison(comparison.id).revealed)


def test_a_reveal_reply_whose_answer_was_lost_is_in_the_thread_once(world, start_app):
    """An upload's reveal is a reply in its thread: Slack posted it but the connection was
    lost before its answer; the bot finds its tagged reply and does not post it again."""
    slack = world[0]
    app = uploading_app(world, start_app)
    url = slack.response_url()
    app.post_command("compare a lost kite", channel_id="CRV", response_url=url)
    message, _, button = uploaded_comparison(world, "CRV", url)
    slack.lose_answer("chat.postMessage", status=HANG_UP)
    clicked = slack.response_url()
    press_private_reveal(app, button, "CRV", clicked)
    slack.wait_for(lambda: slack.calls_to("conversations.replies"), timeout=15)
    time.sleep(0.5)
    slack.quiesce()
    [reply] = [m for m in slack.messages("CRV") if m.get("thread_ts")]
    assert reply["thread_ts"] == message["ts"] and "A was *" in reply["text"]
    assert reply["metadata"]["event_payload"]["once"]
    assert not slack.responses_to(clicked)  # nothing to apologise for
    # the reveal's posts and the pictures' share one memory of the channel: asked about once
    assert [c["channel"] for c in slack.calls_to("conversations.info")].count("CRV") == 1


# -- single posts and the leaderboard -----------------------------------------------------
def test_thumbs_rate_single_posts(world):
    slack, _, _, app, store = world
    app.post_command("imagen a quiet harbour", response_url=slack.response_url())
    message = posted(slack, "C123", "a quiet harbour")
    assert ":+1:" in json.dumps(message["blocks"])
    settle(lambda: store.rated_post_at("C123", message["ts"]))
    for user, emoji in (("U1", "+1"), ("U2", "-1"), ("U3", "thumbsup::skin-tone-3"), ("U1", "a")):
        react(app, user, emoji, "C123", message["ts"])
    rated = store.rated_post_at("C123", message["ts"])
    # each check reads in a transaction of its own, holding no lock the app's writes need
    settle(
        lambda: (
            query(store, "SELECT count(*) FROM votes WHERE rated_post_id = :r", r=rated.id)[0][0]
            == 3
        )
    )
    url = slack.response_url()
    app.post_command("leaderboard", response_url=url)
    [reply] = slack.wait_for(lambda: slack.responses_to(url))
    assert "`gemini-3.1-flash-image` :+1: 2 :-1: 1" in json.dumps(reply.body["blocks"])


def seed_votes(store: VoteStore, channel: str, votes: list[str], *, revealed: bool) -> None:
    """Comparisons with known outcomes, straight into the store the app reads."""
    positions = {
        "A": ModelRef("imagen", "gemini-3.1-flash-image"),
        "B": ModelRef("dalle3", "gpt-image-2"),
    }
    ts = f"{random.randint(10**9, 2 * 10**9)}.{random.randint(0, 999999):06d}"
    cid = store.register_comparison(channel, ts, "U123", "seeded", positions)
    if revealed:
        store.mark_revealed(cid)
    for i, choice in enumerate(votes):
        store.apply_reaction(f"Ev{ts}{i}", channel, ts, f"V{i}", choice, True, f"{ts}{i}")


def leaderboard(world, text, channel="C123"):
    slack, _, _, app, _ = world
    url = slack.response_url()
    app.post_command(text, channel_id=channel, response_url=url)
    [reply] = slack.wait_for(lambda: slack.responses_to(url), timeout=15)
    return reply


def test_leaderboard_figures_and_filters(world):
    slack, _, _, _, store = world
    seed_votes(store, "CLB", ["A"] * 9 + ["B"] * 3, revealed=False)  # gemini wins, blind
    seed_votes(store, "CLB", ["B"] * 12, revealed=True)  # gpt-image wins, names shown
    here = leaderboard(world, "leaderboard --here --blind", channel="CLB")
    assert here.body["response_type"] == "ephemeral"
    table = here.body["blocks"][1]["text"]["text"]
    rows = [line for line in table.splitlines() if line.startswith(("gemini", "gpt-image"))]
    assert rows[0].startswith("gemini-3.1-flash-image") and "9-3-0-0" in rows[0]
    assert "75%" in rows[0] and "12" in rows[0]
    assert any(b["type"] == "image" for b in here.body["blocks"])  # the chart
    chart_url = next(b["image_url"] for b in here.body["blocks"] if b["type"] == "image")
    assert requests.get(chart_url, timeout=5).content[:4] == b"\x89PNG"
    everything = leaderboard(world, "leaderboard --here", channel="CLB")
    table = everything.body["blocks"][1]["text"]["text"]
    first = [line for line in table.splitlines() if line.startswith(("gemini", "gpt-image"))][0]
    assert first.startswith("gpt-image-2") and "15-9-0-0" in first  # 3 + 12 wins
    elsewhere = leaderboard(world, "leaderboard --here", channel="CEMPTY")
    assert "No head-to-head votes yet" in json.dumps(elsewhere.body["blocks"])
    # --post puts it in the channel, for everyone
    world[3].post_command(
        "leaderboard --post --since 30d", channel_id="CLB", response_url=slack.response_url()
    )
    [posted] = slack.wait_for(lambda: slack.messages("CLB"))
    assert "last 30 days" in posted["text"] and "gpt-image-2" in posted["text"]


def test_a_leaderboard_post_whose_answer_was_lost_is_in_the_channel_once(world):
    """--post: chat.postMessage went through but the connection was lost before its answer;
    the bot finds its tagged post in the channel and neither posts again nor says it failed."""
    slack, _, _, app, store = world
    seed_votes(store, "CLB", ["B"] * 3, revealed=True)
    slack.lose_answer("chat.postMessage", status=HANG_UP)
    url = slack.response_url()
    app.post_command("leaderboard --post", channel_id="CLB", response_url=url)
    slack.wait_for(lambda: slack.calls_to("conversations.history"), timeout=15)
    time.sleep(0.5)
    slack.quiesce()
    [posted] = slack.messages("CLB")
    assert "gpt-image-2" in posted["text"] and posted["metadata"]["event_payload"]["once"]
    assert len(slack.calls_to("chat.postMessage")) == 1 and not slack.responses_to(url)


def test_bad_leaderboard_option_is_answered_in_the_ack(world):
    slack, _, _, app, _ = world
    status, body, _ = app.post_command("leaderboard --since soon")
    assert status == 200 and "like `30d`" in body


# -- load ----------------------------------------------------------------------------------
def test_a_burst_of_200_reactions_loses_nothing_and_counts_nothing_twice(world):
    _, _, _, app, store = world
    message, comparison = compare(world)
    ts = message["ts"]
    rng = random.Random(7)
    events = []
    for i in range(160):  # many voters, changes and withdrawals, in a known order
        voter = f"W{rng.randrange(60)}"
        name = rng.choice(list(CHOICES))
        added = rng.random() < 0.75
        events.append((f"EvB{i:04d}", voter, name, added, f"1700001000.{i:06d}"))
    deliveries = events + rng.sample(events, 40)  # Slack's retried deliveries
    rng.shuffle(deliveries)
    expected: dict[str, str] = {}
    for _, voter, name, added, _ in events:  # the tally computed from the event sequence
        if added:
            expected[voter] = CHOICES[name]
        elif expected.get(voter) == CHOICES[name]:
            del expected[voter]

    def deliver(item):
        event_id, voter, name, added, event_ts = item
        react(app, voter, name, "C123", ts, added, event_id=event_id, event_ts=event_ts)

    started = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(deliver, deliveries))
    sent_in = time.monotonic() - started
    settle(lambda: store.votes(comparison.id) == expected, timeout=20)
    assert sent_in < 5.0
    assert Counter(store.votes(comparison.id).values()) == Counter(expected.values())
