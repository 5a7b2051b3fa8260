"""Edit by reply and "Remix this picture", end to end: the app as a real process, signed events
and interactions exactly as Slack sends them, Vertex AI, Azure OpenAI, Cloud Storage and Slack
as fakes on 127.0.0.1. Every edited picture is checked to be made from the exact bytes of the
picture it edits (the fakes derive their answer from the bytes they received)."""

from __future__ import annotations

import io
import json
import time
from urllib.parse import quote

import numpy as np
import pytest
import requests
from PIL import Image
from sqlalchemy import text

from bot.votes.db import VoteStore
from bot.votes.schema import object_ref
from tests.fakes._http import HANG_UP
from tests.fakes.images import edited_png, png_bytes
from tests.fakes.slack import FakeSlack
from tests.fakes.vertex import MAX_REQUEST_BYTES
from tests.slack_harness import (
    AppProcess,
    channel_message,
    message_action_body,
    view_submission_body,
)
from tests.worlds import all_fakes

FORM = "application/x-www-form-urlencoded"
CHANNEL = "C123"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    db = f"sqlite:///{tmp_path_factory.mktemp('edits') / 'imagine.db'}"
    with all_fakes() as fakes:
        env = fakes.env(
            IMAGEN_MODEL="gemini-3.1-flash-image", DATABASE_URL=db, IMAGINE_RETRY_BACKOFF="0.01"
        )
        with AppProcess(env) as app:
            app.emulator_url = fakes.emulator_url
            app.env_for_tests = env
            yield fakes.slack, fakes.vertex, fakes.openai, app, VoteStore(db)


@pytest.fixture(autouse=True)
def clean(world):
    slack, vertex, openai, _, _ = world
    for fake in (slack, vertex, openai):
        fake.quiesce()
        fake.reset()


# -- helpers ------------------------------------------------------------------------------------


def draw(world, prompt="imagen a red fox") -> dict:
    """A picture posted by /imagine, once the history knows it (a person replies later)."""
    slack, _, _, app, store = world
    before = len(slack.messages(CHANNEL))
    status, _, _ = app.post_command(
        prompt, channel_id=CHANNEL, user_id="U123", response_url=slack.response_url()
    )
    assert status == 200
    post = slack.wait_for(
        lambda: [
            m for m in slack.messages(CHANNEL)[before:] if image_url(m) and not m.get("thread_ts")
        ],
        timeout=20,
    )[0]
    slack.wait_for(lambda: store.picture_at(CHANNEL, post["ts"]), timeout=10)
    return post


def image_url(message: dict) -> str | None:
    return next((b["image_url"] for b in message.get("blocks") or [] if b["type"] == "image"), None)


def picture_of(message: dict) -> bytes:
    response = requests.get(image_url(message) or "", timeout=10)
    response.raise_for_status()
    return response.content


def reply(world, words: str, thread_ts: str, **extra) -> None:
    _, _, _, app, _ = world
    status, _, _ = app.post_event(channel_message(words, thread_ts=thread_ts, **extra))
    assert status == 200


def in_thread(slack: FakeSlack, thread_ts: str, count: int, timeout: float = 20) -> list[dict]:
    """The bot's replies in the thread once there are `count` of them."""

    def replies():
        found = [m for m in slack.messages(CHANNEL) if m.get("thread_ts") == thread_ts]
        return found if len(found) >= count else None

    return slack.wait_for(replies, timeout=timeout)


def rows(store: VoteStore, sql: str, **params) -> list:
    with store.engine.connect() as conn:
        return conn.execute(text(sql), params).mappings().all()


def settle_history(store: VoteStore, message_ts: str) -> dict:
    deadline = time.monotonic() + 10
    while True:
        found = rows(store, "SELECT * FROM generations WHERE message_ts = :ts", ts=message_ts)
        if found:
            return dict(found[0])
        assert time.monotonic() < deadline, "the edit was not recorded"
        time.sleep(0.05)


# -- edit by reply ---------------------------------------------------------------------------


