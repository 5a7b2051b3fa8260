"""The pure and stored parts of edits: reading a reply, the EditJob as queue data, and the
lineage columns (migration 7) on both databases."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from bot.core.jobs import EditJob, job_from_payload, job_to_payload
from bot.generation.providers import resolve_provider_name
from bot.generation.types import ImageRequest, PictureGoneError
from bot.slack.command import EditCommand, parse_edit
from bot.slack.delivery import Delivery
from bot.slack.retry import SlackWebClient
from bot.votes.db import VoteStore
from bot.votes.schema import MIGRATIONS
from tests.fakes.images import png_bytes
from tests.fakes.slack import FakeSlack

pytest_plugins = ("tests.test_votes_db",)  # backend_url: SQLite and PostgreSQL


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("make it night time", EditCommand("make it night time")),
        ("dalle3: make it a watercolor", EditCommand("make it a watercolor", "dalle3")),
        ("Gemini:  add a moon", EditCommand("add a moon", "imagen")),
        ("<@UBOT> imagen: add snow", EditCommand("add snow", "imagen")),
        ("note: keep the cat", EditCommand("note: keep the cat")),  # not a provider
        ("add &lt;stars&gt; &amp; clouds", EditCommand("add <stars> & clouds")),
        ("dalle3:", None),
        ("  <@UBOT>  ", None),
    ],
)
def test_parse_edit(text: str, expected: EditCommand | None) -> None:
    assert parse_edit(text, resolve_provider_name) == expected


def test_an_edit_job_survives_the_queue() -> None:
    job = EditJob(
        key="edit:T1:C1:1700000000.000200",
        request_id="abc",
        team_id="T1",
        channel_id="C1",
        user_id="U1",
        thread_ts="1700000000.000100",
        provider="dalle3",
        request=ImageRequest(prompt="make it night"),
        picture="gs://imgs/a.png",
        parent_id=7,
    )
    payload = json.loads(json.dumps(job_to_payload(job)))
    assert payload["kind"] == "edit"
    assert job_from_payload(payload) == job
    assert job.providers == ("dalle3",)


def record(store: VoteStore, **fields) -> int:
    defaults = {
        "user_id": "U1",
        "channel_id": "C1",
        "prompt": "a fox",
        "provider": "imagen",
        "model": "gemini-3.1-flash-image",
        "options": {},
        "timings": {},
        "outcome": "ok",
        "image_urls": [],
        "request_id": "r1",
    }
    return store.record_generation(**{**defaults, **fields})


def test_lineage_is_added_to_an_older_database_and_finds_the_newest_picture(
    backend_url: str,
) -> None:
    old = VoteStore(backend_url, migrations=MIGRATIONS[:6])
    with old.engine.begin() as conn:  # a picture drawn before edits existed
        conn.execute(
            text(
                "INSERT INTO generations (created_at, user_id, channel_id, prompt, provider, "
                "model, options, timings, outcome, image_urls, message_ts, request_id) VALUES "
                "(CURRENT_TIMESTAMP, 'U1', 'C1', 'old', 'imagen', 'm', '{}', '{}', 'ok', '[]', "
                "'1.000100', 'r0')"
            )
        )
    old.close()
    store = VoteStore(backend_url)
    assert store.schema_version() == len(MIGRATIONS)
    assert store.latest_picture("C1", "1.000100") is None  # its bytes were never kept

    first = record(store, message_ts="2.000100", picture="gs://imgs/first.png")
    assert store.latest_picture("C1", "2.000100").picture == "gs://imgs/first.png"
    edit = record(
        store,
        provider="dalle3",
        model="gpt-image-2",
        message_ts="2.000300",
        thread_ts="2.000100",
        picture="upload:F1",
        parent_id=first,
        parent_picture="gs://imgs/first.png",
    )
    record(store, outcome="content_policy", thread_ts="2.000100", parent_id=edit)
    newest = store.latest_picture("C1", "2.000100")
    assert (newest.generation_id, newest.provider, newest.picture) == (edit, "dalle3", "upload:F1")
    assert store.latest_picture("C2", "2.000100") is None  # another channel's thread
    assert store.picture_at("C1", "2.000300").generation_id == edit
    assert store.picture_named("C1", "upload:F1").generation_id == edit
    store.close()


# -- reading a person's upload: the bot token goes to Slack's file host only ------------------


def test_an_upload_is_read_with_the_bot_token_and_the_token_goes_nowhere_else() -> None:
    with FakeSlack() as slack, FakeSlack() as elsewhere:
        client = SlackWebClient(token=slack.token, base_url=slack.url + "/api/")
        delivery = Delivery(client)
        photo = png_bytes("a photo")
        shared = slack.share_file("C1", "U7", photo, "photo.png")
        file_id = shared["files"][0]["id"]

        assert delivery.download(file_id) == photo
        (read,) = slack.calls("/files-pri/")
        assert read.headers["authorization"] == f"Bearer {slack.token}"

        def pointing_elsewhere(args: dict) -> dict:
            url = f"{elsewhere.url}/files-pri/T1-{file_id}/photo.png"
            return {"file": {"id": file_id, "url_private": url}}

        slack.handle("files.info", pointing_elsewhere)
        with pytest.raises(PictureGoneError):
            delivery.download(file_id)
        assert elsewhere.calls() == []


def test_an_upload_that_is_deleted_or_unreadable_is_gone() -> None:
    with FakeSlack() as slack:
        delivery = Delivery(SlackWebClient(token=slack.token, base_url=slack.url + "/api/"))
        kept = slack.share_file("C1", "U7", png_bytes("kept"), "kept.png")["files"][0]["id"]
        gone = slack.share_file("C1", "U7", png_bytes("gone"), "gone.png")["files"][0]["id"]
        slack.delete_file(gone)
        with pytest.raises(PictureGoneError):
            delivery.download(gone)
        slack.scopes.discard("files:read")  # an install without files:read
        with pytest.raises(PictureGoneError):
            delivery.download(kept)
        text_file = slack.share_file("C1", "U7", b"just words", "notes.txt")["files"][0]["id"]
        slack.scopes.add("files:read")
        with pytest.raises(PictureGoneError):  # not a picture
            delivery.download(text_file)
