"""End to end: the app as a real process in HTTP mode, signed requests as Slack sends them,
the real slack_sdk / google-auth / openai clients talking to the fakes on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from bot.votes.db import VoteStore
from bot.votes.schema import GENERATIONS
from tests.fakes._http import Reply
from tests.fakes.gcs import GcsFront
from tests.fakes.images import png_bytes
from tests.fakes.openai_images import FakeOpenAIImages
from tests.fakes.slack import RESPONSE_URL, UPLOAD, FakeSlack, parse_body, shared_words
from tests.fakes.vertex import FakeVertexAI, service_account_info
from tests.services import postgres_schema
from tests.slack_harness import (
    SIGNING_SECRET,
    AppProcess,
    block_actions_body,
    free_port,
    providers_env,
    slack_env,
    slash_command_body,
)

AZURE_KEY = "azure-key-that-must-never-be-logged"


@pytest.fixture(scope="module")
def fakes():
    with (
        FakeSlack() as slack,
        FakeVertexAI() as vertex,
        FakeOpenAIImages(
            azure_api_key=AZURE_KEY, deployments={"img": "gpt-image-2", "dalle": "dall-e-3"}
        ) as openai,
    ):
        key = service_account_info(token_uri=vertex.url + "/token")
        yield slack, vertex, openai, key


@pytest.fixture(autouse=True)
def clean(fakes):
    for fake in fakes[:3]:
        fake.quiesce()
        fake.reset()
    fakes[2].generation_delay = 0.0
    fakes[2].forever = None
    yield


def provider_env(fakes, deployment="img", model="gpt-image-2", **extra) -> dict[str, str]:
    slack, vertex, openai, key = fakes
    return slack_env(
        slack,
        **providers_env(vertex, openai, key, deployment, model),
        **{
            "IMAGINE_RETRY_BACKOFF": "0.01",
            "IMAGINE_PROVIDER_TIMEOUT": "5",
            "IMAGINE_JOB_DEADLINE": "90",  # a Retry-After of 200 s is then beyond it
            **extra,
        },
    )


@pytest.fixture(scope="module")
def app(fakes):
    """One app for the tests that share the default settings (no bucket: Slack uploads)."""
    with AppProcess(provider_env(fakes)) as process:
        yield process


def command(app: AppProcess, slack: FakeSlack, text: str, **fields):
    """Send `/imagine text`; return (status, ack body, seconds, response_url)."""
    url = slack.response_url()
    status, body, elapsed = app.post_command(text, response_url=url, **fields)
    return status, body, elapsed, url


def ack_text(body: str) -> str:
    """Bolt answers `ack(text=...)` as plain text, `ack(blocks=...)` as JSON; Slack takes both."""
    try:
        return json.loads(body).get("text", "")
    except ValueError:
        return body


# -- acknowledgement and help ---------------------------------------------------------------
def test_help_lists_providers_without_calling_anything(app, fakes):
    slack, vertex, openai, _ = fakes
    status, body, elapsed, _ = command(app, slack, "help")
    assert status == 200
    text = ack_text(body)
    assert "lets the team's votes choose (default)" in text and "Home tab" in text
    assert "`imagen` — also google, gemini: ready" in text and "`dalle3`" in text
    assert "--ar" in text and "leaderboard" in text
    assert slack.methods_called() == [] and not vertex.requests and not openai.requests


def test_empty_text_opens_the_form(app, fakes):
    slack = fakes[0]
    status, body, _, _ = command(app, slack, "", trigger_id=slack.trigger())
    assert status == 200 and not body
    [view] = slack.wait_for(slack.views)
    assert view["callback_id"] == "imagine_form"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("imagen", "Describe the picture after `imagen`"),
        ("midjourney a cat", "not a provider here. Choose one of: imagen, dalle3"),
        ("a cat --n 9", "from 1 to 4"),
        ("a cat --frobnicate 2", "Unknown option `--frobnicate`"),
        ("imagen " + "very long prompt " * 200, "accepts at most"),
    ],
)
def test_bad_input_is_answered_in_the_ack(app, fakes, text, expected):
    slack, vertex, openai, _ = fakes
    status, body, _, url = command(app, slack, text)
    assert status == 200 and expected in ack_text(body)
    time.sleep(0.2)
    assert not vertex.api_calls() and not openai.requests and not slack.responses_to(url)


# -- generation ----------------------------------------------------------------------------
def test_imagen_picture_is_uploaded_into_the_channel(app, fakes):
    slack, vertex, _, _ = fakes
    status, body, elapsed, url = command(app, slack, "imagen a red fox in the snow")
    assert status == 200 and elapsed < 1.0
    assert "Drawing a picture" in ack_text(body) and "gemini-3.1-flash-image" in ack_text(body)
    files = slack.wait_for(lambda: slack.uploaded_files)
    assert (
        files[0].data == png_bytes("a red fox in the snow")
        or files[0].data[:8] == b"\x89PNG\r\n\x1a\n"
    )
    complete = slack.calls_to("files.completeUploadExternal")[0]
    assert complete["channel_id"] == "C123"
    comment = shared_words(complete)
    assert "a red fox in the snow" in comment and "gemini-3.1-flash-image" in comment
    assert "<@U123>" in comment
    assert (
        vertex.api_calls()[0].json()["contents"][0]["parts"][0]["text"] == "a red fox in the snow"
    )
    assert not slack.responses_to(url)  # no error was sent


def test_dalle3_with_options_reaches_the_model_mapped(app, fakes):
    slack, _, openai, _ = fakes
    command(app, slack, "dalle3 a lighthouse --n 2 --ar 16:9 --quality hd --style vivid")
    slack.wait_for(lambda: len(slack.uploaded_files) == 2)
    sent = openai.calls("/images/generations")[0]
    assert sent.path == "/openai/deployments/img/images/generations"
    body = sent.json()
    assert body["n"] == 2 and body["size"] == "1536x1024" and body["quality"] == "high"
    comment = shared_words(slack.calls_to("files.completeUploadExternal")[0])
    assert "gpt-image-2" in comment
    assert "style" in comment  # gpt-image has no style: the post says it was ignored


def test_escaped_text_reaches_the_provider_readable(app, fakes):
    slack, vertex, _, _ = fakes
    command(app, slack, "imagen <@U42|bob> &amp; <#C9|design> at <https://x.io|home>")
    slack.wait_for(lambda: slack.uploaded_files)
    prompt = vertex.api_calls()[0].json()["contents"][0]["parts"][0]["text"]
    assert prompt == "@bob & #design at home"


@pytest.mark.parametrize(
    ("script", "text", "expected"),
    [
        (lambda v, o: v.block_prompt("PROHIBITED_CONTENT"), "imagen a thing", ":no_entry: imagen"),
        (
            lambda v, o: o.script_content_policy({"violence": "medium"}),
            "dalle3 a thing",
            "violence",
        ),
        (lambda v, o: o.rate_limit_forever(retry_after=200), "dalle3 a thing", ":hourglass:"),
        (lambda v, o: v.permission_denied(times=5), "imagen a thing", "Vertex AI User"),
        (
            lambda v, o: o.script_deployment_not_found(),
            "dalle3 a thing",
            "AZURE_OPENAI_IMAGE_DEPLOYMENT",
        ),
        (lambda v, o: v.server_error(times=10), "imagen a thing", "imagen"),
        (lambda v, o: v.slow(8, times=5), "imagen a thing", "imagen"),
    ],
    ids=["policy-google", "policy-azure", "quota", "config-403", "config-404", "outage", "timeout"],
)
def test_each_provider_error_reaches_the_requester_ephemerally(app, fakes, script, text, expected):
    slack, vertex, openai, _ = fakes
    script(vertex, openai)
    _, body, _, url = command(app, slack, text)
    assert "Drawing" in ack_text(body)
    [reply] = slack.wait_for(lambda: slack.responses_to(url), timeout=20)
    assert reply.body["response_type"] == "ephemeral"
    assert expected in reply.text
    assert len(reply.text) < 400 and "Traceback" not in reply.text
    assert AZURE_KEY not in reply.text
    assert not slack.uploaded_files and not slack.calls_to("chat.postMessage")


def test_unconfigured_provider_is_named_with_its_settings(fakes, start_app):
    slack = fakes[0]
    env = slack_env(
        slack, OPENAI_API_KEY="sk-test-openai-key", OPENAI_BASE_URL=fakes[2].url + "/v1"
    )
    app = start_app(env)
    _, body, _, _ = command(app, slack, "imagen a cat")
    assert "imagen is not configured here: set GOOGLE_CLOUD_PROJECT" in ack_text(body)
    _, body, _, _ = command(app, slack, "a cat")
    assert "Drawing" in ack_text(body) and "gpt-image-2" in ack_text(body)  # the default
    slack.wait_for(lambda: slack.uploaded_files)


def test_a_refused_bot_token_stops_start_up_with_one_line(fakes):
    slack = fakes[0]
    app = AppProcess({**slack_env(slack), "SLACK_BOT_TOKEN": "xoxb-revoked-token"})
    with pytest.raises(RuntimeError) as failed:
        app.start()
    assert app.returncode == 2
    lines = [line for line in app.logs().splitlines() if line.strip()]
    assert lines == [
        "error: Slack refused SLACK_BOT_TOKEN (invalid_auth): check the Bot User OAuth Token"
    ]
    assert "xoxb-revoked-token" not in str(failed.value)


# -- where the bot may post ----------------------------------------------------------------
def test_url_images_are_posted_as_blocks(fakes, start_app):
    """KEEP_PROVIDER_URLS=1 with a DALL-E 3 deployment: the provider URL goes in an image block."""
    slack, _, openai, _ = fakes
    app = start_app(
        provider_env(fakes, deployment="dalle", model="dall-e-3", KEEP_PROVIDER_URLS="1")
    )
    command(app, slack, "dalle3 a castle")
    [message] = slack.wait_for(lambda: slack.messages("C123"))
    images = [b for b in message["blocks"] if b["type"] == "image"]
    assert len(images) == 1 and images[0]["image_url"].startswith(openai.url + "/files/")
    assert "a castle" in images[0]["alt_text"]
    assert "dall-e-3" in json.dumps(message["blocks"])
    assert message["text"]  # the notification fallback


def test_not_in_channel_joins_a_public_channel(app, fakes):
    slack = fakes[0]
    slack.not_member("C777")
    command(app, slack, "imagen a bridge", channel_id="C777")
    slack.wait_for(lambda: slack.uploaded_files)
    assert slack.methods_called()[:2] == ["conversations.info", "conversations.join"]
    assert slack.calls_to("files.completeUploadExternal")[-1]["channel_id"] == "C777"
    assert slack.delivers_events_from("C777")  # so 👍 / 👎 on the picture reach the bot


def test_a_bot_removed_from_a_channel_joins_again(app, fakes):
    """The membership it remembers goes stale when someone removes the bot: Slack's
    not_in_channel makes it join again, and the picture arrives."""
    slack = fakes[0]
    command(app, slack, "imagen a first bridge", channel_id="C778")
    slack.wait_for(lambda: slack.uploaded_files)
    slack.not_member("C778")  # removed
    command(app, slack, "imagen a second bridge", channel_id="C778")
    slack.wait_for(lambda: len(slack.uploaded_files) == 2)
    assert len(slack.calls_to("conversations.info")) == 1  # remembered from the first post
    assert slack.calls_to("conversations.join") and slack.delivers_events_from("C778")


def test_private_channel_without_the_bot_tells_the_requester(app, fakes):
    slack = fakes[0]
    slack.add_channel("G555", private=True, member=False)
    _, _, _, url = command(app, slack, "imagen a bridge", channel_id="G555")
    [reply] = slack.wait_for(lambda: slack.responses_to(url))
    assert reply.body["response_type"] == "ephemeral"
    assert "/invite @Imagine" in reply.text


def upload_message(slack: FakeSlack, prompt: str, channel: str = "C123") -> dict:
    """The channel message an upload of `prompt` became."""
    return slack.wait_for(
        lambda: [
            m
            for m in slack.messages(channel)
            if m.get("files") and prompt in m.get("text", "") + json.dumps(m.get("blocks"))
        ]
    )[0]


def test_a_thumb_on_an_upload_finds_its_message_then_counts(app, fakes):
    """Slack shares uploads asynchronously; the upload's message is looked up (files.info)
    only when the first 👍 / 👎 arrives, once, and the vote counts."""
    slack = fakes[0]
    command(app, slack, "imagen a lighthouse keeper", channel_id="CKEEPER")
    message = upload_message(slack, "a lighthouse keeper", "CKEEPER")
    slack.quiesce()
    assert "files.info" not in slack.methods_called()  # nothing asked at post time
    store = VoteStore(f"sqlite:///{app.workdir / 'imagine.db'}")
    for user in ("U1", "U2"):
        assert app.react(slack, user, "+1", "CKEEPER", message["ts"]) == 200
        slack.wait_for(lambda: store.thumb_tallies(channel_id="CKEEPER"))
    slack.wait_for(lambda: store.thumb_tallies(channel_id="CKEEPER")[0].count == 2)
    [tally] = store.thumb_tallies(channel_id="CKEEPER")
    assert (tally.provider, tally.model, tally.choice) == ("imagen", "gemini-3.1-flash-image", "up")
    assert len(slack.calls_to("files.info")) == 1  # the second thumb asked nothing
    store.close()


def test_a_thumb_before_slack_lists_the_share_counts_without_another(app, fakes):
    """A thumb right after the upload, before its history row is written and before Slack
    lists where the file was shared: the vote is kept and counts a moment later."""
    slack = fakes[0]
    slack.share_delay = 1.0
    command(app, slack, "imagen an early riser", channel_id="CEARLY")
    message = upload_message(slack, "an early riser", "CEARLY")
    assert app.react(slack, "U1", "+1", "CEARLY", message["ts"]) == 200
    store = VoteStore(f"sqlite:///{app.workdir / 'imagine.db'}")
    tallies = slack.wait_for(lambda: store.thumb_tallies(channel_id="CEARLY"), timeout=10)
    assert [(t.provider, t.choice, t.count) for t in tallies] == [("imagen", "up", 1)]
    store.close()


def test_an_install_without_files_read_still_posts_the_picture(app, fakes):
    """files.info (to find the upload's message for 👍/👎) may be refused: the post stands,
    the thumb is not counted, and the refused file is not asked about again."""
    slack = fakes[0]
    slack.fail("files.info", "missing_scope", times=20)
    _, _, _, url = command(app, slack, "imagen a windmill", channel_id="CMILL")
    message = upload_message(slack, "a windmill", "CMILL")
    store = VoteStore(f"sqlite:///{app.workdir / 'imagine.db'}")
    slack.wait_for(lambda: store.pending_uploads("CMILL"))  # its history is written in batches
    store.close()
    for user in ("U1", "U2"):
        assert app.react(slack, user, "+1", "CMILL", message["ts"]) == 200
        slack.wait_for(lambda: slack.calls_to("files.info"))
        slack.quiesce()
    assert len(slack.uploaded_files) == 1
    assert len(slack.calls_to("files.info")) == 1
    assert not slack.responses_to(url)  # no "something went wrong" for a posted picture
    assert "Traceback" not in app.logs()


def test_slack_rate_limit_is_retried(app, fakes):
    slack = fakes[0]
    slack.rate_limit("files.getUploadURLExternal", times=1, retry_after=1)
    command(app, slack, "imagen a kite")
    slack.wait_for(lambda: slack.uploaded_files, timeout=15)
    assert len(slack.calls_to("files.getUploadURLExternal")) == 2


# -- what Slack is sent: limits and escaping -------------------------------------------------
def test_a_long_prompt_is_uploaded_with_its_alt_text_cut_to_slacks_limit(app, fakes):
    """files.getUploadURLExternal refuses an alt_txt over 1,000 characters: a prompt of 1,500
    used to fail whenever there was no bucket, for single pictures and comparisons alike."""
    slack = fakes[0]
    prompt = ("a lighthouse keeper &amp; his dog on the rocks " * 36).strip()
    assert 1400 < len(prompt.replace("&amp;", "&")) < 1900
    _, _, _, single = command(app, slack, f"imagen {prompt}")
    slack.wait_for(lambda: len(slack.uploaded_files) == 1, timeout=20)
    _, _, _, compared = command(app, slack, f"compare {prompt}")
    slack.wait_for(lambda: len(slack.uploaded_files) == 4, timeout=20)  # side by side + 2
    asked = slack.calls_to("files.getUploadURLExternal")
    assert len(asked) == 4
    for call in asked:
        alt = call.get("alt_txt", "")
        assert len(alt) <= 1000
    pictures = [c["alt_txt"] for c in asked if c["alt_txt"].startswith("a lighthouse")]
    assert len(pictures) == 2 and all(a.endswith("…") and "&amp;" in a for a in pictures)
    slack.quiesce()
    assert not slack.responses_to(single)
    assert all(r.text.startswith("Only you can see this") for r in slack.responses_to(compared))


HOSTILE = (
    "&lt;!channel&gt; free <http://evil.example|pizza> <@U666|bob> &lt;@U666&gt; "
    "&lt;http://evil.example|free pizza&gt; <!here> &lt;#C1&gt;"
)
PINGS = ("<!channel", "<!here", "<@U666", "<http://evil", "<#C1")


def everything_slack_got(slack: FakeSlack) -> str:
    """Every Web API call and response_url post the fake Slack received, as one text."""
    calls = [parse_body(r) for r in slack.calls("/api/")]
    posts = [r.body for r in slack.responses]
    return json.dumps([calls, posts], ensure_ascii=False, default=str)


def test_a_prompt_cannot_ping_the_channel_or_post_a_disguised_link(app, fakes):
    """Typed-out `<!channel>`, mentions and links reach Slack escaped, in the upload's comment,
    the acknowledgement and everything else; the model gets the readable text."""
    slack, vertex, _, _ = fakes
    status, body, _, url = command(app, slack, f"imagen {HOSTILE}")
    slack.wait_for(lambda: slack.uploaded_files)
    _, refused, _, _ = command(app, slack, "imagen a cat --&lt;!here&gt; 1")
    slack.quiesce()
    sent = everything_slack_got(slack) + ack_text(body) + ack_text(refused)
    for ping in PINGS:
        assert ping not in sent, ping
    comment = shared_words(slack.calls_to("files.completeUploadExternal")[0])
    assert "&lt;!channel&gt; free pizza @bob &lt;@U666&gt;" in comment
    assert "<@U123>" in comment  # the requester's mention is the app's own, and stays
    assert "Unknown option `--&lt;!here&gt;`" in ack_text(refused)
    drawn = vertex.api_calls()[0].json()["contents"][0]["parts"][0]["text"]
    assert drawn.startswith("<!channel> free pizza @bob <@U666> <http://evil.example|free")


def test_a_nul_in_the_prompt_is_dropped_and_the_picture_stored_on_postgresql(fakes, start_app):
    """PostgreSQL refuses NUL in text: the history of such a prompt, and its comparison, were
    lost. Control characters are dropped when the command is parsed."""
    slack = fakes[0]
    with postgres_schema() as database_url:
        app = start_app(provider_env(fakes, DATABASE_URL=database_url))
        command(app, slack, "imagen a red\x00 fox\x07 in the snow")
        slack.wait_for(lambda: slack.uploaded_files)
        _, _, _, url = command(app, slack, "compare a grey\x00 wolf", channel_id="CWOLF")
        message = upload_message(slack, "a grey wolf", "CWOLF")
        store = VoteStore(database_url)
        try:
            comparison = slack.wait_for(lambda: store.comparison_at("CWOLF", message["ts"]))
            assert comparison.prompt == "a grey wolf"
            rows = slack.wait_for(lambda: generation_rows(store, 3))
            assert sorted((r.prompt, r.outcome) for r in rows) == [
                ("a grey wolf", "ok"),
                ("a grey wolf", "ok"),
                ("a red fox in the snow", "ok"),
            ]
        finally:
            store.close()
        [reveal] = slack.wait_for(lambda: slack.responses_to(url))  # the Reveal button, no apology
        assert reveal.text.startswith("Only you can see this: reveal")
        assert "Traceback" not in app.logs(), app.logs()


def generation_rows(store: VoteStore, count: int) -> list:
    with store.engine.connect() as conn:
        rows = conn.execute(select(GENERATIONS.c.prompt, GENERATIONS.c.outcome)).all()
    return rows if len(rows) >= count else []


# -- Slack failing ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "step", ["files.getUploadURLExternal", UPLOAD, "files.completeUploadExternal"]
)
def test_a_slack_5xx_while_uploading_is_retried_and_uploads_once(app, fakes, step):
    """A picture drawn and paid for is not dropped for one failing answer, in any of the three
    steps of an upload (the bytes' POST is outside slack_sdk's own retries)."""
    slack = fakes[0]
    slack.server_error(step, times=2)
    _, _, _, url = command(app, slack, "imagen a sturdy bridge")
    slack.wait_for(lambda: slack.uploaded_files, timeout=15)
    slack.quiesce()
    shared = [m for m in slack.messages("C123") if m.get("subtype") == "file_share"]
    assert len(slack.uploaded_files) == 1 and len(shared) == 1
    assert not slack.responses_to(url)


def test_a_share_whose_answer_was_lost_counts_as_shared(app, fakes):
    """files.completeUploadExternal went through but Slack's edge answered 504: the retry
    finds the upload completed (it can be completed only once). The picture is in the
    channel, once, and the person is not told it went wrong."""
    slack = fakes[0]
    slack.lose_answer("files.completeUploadExternal")
    _, _, _, url = command(app, slack, "imagen a bridge that held")
    slack.wait_for(lambda: slack.uploaded_files, timeout=15)
    slack.wait_for(lambda: len(slack.calls_to("files.info")) >= 1, timeout=15)
    time.sleep(0.5)
    slack.quiesce()
    shared = [m for m in slack.messages("C123") if m.get("subtype") == "file_share"]
    assert len(slack.uploaded_files) == 1 and len(shared) == 1
    assert not slack.responses_to(url)
    assert "a share that had gone through" in app.logs() and "job failed" not in app.logs()


def test_a_picture_post_whose_answer_was_lost_is_in_the_channel_once(fakes, start_app):
    """chat.postMessage went through but Slack's edge answered 504: the bot reads the channel,
    finds its tagged post (a hash: the job's key is not in it), and neither posts it again nor
    tells the person it went wrong."""
    slack, _, openai, _ = fakes
    app = start_app(
        provider_env(fakes, deployment="dalle", model="dall-e-3", KEEP_PROVIDER_URLS="1")
    )
    slack.lose_answer("chat.postMessage")
    _, _, _, url = command(app, slack, "dalle3 a lighthouse that held")
    slack.wait_for(lambda: slack.calls_to("conversations.history"), timeout=15)
    time.sleep(0.5)
    slack.quiesce()
    [message] = slack.messages("C123")
    assert "a lighthouse that held" in json.dumps(message["blocks"])
    assert len(slack.calls_to("chat.postMessage")) == 1 and not slack.responses_to(url)
    tag = message["metadata"]["event_payload"]["once"]
    assert re.fullmatch(r"[0-9a-f]{32}", tag) and "command:" not in json.dumps(message)
    assert "a post that had gone through" in app.logs() and "job failed" not in app.logs()


def test_five_slack_429s_in_a_row_are_waited_out(app, fakes):
    slack = fakes[0]
    slack.rate_limit("files.completeUploadExternal", times=5, retry_after=1)
    _, _, _, url = command(app, slack, "imagen a patient owl")
    slack.wait_for(lambda: slack.uploaded_files, timeout=20)
    slack.quiesce()
    assert len(slack.calls_to("files.completeUploadExternal")) == 6
    assert len(slack.uploaded_files) == 1 and not slack.responses_to(url)


def test_slack_refusing_until_the_deadline_ends_in_one_sentence(fakes, start_app):
    slack = fakes[0]
    app = start_app(provider_env(fakes, IMAGINE_JOB_DEADLINE="3"))
    slack.rate_limit("files.getUploadURLExternal", times=50, retry_after=1)
    started = time.monotonic()
    _, _, _, url = command(app, slack, "imagen a punctual owl")
    [reply] = slack.wait_for(lambda: slack.responses_to(url), timeout=15)
    assert time.monotonic() - started < 6  # retried until the deadline, not beyond
    assert "a punctual owl" in reply.text and "Slack" in reply.text
    assert "try again" in reply.text and reply.body["response_type"] == "ephemeral"
    slack.quiesce()
    assert not slack.uploaded_files and len(slack.responses_to(url)) == 1
    assert "Traceback" not in app.logs()


def test_a_5xx_from_the_response_url_is_retried(app, fakes):
    slack, vertex, _, _ = fakes
    vertex.block_prompt("PROHIBITED_CONTENT")
    slack.server_error(RESPONSE_URL, times=1, status=500)
    _, _, _, url = command(app, slack, "imagen a thing")
    [reply] = slack.wait_for(lambda: slack.responses_to(url), timeout=10)
    assert ":no_entry:" in reply.text
    slack.quiesce()
    assert len(slack.responses_to(url)) == 1 and len(slack.calls("/response/")) == 2


# -- the bucket failing ----------------------------------------------------------------------
GCS_FAILURES = {
    "unreachable": None,  # nothing listens on the emulator's port
    "403": Reply(403, {"error": {"code": 403, "message": "denied", "errors": []}}),
    "503": Reply(503, {"error": {"code": 503, "message": "backend error", "errors": []}}),
}


@pytest.mark.parametrize("failure", list(GCS_FAILURES))
def test_a_failing_bucket_uploads_the_pictures_into_slack(fakes, start_app, failure):
    """The bucket refusing or unreachable: the pictures were drawn and paid for, so they are
    uploaded into Slack instead, with one log line that holds no secret."""
    slack, _, _, key = fakes
    with GcsFront("http://127.0.0.1:9") as gcs:
        reply = GCS_FAILURES[failure]
        if reply is None:
            host = f"http://127.0.0.1:{free_port()}"
        else:
            gcs.enqueue(*[reply] * 500)
            host = gcs.url
        env = provider_env(
            fakes, GCS_BUCKET="imgs", STORAGE_EMULATOR_HOST=host, IMAGINE_PROVIDER_TIMEOUT="2"
        )
        app = start_app(env)
        _, _, _, url = command(app, slack, "imagen a ship in a bottle")
        [picture] = slack.wait_for(lambda: slack.uploaded_files, timeout=20)
        assert picture.data[:8] == b"\x89PNG\r\n\x1a\n"
        _, _, _, compare_url = command(app, slack, "compare a ship in a bottle")
        slack.wait_for(lambda: len(slack.uploaded_files) == 4, timeout=20)  # side by side + 2
        if reply is not None:
            assert gcs.calls("/upload/")  # the store was tried
    assert not slack.responses_to(url)
    assert all("went wrong" not in (r.text or "") for r in slack.responses_to(compare_url))
    logs = app.logs()
    fallbacks = [line for line in logs.splitlines() if "uploaded instead" in line]
    assert len(fallbacks) == 4 and "Traceback" not in logs  # one line per picture
    for secret in (key["private_key_id"], "PRIVATE KEY", AZURE_KEY, slack.token):
        assert secret not in logs


# -- the same request twice ----------------------------------------------------------------
FORM = "application/x-www-form-urlencoded"


def test_the_same_signed_command_twice_draws_once(app, fakes):
    """A command delivered twice (a proxy's retry, a double submission) is drawn once, also
    when the copy comes after the picture was posted."""
    slack, vertex, _, _ = fakes
    url = slack.response_url()
    body = slash_command_body("imagen a twice-told tale", response_url=url)
    signed_at = int(time.time())
    first, second = (app.post_signed(body, FORM, timestamp=signed_at) for _ in range(2))
    assert first[0] == second[0] == 200 and "Drawing" in ack_text(first[1])
    slack.wait_for(lambda: slack.uploaded_files)
    assert app.post_signed(body, FORM, timestamp=signed_at)[0] == 200  # late
    slack.quiesce()
    assert len(slack.uploaded_files) == 1 and len(vertex.api_calls()) == 1
    assert not slack.responses_to(url)


def test_a_cancel_click_delivered_twice_is_answered_once(fakes, start_app):
    slack, _, _, _ = fakes
    app = start_app(provider_env(fakes, IMAGEN_REQUESTS_PER_MINUTE="12"))  # one per 5 s
    command(app, slack, "imagen first in line", user_id="U1")
    _, _, _, url = command(app, slack, "imagen second in line", user_id="U2")
    note = slack.wait_for(lambda: [r for r in slack.responses_to(url) if "Waiting" in r.text])[0]
    [button] = [e for b in note.body["blocks"] if b["type"] == "actions" for e in b["elements"]]
    click_url = slack.response_url()
    click = dict(action_id=button["action_id"], value=button["value"], user_id="U2")
    body = block_actions_body(**click, response_url=click_url, is_ephemeral=True)
    signed_at = int(time.time())
    assert app.post_signed(body, FORM, timestamp=signed_at)[0] == 200
    [cancelled] = slack.wait_for(lambda: slack.responses_to(click_url))
    assert "Cancelled" in cancelled.text
    assert app.post_signed(body, FORM, timestamp=signed_at)[0] == 200  # delivered again
    assert app.post_action(**click, response_url=click_url, is_ephemeral=True)[0] == 200
    slack.quiesce()  # ... and a double click: one answer in all
    assert [r.text for r in slack.responses_to(click_url)] == [cancelled.text]


# -- security ------------------------------------------------------------------------------
def test_bad_and_stale_signatures_get_401_and_do_no_work(app, fakes):
    slack, vertex, _, _ = fakes
    bad = app.post_command("imagen a cat", secret="not-the-secret")
    stale = app.post_command("imagen a cat", timestamp=int(time.time()) - 600)
    assert bad[0] == 401 and stale[0] == 401
    time.sleep(0.3)
    assert not vertex.api_calls() and slack.methods_called() == []


def test_logs_have_one_line_per_command_and_generation_and_no_secrets(app, fakes):
    slack = fakes[0]
    command(app, slack, "imagen a quiet harbour")
    slack.wait_for(lambda: slack.uploaded_files)
    time.sleep(0.3)
    logs = app.logs()
    events = [
        json.loads(found.group(1))
        for found in re.finditer(r" INFO imagine\.\w+ (\{.*)$", logs, re.M)
    ]
    assert "Traceback" not in logs, logs
    mine = [e for e in events if e.get("event") == "generation" and e.get("outcome") == "ok"]
    assert mine and {"request_id", "user", "channel", "provider", "model", "latency_s"} <= set(
        mine[-1]
    )
    same = [e["event"] for e in events if e.get("request_id") == mine[-1]["request_id"]]
    assert same == ["command", "generation", "job"]  # the request id from ack to post
    for secret in (AZURE_KEY, SIGNING_SECRET, slack.token, "PRIVATE KEY"):
        assert secret not in logs


def test_debug_logs_of_a_whole_command_hold_no_secret(fakes, start_app):
    slack, _, openai, key = fakes
    app = start_app(provider_env(fakes, LOG_LEVEL="DEBUG"))
    command(app, slack, "dalle3 a quiet harbour")
    slack.wait_for(lambda: slack.uploaded_files)
    logs = app.logs()
    assert "Sending a request" in logs  # slack_sdk's DEBUG lines, with their headers, are there
    for secret in (AZURE_KEY, SIGNING_SECRET, slack.token, key["private_key_id"], "PRIVATE KEY"):
        assert secret not in logs


def test_sigterm_in_http_mode_finishes_the_pictures_in_flight(fakes, start_app):
    """Heroku restarts dynos with SIGTERM: an acknowledged picture must still arrive."""
    slack, vertex, _, _ = fakes
    app = start_app(provider_env(fakes))
    vertex.latency = 1.0
    _, body, _, _ = command(app, slack, "imagen a lighthouse")
    assert "Drawing" in ack_text(body)
    code = app.stop(timeout=20)
    assert slack.uploaded_files, f"the acknowledged picture was lost:\n{app.logs()}"
    assert code == 0 and "Traceback" not in app.logs(), app.logs()


# -- load ----------------------------------------------------------------------------------
def test_fifty_simultaneous_commands_do_not_queue(fakes, start_app):
    slack, vertex, _, _ = fakes
    vertex.latency = 2.0
    app = start_app(provider_env(fakes))
    started = time.monotonic()
    with ThreadPoolExecutor(50) as pool:
        acks = list(  # fifty people: one person may have only five pictures on the way
            pool.map(
                lambda i: command(app, slack, f"imagen picture {i}", user_id=f"U{i:03d}")[:3],
                range(50),
            )
        )
    assert all(status == 200 for status, _, _ in acks)
    slowest_ack = max(elapsed for _, _, elapsed in acks)
    assert slowest_ack < 1.0, f"slowest ack {slowest_ack:.2f}s"
    slack.wait_for(lambda: len(slack.uploaded_files) == 50, timeout=15)
    assert time.monotonic() - started < 8.0


# -- quotas, in the embedded runner ----------------------------------------------------------
def test_a_429_is_retried_quietly_until_the_picture_is_drawn(app, fakes):
    slack, vertex, _, _ = fakes
    vertex.quota_exceeded(times=4)  # Vertex sends no Retry-After: we back off with jitter
    _, _, _, url = command(app, slack, "imagen a patient heron")
    slack.wait_for(lambda: slack.uploaded_files, timeout=20)
    assert len(vertex.api_calls()) == 5
    assert not slack.responses_to(url)  # nobody was told about the quota


def test_a_quota_that_stays_full_ends_in_one_sentence_at_the_deadline(fakes, start_app):
    slack, vertex, _, _ = fakes
    app = start_app(provider_env(fakes, IMAGINE_JOB_DEADLINE="3"))
    vertex.quota_exceeded(times=1000)
    started = time.monotonic()
    _, _, _, url = command(app, slack, "imagen a stubborn mule")
    [reply] = slack.wait_for(lambda: slack.responses_to(url), timeout=15)
    assert 2.0 < time.monotonic() - started < 8.0  # retried until the deadline, not longer
    assert reply.text.startswith(":hourglass: imagen:") and "quota" in reply.text
    assert len(vertex.api_calls()) > 2 and not slack.uploaded_files


def test_embedded_pacing_spaces_the_calls_and_tells_who_waits(fakes, start_app):
    slack, vertex, _, _ = fakes
    app = start_app(provider_env(fakes, IMAGEN_REQUESTS_PER_MINUTE="60"))  # one a second
    urls = [command(app, slack, f"imagen tick {i}", user_id=f"U{i}")[3] for i in range(4)]
    slack.wait_for(lambda: len(slack.uploaded_files) == 4, timeout=20)
    starts = [call.at for call in vertex.api_calls()]
    assert all(b - a >= 0.95 for a, b in zip(starts, starts[1:], strict=False))
    last = [r.text for r in slack.responses_to(urls[-1])]
    assert any("ahead of you" in text for text in last)  # it waited, and was told so
    assert "Drawing" in last[-1]
    waits = re.search(
        r'imagine_quota_wait_seconds_count\{provider="imagen"\} (\d+)', app.get("/metrics")[1]
    )
    assert waits and int(waits.group(1)) >= 3  # three of the four waited their turn


def test_metrics_count_jobs_and_provider_time(app, fakes):
    slack = fakes[0]
    command(app, slack, "imagen a counted crane")
    slack.wait_for(lambda: slack.uploaded_files)
    time.sleep(0.2)
    status, text, _ = app.get("/metrics")
    assert status == 200
    assert re.search(r'imagine_jobs_total\{kind="generate",outcome="ok"\} [1-9]', text)
    assert 'imagine_provider_seconds_bucket{le="2.0",outcome="ok",provider="imagen"}' in text
    assert 'imagine_queue_depth{runner="threads"} 0.0' in text