def test_a_reply_edits_the_picture_with_the_same_provider_and_posts_in_the_thread(world):
    slack, vertex, openai, _, store = world
    post = draw(world)
    original = picture_of(post)

    reply(world, "make it night time", post["ts"])
    (edit,) = in_thread(slack, post["ts"], 1)

    assert vertex.received_pictures == [original]
    assert openai.received_pictures == []
    assert picture_of(edit) == edited_png(original, "make it night time")
    # lineage: the edit is a picture of its own, with its parent, provider and model
    row = settle_history(store, edit["ts"])
    parent = settle_history(store, post["ts"])
    assert row["parent_id"] == parent["id"]
    assert row["parent_picture"] == parent["picture"]
    assert (row["provider"], row["model"]) == ("imagen", "gemini-3.1-flash-image")
    assert row["thread_ts"] == post["ts"] and row["prompt"] == "make it night time"
    assert row["picture"].startswith("gs://imgs/")
    # and it is rated like any picture: 👍 on it counts for its model
    slack.wait_for(lambda: store.rated_post_at(CHANNEL, edit["ts"]), timeout=10)


def test_replies_chain_and_a_provider_prefix_switches_the_provider(world):
    slack, vertex, openai, _, store = world
    post = draw(world)
    original = picture_of(post)

    reply(world, "make it night time", post["ts"])
    (first,) = in_thread(slack, post["ts"], 1)
    settle_history(store, first["ts"])
    first_bytes = picture_of(first)

    reply(world, "dalle3: make it a watercolor", post["ts"])
    second = in_thread(slack, post["ts"], 2)[1]
    settle_history(store, second["ts"])

    # the second reply edited the newest picture (the first edit), with OpenAI this time
    assert vertex.received_pictures == [original]
    assert openai.received_pictures == [first_bytes]
    assert picture_of(second) == edited_png(first_bytes, "make it a watercolor")
    (call,) = openai.calls("/images/edits")
    assert call.path == "/openai/deployments/img/images/edits"

    reply(world, "add a moon", post["ts"])
    third = in_thread(slack, post["ts"], 3)[2]
    # the newest picture was drawn by dalle3: the chain goes on with it
    assert openai.received_pictures[-1] == picture_of(second)
    assert picture_of(third) == edited_png(picture_of(second), "add a moon")
    settle_history(store, third["ts"])
    lineage = rows(
        store,
        "SELECT id, parent_id, provider FROM generations WHERE thread_ts = :t ORDER BY id",
        t=post["ts"],
    )
    assert [r["provider"] for r in lineage] == ["imagen", "dalle3", "dalle3"]
    assert [r["parent_id"] for r in lineage[1:]] == [lineage[0]["id"], lineage[1]["id"]]


def test_messages_that_are_not_replies_to_a_picture_are_ignored(world):
    slack, vertex, openai, app, _ = world
    post = draw(world)
    calls = len(vertex.api_calls())
    before = len(slack.messages(CHANNEL))

    ignored = [
        channel_message("hello everyone"),  # plain channel chat
        channel_message("make it night", thread_ts="1600000000.000100"),  # not a picture's
        channel_message("make it night", thread_ts=post["ts"], subtype="message_changed"),
        channel_message("make it night", thread_ts=post["ts"], subtype="bot_message", bot_id="B9"),
        channel_message("make it night", thread_ts=post["ts"], user="UBOT", bot_id="BBOT"),
        channel_message("   ", thread_ts=post["ts"]),  # nothing to draw
    ]
    for event in ignored:
        status, _, _ = app.post_event(event)
        assert status == 200  # acknowledged, so Slack does not deliver it again
    time.sleep(1.0)
    vertex.quiesce()
    openai.quiesce()
    assert len(vertex.api_calls()) == calls
    assert openai.calls("/images/edits") == []
    assert len(slack.messages(CHANNEL)) == before


def test_a_redelivered_reply_edits_once(world):
    slack, vertex, _, app, _ = world
    post = draw(world)
    event = channel_message("make it night time", thread_ts=post["ts"])
    app.post_event(event, event_id="EvSAME00001")
    app.post_event(event, event_id="EvSAME00001", retry_num=1)
    in_thread(slack, post["ts"], 1)
    time.sleep(1.0)
    assert len([m for m in slack.messages(CHANNEL) if m.get("thread_ts") == post["ts"]]) == 1
    assert len(vertex.received_pictures) == 1


# -- bad input: one sentence in the thread --------------------------------------------------


