"""The fake Slack and the end-to-end harness, exercised with the real slack_sdk clients.

Until the app exists, these prove the fake answers as Slack does (so app tests built on it
mean something) and that the harness signs, encodes and runs processes correctly.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import parse_qs
from urllib.request import Request, urlopen

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from tests import slack_harness
from tests.fakes.images import png_bytes
from tests.fakes.slack import DEFAULT_SCOPES, RESPONSE_URL, UPLOAD, FakeSlack
from tests.slack_harness import (
    SIGNING_SECRET,
    AppProcess,
    block_actions_body,
    event_body,
    reaction_added,
    sign,
    slack_env,
    slash_command_body,
)

start_app = slack_harness.start_app  # the harness's fixture, made visible to this module

BLOCKS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*a red fox*"}},
    {"type": "image", "image_url": "https://example.com/fox.png", "alt_text": "a red fox"},
]


@pytest.fixture(scope="module")
def shared_slack():
    with FakeSlack() as fake:  # one server per module: stopping one costs 0.5 s
        yield fake


@pytest.fixture
def slack(shared_slack: FakeSlack) -> FakeSlack:
    shared_slack.reset()
    return shared_slack


def client_for(fake: FakeSlack, token: str | None = None) -> WebClient:
    return WebClient(token=token or fake.token, base_url=fake.url + "/api/", timeout=5)


def slack_error(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        call()
    return info.value


# -- messages -----------------------------------------------------------------------------
def test_history_is_newest_first_without_replies_and_metadata_only_when_asked(
    slack: FakeSlack,
) -> None:
    client = client_for(slack)
    tagged = {"event_type": "imagine_post", "event_payload": {"once": "abc"}}
    first = client.chat_postMessage(channel="C1", text="one", metadata=tagged)["ts"]
    second = client.chat_postMessage(channel="C1", text="two")["ts"]
    client.chat_postMessage(channel="C1", text="a reply", thread_ts=first)
    plain = client.conversations_history(channel="C1")
    assert [m["ts"] for m in plain["messages"]] == [second, first]
    assert "metadata" not in plain["messages"][1]
    full = client.conversations_history(channel="C1", include_all_metadata=True)
    assert full["messages"][1]["metadata"] == tagged
    assert float(first) > time.time() - 60  # ts are now, as Slack's are
    since = client.conversations_history(channel="C1", oldest=first)
    assert [m["ts"] for m in since["messages"]] == [second]  # oldest is exclusive
    inclusive = client.conversations_history(channel="C1", oldest=first, inclusive=True)
    assert len(inclusive["messages"]) == 2


def test_metadata_without_its_type_and_payload_is_refused(slack: FakeSlack) -> None:
    client = client_for(slack)
    for metadata in (
        {"event_type": "x"},
        {"event_payload": {}},
        {"event_type": "", "event_payload": {}},
    ):
        refused = slack_error(
            lambda m=metadata: client.chat_postMessage(channel="C1", text="t", metadata=m)
        )
        assert refused.response["error"] == "invalid_metadata_format"
    assert not slack.messages("C1")


def test_history_pages_with_a_cursor(slack: FakeSlack) -> None:
    client = client_for(slack)
    posted = [client.chat_postMessage(channel="C1", text=str(i))["ts"] for i in range(5)]
    # slack_sdk's pages are one response, read anew for each cursor
    pages = [
        ([m["ts"] for m in page["messages"]], page["has_more"])
        for page in client.conversations_history(channel="C1", limit=2)
    ]
    assert [len(ts) for ts, _ in pages] == [2, 2, 1]
    assert [t for ts, _ in pages for t in ts] == posted[::-1]
    assert [more for _, more in pages] == [True, True, False]


def test_replies_are_the_parent_then_the_thread_oldest_first(slack: FakeSlack) -> None:
    client = client_for(slack)
    parent = slack.person_says("C1", "U1", "a prompt")
    replies = [client.chat_postMessage(channel="C1", text=t, thread_ts=parent)["ts"] for t in "ab"]
    client.chat_postMessage(channel="C1", text="elsewhere")
    thread = client.conversations_replies(channel="C1", ts=parent)
    assert [m["ts"] for m in thread["messages"]] == [parent, *replies]
    missing = slack_error(lambda: client.conversations_replies(channel="C1", ts="1.000001"))
    assert missing.response["error"] == "thread_not_found"


def test_history_needs_its_scope_and_the_bot_in_the_conversation(slack: FakeSlack) -> None:
    client = client_for(slack)
    slack.not_member("C2")
    assert (
        slack_error(lambda: client.conversations_history(channel="C2")).response["error"]
        == "not_in_channel"
    )
    slack.add_channel("G1", member=False)
    assert (
        slack_error(lambda: client.conversations_history(channel="G1")).response["error"]
        == "channel_not_found"
    )
    slack.scopes.discard("channels:history")
    refused = slack_error(lambda: client.conversations_history(channel="C1"))
    assert refused.response["error"] == "missing_scope"
    assert refused.response["needed"] == "channels:history"
    slack.add_channel("G2", member=True)
    assert client.conversations_history(channel="G2")["ok"]  # groups:history is kept


def test_post_update_and_ephemeral_round_trip(slack: FakeSlack) -> None:
    client = client_for(slack)
    auth = client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == ("UBOT", "BBOT", "T1")

    first = client.chat_postMessage(channel="C123", text="drawing...", blocks=BLOCKS)
    second = client.chat_postMessage(channel="C123", text="second")
    assert first["channel"] == "C123"
    assert float(second["ts"]) > float(first["ts"])
    assert first["ts"].count(".") == 1 and len(first["ts"].split(".")[1]) == 6

    sent = slack.calls_to("chat.postMessage")[0]
    assert sent["blocks"] == BLOCKS and sent["text"] == "drawing..."

    updated = client.chat_update(channel="C123", ts=first["ts"], text="done", blocks=BLOCKS[:1])
    assert updated["ts"] == first["ts"]
    now = slack.message("C123", first["ts"])
    assert now["text"] == "done" and now["blocks"] == BLOCKS[:1] and "edited" in now
    assert [m["text"] for m in slack.messages("C123")] == ["done", "second"]

    eph = client.chat_postEphemeral(channel="C123", user="U9", text="only you")
    assert eph["message_ts"]
    assert [e["text"] for e in slack.ephemerals("U9")] == ["only you"]
    assert slack.ephemerals("U123") == []

    client.chat_delete(channel="C123", ts=second["ts"])
    assert [m["ts"] for m in slack.messages("C123")] == [first["ts"]]
    missing = slack_error(lambda: client.chat_update(channel="C123", ts="1.000001", text="x"))
    assert missing.response["error"] == "message_not_found"


def test_form_encoded_blocks_are_decoded(slack: FakeSlack) -> None:
    client = client_for(slack)
    client.api_call(
        "chat.postMessage",
        params={"channel": "C1", "text": "hi", "blocks": json.dumps(BLOCKS)},
    )
    assert slack.calls_to("chat.postMessage")[0]["blocks"] == BLOCKS
    assert slack.messages("C1")[0]["blocks"] == BLOCKS


def test_block_kit_limits_are_enforced(slack: FakeSlack) -> None:
    client = client_for(slack)
    no_alt = [{"type": "image", "image_url": "https://example.com/x.png"}]
    err = slack_error(lambda: client.chat_postMessage(channel="C1", text="x", blocks=no_alt))
    assert err.response["error"] == "invalid_blocks"
    too_many = [{"type": "divider"}] * 51
    err = slack_error(lambda: client.chat_postMessage(channel="C1", text="x", blocks=too_many))
    assert err.response["error"] == "invalid_blocks"
    assert slack.messages("C1") == []


@pytest.mark.parametrize(
    ("block", "pointer"),
    [
        ({"type": "image", "image_url": "https://x/y.png", "alt_text": "a" * 2001}, "/alt_text"),
        (
            {
                "type": "image",
                "image_url": "https://x/y.png",
                "alt_text": "a",
                "title": {"type": "plain_text", "text": "t" * 2001},
            },
            "/title/text",
        ),
        ({"type": "image", "image_url": "https://x/" + "y" * 3000, "alt_text": "a"}, "/image_url"),
        ({"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}}, "/text/text"),
        (
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]},
            "/fields/0/text",
        ),
        ({"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}, "/text/text"),
        ({"type": "context", "elements": [{"type": "mrkdwn", "text": "c" * 3001}]}, "/elements/0"),
        ({"type": "context", "elements": [{"type": "mrkdwn", "text": ""}]}, "/elements/0/text"),
        (
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": "b" * 76}}],
            },
            "/elements/0/text/text",
        ),
    ],
    ids=[
        "alt_text",
        "image-title",
        "image_url",
        "section",
        "field",
        "header",
        "context",
        "empty",
        "button",
    ],
)
def test_every_text_limit_is_enforced(slack: FakeSlack, block, pointer) -> None:
    """Slack refuses a message whose any text is over its limit (invalid_blocks, with a
    json-pointer to the field), rather than cutting it."""
    client = client_for(slack)
    err = slack_error(lambda: client.chat_postMessage(channel="C1", text="x", blocks=[block]))
    assert err.response["error"] == "invalid_blocks"
    assert any(f"[json-pointer:/blocks/0{pointer}" in e for e in err.response["errors"])
    assert slack.messages("C1") == []


def test_texts_at_their_limits_are_accepted(slack: FakeSlack) -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3000}},
        {"type": "image", "image_url": "https://x/y.png", "alt_text": "a" * 2000},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c" * 3000}] * 10},
    ]
    assert client_for(slack).chat_postMessage(channel="C1", text="x", blocks=blocks)["ok"]


def test_concurrent_posts_get_unique_increasing_ts(slack: FakeSlack) -> None:
    client = client_for(slack)
    results: list[str] = []

    def post(i: int) -> None:
        results.append(client.chat_postMessage(channel="C1", text=str(i))["ts"])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 20
    assert [m["ts"] for m in slack.messages("C1")] == sorted(results, key=float)


# -- channels -----------------------------------------------------------------------------
def test_not_in_channel_until_joined(slack: FakeSlack) -> None:
    """As on Slack: with chat:write.public the bot posts in a public channel it is not in,
    but a person's reactions there reach it only once it has joined."""
    client = client_for(slack)
    slack.not_member("C777")
    assert client.conversations_info(channel="C777")["channel"]["is_member"] is False
    assert client.chat_postMessage(channel="C777", text="hi")["ok"]  # chat:write.public
    assert not slack.delivers_events_from("C777")
    err = slack_error(lambda: client.files_upload_v2(channel="C777", content=b"x", filename="a"))
    assert err.response["error"] == "not_in_channel"  # uploads need membership

    joined = client.conversations_join(channel="C777")
    assert joined["channel"]["id"] == "C777"
    assert slack.delivers_events_from("C777")
    info = client.conversations_info(channel="C777")["channel"]
    assert info["is_member"] is True and info["is_private"] is False
    assert slack.methods_called() == [
        "conversations.info",
        "chat.postMessage",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
        "conversations.join",
        "conversations.info",
    ]