def test_a_picture_gone_from_the_bucket_is_one_sentence_in_the_thread(world):
    slack, vertex, _, app, _ = world
    post = draw(world)
    name = object_ref(image_url(post) or "").removeprefix("gs://imgs/")
    gone = requests.delete(
        f"{app.emulator_url}/storage/v1/b/imgs/o/{quote(name, safe='')}", timeout=10
    )
    assert gone.status_code in (200, 204)

    reply(world, "make it night time", post["ts"])
    (said,) = in_thread(slack, post["ts"], 1)
    assert "no longer in the bucket" in said["text"]
    assert "blocks" not in said or not image_url(said)
    assert vertex.received_pictures == []

    # nothing else broke: a new picture and its edit still work
    other = draw(world, "imagen a blue whale")
    reply(world, "make it night time", other["ts"])
    (edit,) = in_thread(slack, other["ts"], 1)
    assert image_url(edit)


def test_a_refused_edit_is_one_sentence_in_the_thread(world):
    slack, vertex, openai, _, _ = world
    post = draw(world)
    vertex.block_prompt()
    reply(world, "make it gory", post["ts"])
    (said,) = in_thread(slack, post["ts"], 1)
    assert said["text"].startswith(":no_entry:") and "refused" in said["text"]

    openai.script_edit_refused()
    reply(world, "dalle3: make it gory", post["ts"])
    said = in_thread(slack, post["ts"], 2)[1]
    assert said["text"].startswith(":no_entry:")


def test_an_edits_sentence_whose_answer_was_lost_is_in_the_thread_once(world):
    """Slack posted the sentence but the connection was lost before its answer: the bot
    finds its tagged reply in the thread and does not post it again."""
    slack, vertex, _, _, _ = world
    post = draw(world)
    vertex.block_prompt()
    slack.lose_answer("chat.postMessage", status=HANG_UP)
    reply(world, "make it gory", post["ts"])
    slack.wait_for(lambda: slack.calls_to("conversations.replies"), timeout=15)
    time.sleep(0.5)
    slack.quiesce()
    (said,) = in_thread(slack, post["ts"], 1)
    assert said["text"].startswith(":no_entry:") and said["metadata"]["event_payload"]["once"]
    assert len([m for m in slack.messages(CHANNEL) if m.get("thread_ts") == post["ts"]]) == 1


def test_a_model_that_cannot_edit_names_one_that_can(world, start_app):
    slack, vertex, openai, _, _ = world
    app = start_app({**world[3].env_for_tests, "IMAGEN_MODEL": "imagen-4.0-generate-001"})
    status, _, _ = app.post_command(
        "dalle3 a red fox", channel_id=CHANNEL, user_id="U123", response_url=slack.response_url()
    )
    assert status == 200
    post = slack.wait_for(lambda: [m for m in slack.messages(CHANNEL) if image_url(m)])[0]
    store = world[4]
    slack.wait_for(lambda: store.picture_at(CHANNEL, post["ts"]), timeout=10)

    status, _, _ = app.post_event(channel_message("imagen: make it night", thread_ts=post["ts"]))
    assert status == 200
    (said,) = in_thread(slack, post["ts"], 1)
    assert "imagen-4.0-generate-001 cannot edit pictures" in said["text"]
    assert "`dalle3:`" in said["text"] and "gemini" in said["text"]
    assert [c for c in vertex.api_calls() if "generateContent" in c.path] == []