def test_without_chat_write_public_a_public_channel_needs_joining(slack: FakeSlack) -> None:
    client = client_for(slack)
    slack.scopes.discard("chat:write.public")
    slack.not_member("C777")
    err = slack_error(lambda: client.chat_postMessage(channel="C777", text="hi"))
    assert err.response["error"] == "not_in_channel"
    assert slack.messages("C777") == []


def test_each_method_needs_its_scope(slack: FakeSlack) -> None:
    client = client_for(slack)
    slack.not_member("C777")
    slack.scopes -= {"channels:join", "channels:read"}
    err = slack_error(lambda: client.conversations_join(channel="C777"))
    assert (err.response["error"], err.response["needed"]) == ("missing_scope", "channels:join")
    err = slack_error(lambda: client.conversations_info(channel="C777"))
    assert err.response["needed"] == "channels:read"
    assert not slack.delivers_events_from("C777")
    err = slack_error(lambda: client.conversations_info(channel="G1"))  # the manifest's lack
    assert err.response["needed"] == "groups:read"
    assert "chat:write" in client.auth_test().headers["X-OAuth-Scopes"]


def test_the_fakes_scopes_are_the_manifests() -> None:
    manifest = (Path(__file__).resolve().parent.parent / "manifest.yml").read_text()
    bot = manifest.split("    bot:\n", 1)[1].split("settings:", 1)[0]
    scopes = {line.split("#")[0].strip()[2:].strip() for line in bot.splitlines()}
    assert scopes - {""} == DEFAULT_SCOPES