def test_an_edit_waiting_for_the_quota_is_told_privately_in_the_thread_and_can_be_cancelled(
    world, start_app
):
    slack, vertex, _, _, store = world
    post = draw(world)
    paced = start_app({**world[3].env_for_tests, "IMAGEN_REQUESTS_PER_MINUTE": "20"})  # 1 in 3 s
    for words in ("make it night", "add snow", "add a moon"):
        status, _, _ = paced.post_event(channel_message(words, thread_ts=post["ts"]))
        assert status == 200

    def notes():
        return [e for e in slack.ephemerals("U123") if e.get("thread_ts") == post["ts"]]

    waiting = slack.wait_for(lambda: notes() if len(notes()) >= 2 else None, timeout=10)
    assert all("ahead of you" in n["text"] or "next in line" in n["text"] for n in waiting)
    assert not [m for m in slack.messages(CHANNEL) if "quota" in m.get("text", "")]  # private
    # Cancel on the last one to wait: it is never drawn; the others are
    last = waiting[-1]
    [cancel] = [
        e for b in last["blocks"] if b["type"] == "actions" for e in b["elements"] if e["value"]
    ]
    status, _, _ = paced.post_action(
        action_id=cancel["action_id"],
        value=cancel["value"],
        channel_id=CHANNEL,
        message_ts=last["ts"],
        is_ephemeral=True,
        response_url=slack.response_url(),
    )
    assert status == 200
    edits = in_thread(slack, post["ts"], 2, timeout=20)
    time.sleep(4)  # the cancelled edit's turn has come and gone
    assert len([m for m in slack.messages(CHANNEL) if m.get("thread_ts") == post["ts"]]) == 2
    assert len(edits) == 2 and len(notes()) == 2  # one note per waiting edit, none repeated
    assert len([c for c in vertex.api_calls() if "generateContent" in c.path]) == 3  # 1 + 2


# -- remix any picture -------------------------------------------------------------------------


def remix(world, message: dict, words: str, model: str | None = None) -> dict:
    """The shortcut on `message`, then the form submitted; returns the opened view."""
    slack, _, _, app, _ = world
    body = message_action_body("imagine_remix", message, slack.new_trigger())
    status, _, _ = app.post_signed(body, FORM)
    assert status == 200
    (view,) = slack.wait_for(lambda: slack.views(), timeout=10)
    values = {"remix_words": {"words": {"type": "plain_text_input", "value": words}}}
    if model:
        values["remix_model"] = {
            "model": {"type": "static_select", "selected_option": {"value": model}}
        }
    status, answer, _ = app.post_signed(view_submission_body(view, values), FORM)
    assert status == 200 and "errors" not in answer
    return view


def test_remix_a_persons_upload_reads_it_with_the_bot_token(world):
    slack, _, openai, _, store = world
    photo = png_bytes("my holiday photo", size=(120, 80))
    shared = slack.share_file(CHANNEL, "U777", photo, "holiday.png")

    view = remix(world, shared, "make it a watercolor", model="dalle3")
    assert view["callback_id"] == "imagine_remix"
    (edit,) = in_thread(slack, shared["ts"], 1)

    assert openai.received_pictures == [photo]
    assert picture_of(edit) == edited_png(photo, "make it a watercolor")
    downloads = slack.calls("/files-pri/")
    assert downloads and all(
        r.headers.get("authorization") == f"Bearer {slack.token}" for r in downloads
    )
    row = settle_history(store, edit["ts"])
    assert row["parent_id"] is None and row["parent_picture"].startswith("upload:F")
    assert row["user_id"] == "U123" and row["provider"] == "dalle3"


def test_remix_the_bots_picture_defaults_to_its_provider(world):
    slack, vertex, _, _, store = world
    post = draw(world)
    original = picture_of(post)

    view = remix(world, post, "make it snowy")
    select = view["blocks"][1]["element"]
    assert select["initial_option"]["value"] == "imagen"
    (edit,) = in_thread(slack, post["ts"], 1)
    assert vertex.received_pictures == [original]
    assert (
        settle_history(store, edit["ts"])["parent_id"]
        == store.picture_at(CHANNEL, post["ts"]).generation_id
    )