def test_private_channels_and_dms(slack: FakeSlack) -> None:
    client = client_for(slack)
    slack.scopes |= {"groups:read", "im:read"}
    slack.not_member("G555")
    assert (
        slack_error(lambda: client.conversations_join(channel="G555")).response["error"]
        == "method_not_supported_for_channel_type"
    )
    assert (
        slack_error(lambda: client.chat_postMessage(channel="G555", text="x")).response["error"]
        == "channel_not_found"
    )
    assert (
        slack_error(lambda: client.conversations_info(channel="G555")).response["error"]
        == "channel_not_found"
    )
    member = client.conversations_info(channel="G1")["channel"]
    assert member["is_private"] is True and member["is_member"] is True
    assert client.conversations_info(channel="D1")["channel"]["is_im"] is True
    slack.missing("C404")
    err = slack_error(lambda: client.conversations_join(channel="C404"))
    assert err.response["error"] == "channel_not_found"


# -- reactions ----------------------------------------------------------------------------
def test_reactions_add_remove_and_duplicates(slack: FakeSlack) -> None:
    client = client_for(slack)
    ts = client.chat_postMessage(channel="C1", text="vote")["ts"]
    client.reactions_add(channel="C1", timestamp=ts, name="one")
    client.reactions_add(channel="C1", timestamp=ts, name="two")
    dup = slack_error(lambda: client.reactions_add(channel="C1", timestamp=ts, name="one"))
    assert dup.response["error"] == "already_reacted"
    slack.add_user_reaction("C1", ts, "one", "U5")
    assert slack.reactions("C1", ts) == {"one": ["UBOT", "U5"], "two": ["UBOT"]}
    got = client.reactions_get(channel="C1", timestamp=ts)["message"]["reactions"]
    assert {r["name"]: r["count"] for r in got} == {"one": 2, "two": 1}

    client.reactions_remove(channel="C1", timestamp=ts, name="two")
    assert slack.reactions("C1", ts) == {"one": ["UBOT", "U5"]}
    gone = slack_error(lambda: client.reactions_remove(channel="C1", timestamp=ts, name="two"))
    assert gone.response["error"] == "no_reaction"
    nowhere = slack_error(lambda: client.reactions_add(channel="C1", timestamp="9.9", name="one"))
    assert nowhere.response["error"] == "message_not_found"


# -- files --------------------------------------------------------------------------------
def test_files_upload_v2_end_to_end(slack: FakeSlack) -> None:
    client = client_for(slack)
    parent = client.chat_postMessage(channel="C123", text="here it comes")["ts"]
    data = png_bytes("fox", size=(128, 96))

    result = client.files_upload_v2(
        channel="C123",
        content=data,
        filename="fox.png",
        title="a red fox",
        initial_comment="imagen: a red fox",
        thread_ts=parent,
    )
    file_id = result["file"]["id"]
    # as Slack answers: ids and titles only; files.info says where the file was shared
    assert result["file"] == {"id": file_id, "title": "a red fox"}

    assert slack.methods_called() == [
        "chat.postMessage",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ]
    step1 = slack.calls_to("files.getUploadURLExternal")[0]
    assert step1["filename"] == "fox.png" and int(step1["length"]) == len(data)
    upload_posts = slack.calls(f"/upload/{file_id}")
    assert len(upload_posts) == 1 and upload_posts[0].body == data
    step3 = slack.calls_to("files.completeUploadExternal")[0]
    assert step3["files"] == [{"id": file_id, "title": "a red fox"}]
    assert step3["channel_id"] == "C123" and step3["thread_ts"] == parent

    (uploaded,) = slack.uploaded_files
    assert uploaded.data == data and uploaded.filename == "fox.png"
    shared = slack.messages("C123")[-1]
    assert shared["files"][0]["id"] == file_id
    assert shared["text"] == "imagen: a red fox" and shared["thread_ts"] == parent

    info = client.files_info(file=file_id)["file"]
    share = info["shares"]["public"]["C123"][0]
    assert share["ts"] == shared["ts"]


def test_a_files_message_takes_blocks_unless_it_has_a_comment(slack: FakeSlack) -> None:
    """files.completeUploadExternal: `blocks` (a JSON string) make the share message, checked
    as chat.postMessage checks them; `initial_comment` wins over them; a `markdown` block is
    answered `internal_error` there, and the file can still be shared after a refusal."""
    client = client_for(slack)
    button = {"type": "button", "text": {"type": "plain_text", "text": "Again"}, "value": "1"}
    buttons = {"type": "actions", "elements": [button]}

    def uploaded() -> list[dict]:
        step1 = client.files_getUploadURLExternal(filename="a.png", length=4)
        urlopen(Request(step1["upload_url"], data=b"\x89PNG", method="POST"), timeout=5)
        return [{"id": step1["file_id"], "title": "a"}]

    def complete(files: list[dict], **content):
        return client.files_completeUploadExternal(files=files, channel_id="C1", **content)

    complete(uploaded(), blocks=json.dumps([buttons]))
    [message] = slack.messages("C1")
    assert message["files"] and message["blocks"] == [buttons]
    complete(uploaded(), blocks=json.dumps([buttons]), initial_comment="words")
    assert "blocks" not in slack.messages("C1")[1] and slack.messages("C1")[1]["text"] == "words"

    files = uploaded()
    too_long = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
    err = slack_error(lambda: complete(files, blocks=json.dumps([too_long])))
    assert err.response["error"] == "invalid_blocks"
    markdown = {"type": "markdown", "text": "**hi**"}
    err = slack_error(lambda: complete(files, blocks=json.dumps([markdown])))
    assert err.response["error"] == "internal_error"
    assert len(slack.messages("C1")) == 2
    complete(files, initial_comment="plain")
    assert slack.messages("C1")[2]["text"] == "plain"


def test_file_upload_into_channel_bot_is_not_in(slack: FakeSlack) -> None:
    client = client_for(slack)
    slack.not_member("C777")
    err = slack_error(
        lambda: client.files_upload_v2(channel="C777", content=b"\x89PNG", filename="a.png")
    )
    assert err.response["error"] == "not_in_channel"
    assert slack.uploaded_files == [] and slack.messages("C777") == []


def test_upload_alt_text_over_1000_characters_is_refused(slack: FakeSlack) -> None:
    """files.getUploadURLExternal: `alt_txt_too_large` past 1,000 characters."""
    client = client_for(slack)
    too_long = "a" * 1001
    err = slack_error(
        lambda: client.files_upload_v2(
            channel="C1", content=b"\x89PNG", filename="a.png", alt_txt=too_long
        )
    )
    assert err.response["error"] == "alt_txt_too_large"
    assert slack.uploaded_files == []
    client.files_upload_v2(channel="C1", content=b"\x89PNG", filename="a.png", alt_txt="a" * 1000)
    assert slack.uploaded_files[0].alt_txt == "a" * 1000