def test_remix_of_an_upload_too_large_for_vertex_scales_it_down_first(world):
    slack, vertex, _, _, _ = world
    noise = np.random.default_rng(3).integers(0, 256, (2700, 2700, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, "PNG", compress_level=1)
    huge = out.getvalue()
    assert len(huge) * 4 / 3 > MAX_REQUEST_BYTES  # as it is, Vertex AI would refuse it
    shared = slack.share_file(CHANNEL, "U777", huge, "scan.png")

    remix(world, shared, "make it night time", model="imagen")
    (edit,) = in_thread(slack, shared["ts"], 1, timeout=60)
    (sent,) = vertex.received_pictures
    assert len(sent) < len(huge)
    assert picture_of(edit) == edited_png(sent, "make it night time")


def test_remix_of_a_deleted_upload_is_one_sentence_in_its_thread(world):
    slack, _, openai, _, _ = world
    shared = slack.share_file(CHANNEL, "U777", png_bytes("soon gone"), "gone.png")
    slack.delete_file(shared["files"][0]["id"])
    remix(world, shared, "make it a watercolor", model="dalle3")
    (said,) = in_thread(slack, shared["ts"], 1)
    assert "no longer in Slack" in said["text"]
    assert openai.received_pictures == []


def test_remix_without_files_read_cannot_download_and_says_so(world):
    slack, _, openai, _, _ = world
    shared = slack.share_file(CHANNEL, "U777", png_bytes("private"), "p.png")
    slack.scopes.discard("files:read")
    remix(world, shared, "make it a watercolor", model="dalle3")
    (said,) = in_thread(slack, shared["ts"], 1)
    assert "no longer in Slack" in said["text"] or "cannot read" in said["text"]
    assert openai.received_pictures == []


def test_remix_without_words_is_refused_in_the_form(world):
    slack, vertex, _, app, _ = world
    post = draw(world)
    body = message_action_body("imagine_remix", post, slack.new_trigger())
    assert app.post_signed(body, FORM)[0] == 200
    (view,) = slack.wait_for(lambda: slack.views(), timeout=10)
    values = {"remix_words": {"words": {"type": "plain_text_input", "value": "  "}}}
    status, answer, _ = app.post_signed(view_submission_body(view, values), FORM)
    assert status == 200
    assert json.loads(answer) == {
        "response_action": "errors",
        "errors": {"remix_words": "Say what should change."},
    }
    time.sleep(0.5)
    assert vertex.received_pictures == []


def test_remix_on_a_message_without_a_picture_says_so_privately(world):
    slack, _, _, app, _ = world
    message = {"type": "message", "user": "U777", "ts": "1600000000.000900", "text": "hi"}
    body = message_action_body("imagine_remix", message, slack.new_trigger())
    status, _, _ = app.post_signed(body, FORM)
    assert status == 200
    (note,) = slack.wait_for(lambda: slack.ephemerals("U123"), timeout=10)
    assert "no picture" in json.dumps(note)
    assert slack.views() == []


# -- without a bucket: pictures are Slack uploads -------------------------------------------


def test_without_a_bucket_replies_edit_uploads_and_chain(world, start_app):
    slack, vertex, openai, _, store = world
    env = {k: v for k, v in world[3].env_for_tests.items() if k != "GCS_BUCKET"}
    app = start_app(env)
    status, _, _ = app.post_command(
        "imagen a red fox", channel_id=CHANNEL, user_id="U123", response_url=slack.response_url()
    )
    assert status == 200
    shared = slack.wait_for(
        lambda: [m for m in slack.messages(CHANNEL) if m.get("subtype") == "file_share"]
    )[0]
    original = slack.uploaded_files[0].data
    # a person replies once the picture is there: by then the history has it (written
    # asynchronously, milliseconds after the post)
    file_id = slack.uploaded_files[0].id
    deadline = time.monotonic() + 10
    while not rows(store, "SELECT id FROM uploads WHERE file_id = :f", f=file_id):
        assert time.monotonic() < deadline
        time.sleep(0.05)

    # the upload's message is not known to the history yet: the reply finds it through Slack
    app.post_event(channel_message("make it night time", thread_ts=shared["ts"]))
    (first,) = in_thread(slack, shared["ts"], 1)
    assert vertex.received_pictures == [original]
    first_bytes = slack.uploaded_files[1].data
    assert first_bytes == edited_png(original, "make it night time")
    assert first.get("subtype") == "file_share"

    deadline = time.monotonic() + 10
    while not rows(
        store,
        "SELECT id FROM generations WHERE picture LIKE 'upload:%' AND thread_ts = :t",
        t=shared["ts"],
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    app.post_event(channel_message("dalle3: make it a watercolor", thread_ts=shared["ts"]))
    in_thread(slack, shared["ts"], 2)
    assert openai.received_pictures == [first_bytes]
    assert slack.uploaded_files[2].data == edited_png(first_bytes, "make it a watercolor")
    assert all(
        r.headers.get("authorization") == f"Bearer {slack.token}"
        for r in slack.calls("/files-pri/")
    )