def test_complete_without_uploading_bytes_fails(slack: FakeSlack) -> None:
    client = client_for(slack)
    step1 = client.files_getUploadURLExternal(filename="a.png", length=10)
    err = slack_error(
        lambda: client.files_completeUploadExternal(
            files=[{"id": step1["file_id"], "title": "a"}], channel_id="C1"
        )
    )
    assert err.response["error"] == "file_not_found"


# -- errors -------------------------------------------------------------------------------
def test_rate_limit_is_retried_after_retry_after(slack: FakeSlack) -> None:
    client = client_for(slack)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    started = time.monotonic()
    assert client.chat_postMessage(channel="C1", text="patience")["ok"]
    assert time.monotonic() - started >= 1.0  # slack_sdk honoured Retry-After
    assert len(slack.calls_to("chat.postMessage")) == 2
    assert [m["text"] for m in slack.messages("C1")] == ["patience"]


def test_rate_limit_without_retry_handler_surfaces_429(slack: FakeSlack) -> None:
    client = client_for(slack)
    slack.rate_limit("reactions.add", times=1, retry_after=7)
    err = slack_error(lambda: client.reactions_add(channel="C1", timestamp="1.1", name="x"))
    assert err.response.status_code == 429
    assert err.response.headers["Retry-After"] in ("7", ["7"])
    assert err.response["error"] == "ratelimited"


def test_server_errors_answer_a_page_and_post_nothing(slack: FakeSlack) -> None:
    client = client_for(slack)
    client.retry_handlers.clear()
    slack.server_error("chat.postMessage", times=1, status=503)
    err = slack_error(lambda: client.chat_postMessage(channel="C1", text="x"))
    assert err.response.status_code == 503
    assert slack.messages("C1") == []
    assert client.chat_postMessage(channel="C1", text="x")["ok"]  # then the default answer

    slack.server_error(UPLOAD, times=1, status=500)
    with pytest.raises(HTTPError) as failed:  # slack_sdk's step 2 is a plain urllib POST
        client.files_upload_v2(channel="C1", content=b"\x89PNG", filename="a.png")
    assert failed.value.code == 500 and slack.uploaded_files == []

    url = slack.response_url()
    slack.server_error(RESPONSE_URL, times=1, status=502)
    assert WebhookClient(url).send(text="hello").status_code == 502
    assert WebhookClient(url).send(text="hello").status_code == 200
    assert [r.text for r in slack.responses_to(url)] == ["hello"]


def test_wrong_token_is_invalid_auth(slack: FakeSlack) -> None:
    bad = client_for(slack, token="xoxb-not-the-right-token")
    err = slack_error(lambda: bad.chat_postMessage(channel="C1", text="x"))
    assert err.response["error"] == "invalid_auth"
    assert slack.messages("C1") == []
    anonymous = WebClient(base_url=slack.url + "/api/")
    assert slack_error(anonymous.auth_test).response["error"] == "not_authed"


def test_scripted_failure_then_default_answer(slack: FakeSlack) -> None:
    client = client_for(slack)
    slack.fail("chat.postMessage", "fatal_error")
    assert slack_error(lambda: client.chat_postMessage(channel="C1", text="x")).response[
        "error"
    ] == ("fatal_error")
    assert client.chat_postMessage(channel="C1", text="x")["ok"]


# -- response_url -------------------------------------------------------------------------
def test_response_url_posts_are_recorded_and_limited(slack: FakeSlack) -> None:
    url = slack.response_url()
    hook = WebhookClient(url)
    resp = hook.send(text="working on it", response_type="ephemeral")
    assert resp.status_code == 200
    hook.send(text="done", blocks=BLOCKS, replace_original=True, response_type="in_channel")
    (first, second) = slack.responses_to(url)
    assert first.text == "working on it" and first.body["response_type"] == "ephemeral"
    assert second.blocks == BLOCKS and second.body["replace_original"] is True
    for _ in range(3):
        assert hook.send(text="more").status_code == 200
    assert hook.send(text="one too many").status_code == 404
    assert len(slack.responses_to(url)) == 5
    assert slack.responses_to(slack.response_url()) == []


def test_wait_for_polls_and_times_out(slack: FakeSlack) -> None:
    client = client_for(slack)
    timer = threading.Timer(0.2, lambda: client.chat_postMessage(channel="C1", text="late"))
    timer.start()
    found = slack.wait_for(lambda: slack.messages("C1"), timeout=5)
    assert found[0]["text"] == "late"
    with pytest.raises(AssertionError, match="chat.postMessage"):
        slack.wait_for(lambda: slack.messages("C2"), timeout=0.1)
    with pytest.raises(AssertionError):
        slack.wait_for(lambda: slack.messages("C2")[0], timeout=0.1)


# -- harness payloads ---------------------------------------------------------------------
def test_sign_matches_slack_verification() -> None:
    body = slash_command_body("imagen a fox & a <hen>", user_id="U42", channel_id="C9")
    headers = sign(body, SIGNING_SECRET)
    verifier = SignatureVerifier(SIGNING_SECRET)
    assert verifier.is_valid_request(body, headers)
    assert verifier.is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b"x", headers)
    stale = sign(body, SIGNING_SECRET, timestamp=int(time.time()) - 600)
    assert not verifier.is_valid_request(body, stale)


def test_slash_command_body_parses_back() -> None:
    body = slash_command_body(
        "imagen a fox & a <hen> = 100%",
        user_id="U42",
        channel_id="C9",
        channel_name="art",
        response_url="http://127.0.0.1:1/response/R1",
    )
    fields = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    assert list(fields) == [
        "token",
        "team_id",
        "team_domain",
        "channel_id",
        "channel_name",
        "user_id",
        "user_name",
        "command",
        "text",
        "api_app_id",
        "is_enterprise_install",
        "response_url",
        "trigger_id",
    ]
    assert fields["text"] == "imagen a fox & a <hen> = 100%"
    assert fields["command"] == "/imagine"
    assert (fields["user_id"], fields["channel_id"], fields["channel_name"]) == ("U42", "C9", "art")
    assert fields["response_url"] == "http://127.0.0.1:1/response/R1"


def test_event_and_action_bodies_have_slacks_shape() -> None:
    event = reaction_added("U5", ":one:", "C1", "1700000000.000100")
    envelope = json.loads(event_body(event, event_id="Ev1"))
    assert envelope["type"] == "event_callback" and envelope["event_id"] == "Ev1"
    assert envelope["event"]["reaction"] == "one"
    assert envelope["event"]["item"] == {
        "type": "message",
        "channel": "C1",
        "ts": event["item"]["ts"],
    }
    form = parse_qs(block_actions_body(action_id="regenerate", value="abc").decode())
    payload = json.loads(form["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["actions"][0]["action_id"] == "regenerate"
    assert payload["actions"][0]["value"] == "abc"


# -- AppProcess ---------------------------------------------------------------------------
# A stand-in for `python -m bot serve` (the app is written elsewhere): it serves /healthz after
# a short delay and answers POST /slack/events as Bolt does: 401 on a bad signature, else 200.
STAND_IN = r"""
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs
from urllib.request import Request, urlopen
from slack_sdk.signature import SignatureVerifier

verifier = SignatureVerifier(os.environ["SLACK_SIGNING_SECRET"])
time.sleep(0.3)

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self.reply(200 if self.path == "/healthz" else 404, {"ok": True})
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not verifier.is_valid_request(body, dict(self.headers)):
            print("rejected a request with a bad signature", flush=True)
            return self.reply(401, {"error": "invalid request"})
        fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        retry = self.headers.get("X-Slack-Retry-Num")
        self.reply(200, {"text": fields.get("text"), "retry": retry})

print("serving on", os.environ["PORT"], flush=True)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def test_app_process_starts_signs_and_stops(slack: FakeSlack) -> None:
    env = {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": slack.token}
    with AppProcess(env, args=("-c", STAND_IN)) as app:
        status, body, elapsed = app.post_command("imagen a fox")
        assert status == 200 and json.loads(body)["text"] == "imagen a fox"
        assert 0 <= elapsed < 5
        status, _, _ = app.post_command("imagen a fox", secret="forged-secret")
        assert status == 401
        status, body, _ = app.post_event(reaction_added("U5", "one", "C1", "1.1"), retry_num=1)
        assert status == 200 and json.loads(body)["retry"] == "1"
        assert app.get("/healthz")[0] == 200
    assert app.returncode is not None
    logs = app.logs()
    assert f"serving on {app.port}" in logs and "bad signature" in logs
    assert slack.token not in logs and SIGNING_SECRET not in logs


def test_start_app_fixture_serves_and_isolates(start_app, tmp_path) -> None:
    app = start_app({"SLACK_SIGNING_SECRET": SIGNING_SECRET}, args=("-c", STAND_IN))
    assert app.post_command("hi")[0] == 200
    assert app.workdir.parent == tmp_path and app.env["HOME"] == str(app.workdir)
    assert app.env["PYTHONPATH"] == str(Path(__file__).resolve().parent.parent)


def test_app_process_that_exits_early_reports_its_stderr() -> None:
    script = (
        "import sys; print('error: SLACK_SIGNING_SECRET is not set', file=sys.stderr); sys.exit(2)"
    )
    app = AppProcess({}, args=("-c", script))
    with pytest.raises(RuntimeError, match="(?s)status 2.*SLACK_SIGNING_SECRET is not set"):
        app.start()


# A minimal real Bolt app (not ours): proves Bolt accepts the harness's payloads as Slack's and
# that Bolt's own Web API calls and respond() work against the fake.
BOLT_STAND_IN = r"""
import os
from wsgiref.simple_server import make_server, WSGIRequestHandler
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

client = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])
app = App(signing_secret=os.environ["SLACK_SIGNING_SECRET"], client=client,
          token=os.environ["SLACK_BOT_TOKEN"])

@app.command("/imagine")
def command(ack, body, respond, client):
    ack(text="on it")
    respond(text="working: " + body["text"])
    posted = client.chat_postMessage(channel=body["channel_id"], text=body["text"])
    client.reactions_add(channel=body["channel_id"], timestamp=posted["ts"], name="one")

@app.event("reaction_added")
def reaction(event, client):
    client.chat_postMessage(channel=event["item"]["channel"], text="vote " + event["reaction"],
                            thread_ts=event["item"]["ts"])

@app.action("again")
def again(ack, body, respond):
    ack()
    respond(text="again " + body["actions"][0]["value"], replace_original=False)

handler = SlackRequestHandler(app)

def wsgi(environ, start_response):
    if environ["PATH_INFO"] == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    return handler(environ, start_response)

class Quiet(WSGIRequestHandler):
    def log_message(self, *a):
        pass

make_server("127.0.0.1", int(os.environ["PORT"]), wsgi, handler_class=Quiet).serve_forever()
"""


def test_real_bolt_app_accepts_harness_payloads(slack: FakeSlack) -> None:
    with AppProcess(slack_env(slack), args=("-c", BOLT_STAND_IN)) as app:
        url = slack.response_url()
        status, body, _ = app.post_command("a red fox", channel_id="C5", response_url=url)
        assert status == 200 and "on it" in body
        slack.wait_for(lambda: slack.responses_to(url))
        assert slack.responses_to(url)[0].text == "working: a red fox"
        (posted,) = slack.wait_for(
            lambda: slack.reactions("C5", slack.messages("C5")[0]["ts"]) and slack.messages("C5")
        )
        assert posted["text"] == "a red fox"

        status, _, _ = app.post_event(reaction_added("U7", "one", "C5", posted["ts"]))
        assert status == 200
        reply = slack.wait_for(lambda: [m for m in slack.messages("C5") if m.get("thread_ts")])
        assert reply[0]["text"] == "vote one"

        action_url = slack.response_url()
        status, _, _ = app.post_action(action_id="again", value="42", response_url=action_url)
        assert status == 200
        assert slack.wait_for(lambda: slack.responses_to(action_url))[0].text == "again 42"

        assert app.post_command("x", secret="forged")[0] == 401
    assert slack.token not in app.logs()


MODAL = {
    "type": "modal",
    "callback_id": "f",
    "title": {"type": "plain_text", "text": "Imagine"},
    "submit": {"type": "plain_text", "text": "Draw"},
    "blocks": [
        {
            "type": "input",
            "block_id": "prompt",
            "label": {"type": "plain_text", "text": "Prompt"},
            "element": {"type": "plain_text_input", "action_id": "value"},
        }
    ],
}


def test_views_open_takes_a_trigger_once_within_three_seconds(slack: FakeSlack) -> None:
    client = client_for(slack)
    trigger = slack.trigger()
    view = client.views_open(trigger_id=trigger, view=MODAL)["view"]
    assert view["id"].startswith("V") and view["hash"] and view["callback_id"] == "f"
    assert slack.views()[0]["id"] == view["id"]
    reused = slack_error(lambda: client.views_open(trigger_id=trigger, view=MODAL))
    assert reused.response["error"] == "exchanged_trigger_id"
    stale = slack.trigger(age=3.5)
    assert (
        slack_error(lambda: client.views_open(trigger_id=stale, view=MODAL)).response["error"]
        == "expired_trigger_id"
    )
    unknown = slack_error(lambda: client.views_open(trigger_id="1.2.3", view=MODAL))
    assert unknown.response["error"] == "invalid_trigger_id"
    no_submit = {k: v for k, v in MODAL.items() if k != "submit"}
    bad = slack_error(lambda: client.views_open(trigger_id=slack.trigger(), view=no_submit))
    assert bad.response["error"] == "invalid_arguments"
    long_title = {**MODAL, "title": {"type": "plain_text", "text": "x" * 25}}
    bad = slack_error(lambda: client.views_open(trigger_id=slack.trigger(), view=long_title))
    assert bad.response["error"] == "invalid_arguments"


def test_views_update_checks_the_view_and_its_hash(slack: FakeSlack) -> None:
    client = client_for(slack)
    view = client.views_open(trigger_id=slack.trigger(), view=MODAL)["view"]
    updated = client.views_update(view_id=view["id"], hash=view["hash"], view=MODAL)["view"]
    assert updated["id"] == view["id"]
    stale = slack_error(
        lambda: client.views_update(view_id=view["id"], hash="old.hash", view=MODAL)
    )
    assert stale.response["error"] == "hash_conflict"
    assert (
        slack_error(lambda: client.views_update(view_id="VNOPE", view=MODAL)).response["error"]
        == "not_found"
    )


def test_chat_delete_only_the_bots_own_and_files_delete(slack: FakeSlack) -> None:
    client = client_for(slack)
    ts = client.chat_postMessage(channel="C1", text="mine")["ts"]
    theirs = slack.person_says("C1", "U9", "not the bot's")
    refused = slack_error(lambda: client.chat_delete(channel="C1", ts=theirs))
    assert refused.response["error"] == "cant_delete_message"
    client.chat_delete(channel="C1", ts=ts)
    assert slack.message("C1", ts) is None
    gone = slack_error(lambda: client.chat_delete(channel="C1", ts=ts))
    assert gone.response["error"] == "message_not_found"
    file_id = client.files_upload_v2(channel="C1", content=png_bytes("x"), filename="a.png")[
        "files"
    ][0]["id"]
    assert any(m.get("files") for m in slack.messages("C1"))
    client.files_delete(file=file_id)
    assert not any(m.get("files") for m in slack.messages("C1"))
    again = slack_error(lambda: client.files_delete(file=file_id))
    assert again.response["error"] == "file_not_found"


# -- App Home: views.publish and chat.getPermalink ------------------------------------------
def _home(blocks: list | None = None, **fields) -> dict:
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}
    return {"type": "home", "blocks": [section] if blocks is None else blocks, **fields}


def test_views_publish_keeps_the_users_home_tab_and_its_hash(slack: FakeSlack) -> None:
    client = client_for(slack)
    slack.add_user("U1")
    first = client.views_publish(user_id="U1", view=_home())["view"]
    assert slack.home_view("U1")["blocks"] == _home()["blocks"]
    second = client.views_publish(user_id="U1", view=_home(), hash=first["hash"])["view"]
    assert second["id"] == first["id"] and second["hash"] != first["hash"]
    err = slack_error(lambda: client.views_publish(user_id="U1", view=_home(), hash=first["hash"]))
    assert err.response["error"] == "hash_conflict"


@pytest.mark.parametrize(
    ("user", "view", "error"),
    [
        ("UNOBODY", _home(), "invalid_arguments"),  # not a person in the workspace
        ("U1", _home(type="modal"), "invalid_arguments"),
        ("U1", _home([{"type": "divider"}] * 101), "invalid_arguments"),  # 100 blocks at most
        (
            "U1",
            _home([{"type": "section", "text": {"type": "mrkdwn", "text": ""}}]),
            "invalid_arguments",
        ),  # fmt: skip
        ("U1", _home(private_metadata="x" * 3001), "invalid_arguments"),
        (
            "U1",
            _home(
                [
                    {
                        "type": "section",
                        "text": {"type": "mrkdwn", "text": "x"},
                        "accessory": {
                            "type": "static_select",
                            "action_id": "a",
                            "options": [
                                {"text": {"type": "plain_text", "text": "o" * 76}, "value": "o"}
                            ],
                        },
                    }
                ]
            ),
            "invalid_arguments",
        ),  # fmt: skip
        (
            "U1",
            _home([{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 260_000}}]),
            "view_too_large",
        ),  # fmt: skip
    ],
)
def test_views_publish_refuses_what_slack_refuses(slack: FakeSlack, user, view, error) -> None:
    slack.add_user("U1")
    err = slack_error(lambda: client_for(slack).views_publish(user_id=user, view=view))
    assert err.response["error"] == error
    assert slack.home_view(user) is None


def test_views_publish_takes_100_blocks_and_a_valid_menu(slack: FakeSlack) -> None:
    slack.add_user("U1")
    option = {"text": {"type": "plain_text", "text": "imagen"}, "value": "imagen"}
    menu = {"type": "static_select", "action_id": "m", "options": [option]}
    blocks = [{"type": "divider"}] * 99 + [
        {"type": "section", "text": {"type": "mrkdwn", "text": "x"},
         "accessory": {**menu, "initial_option": option}}
    ]  # fmt: skip
    client_for(slack).views_publish(user_id="U1", view=_home(blocks))
    assert len(slack.home_view("U1")["blocks"]) == 100
    wrong = {**menu, "initial_option": {**option, "value": "dalle3"}}
    blocks[-1] = {**blocks[-1], "accessory": wrong}
    err = slack_error(lambda: client_for(slack).views_publish(user_id="U1", view=_home(blocks)))
    assert err.response["error"] == "invalid_arguments"


def test_chat_get_permalink(slack: FakeSlack) -> None:
    client = client_for(slack)
    ts = client.chat_postMessage(channel="C1", text="hi")["ts"]
    link = client.chat_getPermalink(channel="C1", message_ts=ts)["permalink"]
    assert link == f"https://imagine-test.slack.com/archives/C1/p{ts.replace('.', '')}"
    err = slack_error(lambda: client.chat_getPermalink(channel="C1", message_ts="1.000001"))
    assert err.response["error"] == "message_not_found"
