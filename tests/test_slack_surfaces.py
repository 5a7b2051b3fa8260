"""End to end, through the real process: a picture's buttons, the form, the "Imagine this"
shortcut and direct messages (issue 9, items 1, 2, 3 and 6)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.slack.app import LISTENER_THREADS
from tests.fakes._http import HANG_UP, Reply
from tests.fakes.openai_images import FakeOpenAIImages
from tests.fakes.slack import FakeSlack
from tests.fakes.vertex import FakeVertexAI, service_account_info
from tests.slack_harness import (
    AppProcess,
    event_body,
    message_action_payload,
    providers_env,
    slack_env,
    view_submission_payload,
)

ADMIN = "UADMIN1"


@pytest.fixture(scope="module")
def fakes():
    with (
        FakeSlack() as slack,
        FakeVertexAI() as vertex,
        FakeOpenAIImages(deployments={"img": "gpt-image-2", "dalle": "dall-e-3"}) as openai,
    ):
        key = service_account_info(token_uri=vertex.url + "/token")
        yield slack, vertex, openai, key


@pytest.fixture(autouse=True)
def clean(fakes):
    for fake in fakes[:3]:
        fake.quiesce()
        fake.reset()
    yield


def env(fakes, deployment="img", model="gpt-image-2", **extra) -> dict[str, str]:
    slack, vertex, openai, key = fakes
    return slack_env(
        slack,
        **providers_env(vertex, openai, key, deployment, model),
        IMAGINE_RETRY_BACKOFF="0.01",
        IMAGINE_ADMINS=ADMIN,
        **extra,
    )


@pytest.fixture(scope="module")
def linked(fakes):
    """Pictures posted as image blocks (the provider's URL kept): buttons on the message."""
    with AppProcess(
        env(fakes, deployment="dalle", model="dall-e-3", KEEP_PROVIDER_URLS="1")
    ) as process:
        yield process


@pytest.fixture(scope="module")
def uploading(fakes):
    """No bucket: pictures uploaded into Slack, their buttons in the upload's message."""
    with AppProcess(env(fakes)) as process:
        yield process


def buttons_of(message: dict) -> dict[str, dict]:
    return {
        e["text"]["text"]: e
        for b in message.get("blocks") or []
        if b["type"] == "actions"
        for e in b["elements"]
    }


def picture(app: AppProcess, slack: FakeSlack, text: str, user: str = "U123") -> dict:
    """`/imagine text` as `user`; the message with the picture's buttons."""
    before = len(slack.messages("C123"))
    app.post_command(text, user_id=user, response_url=slack.response_url())
    return slack.wait_for(
        lambda: [m for m in slack.messages("C123")[before:] if buttons_of(m)], timeout=20
    )[0]


def click(app, slack, message, label, user="U123", trigger_id=None):
    """Click the button labelled `label` on `message`; returns the click's response_url."""
    button = buttons_of(message)[label]
    url = slack.response_url()
    status, _, elapsed = app.post_action(
        action_id=button["action_id"],
        value=button["value"],
        user_id=user,
        message_ts=message["ts"],
        response_url=url,
        trigger_id=trigger_id,
    )
    assert status == 200 and elapsed < 1.5
    return url


def test_every_picture_has_its_buttons(linked, fakes):
    slack = fakes[0]
    message = picture(linked, slack, "dalle3 a red fox --ar 16:9 --quality hd")
    assert list(buttons_of(message)) == [
        "Again",
        "Try with imagen",
        "Compare",
        "Edit prompt",
        "Delete",
    ]
    assert buttons_of(message)["Delete"]["style"] == "danger"


def test_again_draws_the_same_prompt_and_options_with_a_new_seed(linked, fakes):
    slack, _, openai, _ = fakes
    message = picture(linked, slack, "dalle3 a red fox --ar 16:9 --quality hd --seed 7")
    url = click(linked, slack, message, "Again", user="U555")
    again = slack.wait_for(lambda: [m for m in slack.messages("C123") if m["ts"] > message["ts"]])
    assert "a red fox" in again[0]["text"] and "<@U555>" in again[0]["text"]
    first, second = openai.calls("/images/generations")[:2]
    assert first.json()["prompt"] == second.json()["prompt"] == "a red fox"
    assert first.json()["size"] == second.json()["size"] == "1792x1024"
    assert first.json()["quality"] == second.json()["quality"]
    assert "Drawing a picture" in slack.wait_for(lambda: slack.responses_to(url))[0].text


def test_try_with_the_other_model_draws_there(linked, fakes):
    slack, vertex, _, _ = fakes
    message = picture(linked, slack, "dalle3 a lighthouse at dusk")
    click(linked, slack, message, "Try with imagen")
    slack.wait_for(lambda: vertex.api_calls())
    sent = vertex.api_calls()[0].json()["contents"][0]["parts"][0]["text"]
    assert sent == "a lighthouse at dusk"


def test_compare_posts_a_blind_comparison(linked, fakes):
    slack, vertex, openai, _ = fakes
    message = picture(linked, slack, "dalle3 a tea pot")
    click(linked, slack, message, "Compare")
    slack.wait_for(
        lambda: [
            m for m in slack.messages("C123") if "Which picture is better" in m.get("text", "")
        ],
        timeout=20,
    )
    assert vertex.api_calls() and len(openai.calls("/images/generations")) == 2


def test_a_comparison_gets_its_buttons_after_the_reveal(linked, fakes):
    """Without a bucket the comparison is an upload: revealed in a thread reply, which carries
    the buttons; Delete there removes the reply and the comparison."""
    slack = fakes[0]
    message = picture(linked, slack, "dalle3 a tea cup")
    url = click(linked, slack, message, "Compare")
    shown = slack.wait_for(
        lambda: [m for m in slack.messages("C123") if "Which picture" in m.get("text", "")]
    )[0]
    assert not buttons_of(shown)  # blind: no Again or Try before the reveal
    note = slack.wait_for(lambda: [r for r in slack.responses_to(url) if r.blocks])[0]
    [reveal] = [e for b in note.blocks if b["type"] == "actions" for e in b["elements"]]
    linked.post_action(action_id=reveal["action_id"], value=reveal["value"], is_ephemeral=True)
    reply = slack.wait_for(
        lambda: [m for m in slack.messages("C123") if m.get("thread_ts") == shown["ts"]]
    )[0]
    assert list(buttons_of(reply)) == [
        "Again",
        "Try with dalle3",
        "Try with imagen",
        "Edit prompt",
        "Delete",
    ]
    click(linked, slack, reply, "Delete")
    slack.wait_for(lambda: slack.message("C123", shown["ts"]) is None)
    assert slack.message("C123", reply["ts"]) is None


def test_a_double_click_on_again_draws_once(linked, fakes):
    slack, _, openai, _ = fakes
    message = picture(linked, slack, "dalle3 one fox only")
    click(linked, slack, message, "Again")
    click(linked, slack, message, "Again")
    slack.wait_for(lambda: len(openai.calls("/images/generations")) >= 2)
    slack.quiesce()
    openai.quiesce()
    assert len(openai.calls("/images/generations")) == 2


def test_edit_prompt_opens_the_form_filled_in(linked, fakes):
    slack = fakes[0]
    message = picture(linked, slack, "dalle3 a castle --ar 9:16 --no fog")
    click(linked, slack, message, "Edit prompt", trigger_id=slack.trigger())
    [view] = slack.wait_for(slack.views)
    inputs = {b["block_id"]: b["element"] for b in view["blocks"]}
    assert inputs["prompt"]["initial_value"] == "a castle"
    assert inputs["model"]["initial_option"]["value"] == "dalle3"
    assert inputs["ratio"]["initial_option"]["value"] == "9:16"
    assert inputs["avoid"]["initial_value"] == "fog"


def test_a_stranger_cannot_delete_and_is_told_privately(linked, fakes):
    slack = fakes[0]
    message = picture(linked, slack, "dalle3 my own picture", user="U123")
    url = click(linked, slack, message, "Delete", user="U999")
    [told] = slack.wait_for(lambda: slack.responses_to(url))
    assert "Only <@U123>" in told.text and told.body["response_type"] == "ephemeral"
    assert slack.message("C123", message["ts"]) is not None
    assert not slack.calls_to("chat.delete")


@pytest.mark.parametrize("who", ["U123", ADMIN])
def test_the_requester_or_an_admin_deletes_the_picture(linked, fakes, who):
    slack = fakes[0]
    message = picture(linked, slack, "dalle3 a picture to delete", user="U123")
    click(linked, slack, message, "Delete", user=who)
    slack.wait_for(lambda: slack.message("C123", message["ts"]) is None)
    assert slack.calls_to("chat.delete")[0]["ts"] == message["ts"]


def test_an_uploaded_picture_carries_its_buttons_and_deletes_with_them(uploading, fakes):
    """The buttons are in the upload's own message: one message, no second post."""
    slack = fakes[0]
    message = picture(uploading, slack, "imagen a fox in a box")
    [upload] = slack.uploaded_files
    assert message["subtype"] == "file_share" and message["files"][0]["id"] == upload.id
    assert "a fox in a box" in json.dumps(message["blocks"])
    assert "Try with dalle3" in buttons_of(message)
    assert len(slack.messages("C123")) == 1 and not slack.calls_to("chat.postMessage")
    click(uploading, slack, message, "Delete")
    slack.wait_for(lambda: not slack.messages("C123"))
    assert slack.calls_to("files.delete")[0]["file"] == upload.id


def test_delete_removes_every_picture_of_an_upload(uploading, fakes):
    """Two pictures are two files in one message: Delete removes both, not only the first."""
    slack = fakes[0]
    before = len(slack.uploaded_files)
    message = picture(uploading, slack, "imagen two foxes --n 2")
    uploads = {f.id for f in slack.uploaded_files[before:]}
    assert len(uploads) == 2 and {f["id"] for f in message["files"]} == uploads
    click(uploading, slack, message, "Delete")
    slack.wait_for(lambda: not slack.messages("C123"))
    assert {call["file"] for call in slack.calls_to("files.delete")} >= uploads


def test_a_command_is_acknowledged_while_every_listener_thread_waits_on_slack(uploading, fakes):
    """`/imagine` runs its listener on the request's own thread (`build_app(commands_only)`):
    with every listener thread of the other listeners waiting on a slow Slack (32 people
    click Edit prompt, each opening the form), a command is still acknowledged at once."""
    slack = fakes[0]
    message = picture(uploading, slack, "imagen a slow morning")
    slack.latency = 2.0
    try:
        with ThreadPoolExecutor(LISTENER_THREADS) as pool:
            clicks = [  # by different people: one person's second click is the same click
                pool.submit(
                    click, uploading, slack, message, "Edit prompt", f"U{i:03d}", slack.trigger()
                )
                for i in range(LISTENER_THREADS)
            ]
            for clicked in clicks:
                clicked.result()
        slack.wait_for(lambda: len(slack.calls_to("views.open")) == LISTENER_THREADS)
        status, body, elapsed = uploading.post_command("help")
        assert status == 200 and "Providers here" in body and elapsed < 1.0
    finally:
        slack.latency = 0.0
        time.sleep(2.5)  # the slow calls end and free their threads before the next test


def test_a_job_waits_for_the_acknowledgements_in_flight_but_no_longer_than_the_hold(
    uploading, fakes
):
    """Acknowledgements first (`bot.core.acknowledging`): a picture accepted while another
    request is still being answered (a bare `/imagine` waiting 2 s on `views.open`) is
    acknowledged at once, and its drawing starts after the hold, not before it nor only
    once the slow request ends."""
    slack, vertex, _, _ = fakes
    picture(uploading, slack, "imagen a warm up")  # the token and connections are ready
    slack.latency = 2.0
    try:
        with ThreadPoolExecutor(1) as pool:
            form = pool.submit(uploading.post_command, "", trigger_id=slack.trigger())
            slack.wait_for(lambda: slack.calls_to("views.open"))
            before = len(vertex.api_calls())
            sent = time.monotonic()  # the job is accepted after this, and held 0.25 s from then
            status, _, elapsed = uploading.post_command(
                "imagen a quiet harbour", response_url=slack.response_url()
            )
            assert status == 200 and elapsed < 1.0
            drawn = slack.wait_for(lambda: vertex.api_calls()[before:], timeout=10)[0]
            assert 0.24 <= drawn.at - sent < 1.5  # the form's request ends ~2 s after `sent`
            assert form.result()[0] == 200
    finally:
        slack.latency = 0.0
        time.sleep(2.5)  # the picture's slow upload ends before the next test


def test_buttons_that_slack_refuses_in_an_upload_come_in_a_message_under_it(uploading, fakes):
    """Slack answers `internal_error` for some blocks in a file's message: the picture is
    shared with its comment instead (the same file, not uploaded twice), its buttons right
    under it."""
    slack = fakes[0]
    slack.enqueue(
        Reply(200, {"ok": False, "error": "internal_error"}),
        path_contains="files.completeUploadExternal",
    )
    message = picture(uploading, slack, "imagen a fox in a box")
    [upload] = slack.uploaded_files
    [shared] = [m for m in slack.messages("C123") if m.get("files")]
    assert "a fox in a box" in shared["text"] and "blocks" not in shared
    assert len(slack.calls_to("files.getUploadURLExternal")) == 1
    assert "Try with dalle3" in buttons_of(message) and message["ts"] > shared["ts"]
    click(uploading, slack, message, "Delete")
    slack.wait_for(lambda: not slack.messages("C123"))
    assert slack.calls_to("files.delete")[0]["file"] == upload.id


def test_a_buttons_message_whose_answer_was_lost_is_under_the_picture_once(uploading, fakes):
    """The buttons' own message went through but the connection was lost before Slack's
    answer: the bot finds it by its tag and does not post a second set of buttons."""
    slack = fakes[0]
    slack.enqueue(
        Reply(200, {"ok": False, "error": "internal_error"}),
        path_contains="files.completeUploadExternal",
    )
    slack.lose_answer("chat.postMessage", status=HANG_UP)
    message = picture(uploading, slack, "imagen a fox that held")
    slack.wait_for(lambda: slack.calls_to("conversations.history"), timeout=15)
    time.sleep(0.5)
    slack.quiesce()
    assert [m["ts"] for m in slack.messages("C123") if buttons_of(m)] == [message["ts"]]
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert message["metadata"]["event_payload"]["once"]


def form_of(slack: FakeSlack) -> dict:
    return slack.wait_for(slack.views)[-1]


def test_a_bare_imagine_opens_the_form_and_a_submission_draws_in_that_channel(uploading, fakes):
    slack, _, openai, _ = fakes
    url = slack.response_url()
    status, body, _ = uploading.post_command(
        "", channel_id="C777", trigger_id=slack.trigger(), response_url=url
    )
    assert status == 200 and not body
    view = form_of(slack)
    assert view["type"] == "modal" and json.loads(view["private_metadata"])["c"] == "C777"
    submission = view_submission_payload(
        view,
        {
            "prompt": "a night sky\nover the sea",
            "model": "dalle3",
            "ratio": "16:9",
            "count": "2",
            "look": "quality:high",
            "avoid": "clouds",
        },
    )
    status, answer, _ = uploading.post_payload(submission)
    assert status == 200 and not answer  # the form closes
    slack.wait_for(lambda: len(slack.uploaded_files) == 2)
    assert slack.calls_to("files.completeUploadExternal")[0]["channel_id"] == "C777"
    sent = openai.calls("/images/generations")[0].json()
    assert sent["n"] == 2 and sent["size"] == "1536x1024" and sent["quality"] == "high"
    assert sent["prompt"].startswith("a night sky over the sea") and "clouds" in sent["prompt"]
    assert "Drawing 2 pictures" in slack.wait_for(lambda: slack.responses_to(url))[0].text


def test_a_bad_field_is_answered_next_to_it(uploading, fakes):
    slack, vertex, openai, _ = fakes
    uploading.post_command("", trigger_id=slack.trigger())
    view = form_of(slack)
    status, answer, _ = uploading.post_payload(view_submission_payload(view, {"prompt": "   "}))
    assert status == 200
    assert json.loads(answer) == {
        "response_action": "errors",
        "errors": {"prompt": "Describe the picture you want."},
    }
    assert not vertex.api_calls() and not openai.requests


def test_a_model_that_cannot_draw_it_is_answered_next_to_the_model(fakes, start_app):
    """The form lists the models configured when it opened; one gone since is refused there."""
    slack, vertex, openai, _ = fakes
    settings = env(fakes)
    del settings["GOOGLE_CLOUD_PROJECT"], settings["GOOGLE_SERVICE_ACCOUNT_JSON"]
    app = start_app(settings)
    app.post_command("", trigger_id=slack.trigger())
    view = form_of(slack)
    forged = view_submission_payload(view, {"prompt": "a fox", "model": "dalle3"})
    forged["view"]["state"]["values"]["model"]["value"]["selected_option"] = {
        "text": {"type": "plain_text", "text": "imagen"},
        "value": "imagen",
    }
    status, answer, _ = app.post_payload(forged)
    errors = json.loads(answer)["errors"]
    assert list(errors) == ["model"] and "imagen is not configured here" in errors["model"]
    assert not vertex.api_calls() and not openai.requests


def test_help_still_helps(uploading, fakes):
    _, body, _ = uploading.post_command("help")
    assert "Providers here" in body and "form" in body


def test_an_expired_trigger_is_told_in_one_sentence(uploading, fakes):
    slack = fakes[0]
    url = slack.response_url()
    uploading.post_command("", trigger_id=slack.trigger(age=5), response_url=url)
    [told] = slack.wait_for(lambda: slack.responses_to(url))
    assert "couldn't open the form" in told.text
    assert slack.calls_to("views.open")


def test_the_shortcut_opens_the_form_with_the_message_text(uploading, fakes):
    slack = fakes[0]
    payload = message_action_payload("a *bold* idea &amp; more", trigger_id=slack.trigger())
    assert uploading.post_payload(payload)[0] == 200
    view = form_of(slack)
    prompt = next(b for b in view["blocks"] if b["block_id"] == "prompt")
    assert prompt["element"]["initial_value"] == "a *bold* idea & more"
    assert json.loads(view["private_metadata"])["c"] == "C123"


def test_a_direct_message_is_a_prompt_answered_in_the_dm(uploading, fakes):
    slack = fakes[0]
    event = {
        "type": "message",
        "channel_type": "im",
        "channel": "D123",
        "user": "U123",
        "text": "imagen a small boat",
        "ts": "1700000100.000100",
        "event_ts": "1700000100.000100",
    }
    status, _, _ = uploading.post_signed(event_body(event), "application/json")
    assert status == 200
    slack.wait_for(lambda: slack.uploaded_files, timeout=20)
    assert slack.calls_to("files.completeUploadExternal")[0]["channel_id"] == "D123"
    # a DM is not looked up: conversations.info would need im:read, which the app lacks
    assert not [c for c in slack.calls_to("conversations.info") if c["channel"] == "D123"]
    bot_echo = dict(event, bot_id="BBOT", user="UBOT", ts="1700000101.000100")
    edit = dict(event, subtype="message_changed", ts="1700000102.000100")
    for ignored in (bot_echo, edit):
        assert uploading.post_signed(event_body(ignored), "application/json")[0] == 200
    slack.quiesce()
    assert len(slack.uploaded_files) == 1


def test_again_on_an_upload_draws_with_a_new_seed(uploading, fakes):
    slack, vertex, _, _ = fakes
    message = picture(uploading, slack, "imagen a fox --seed 7 --ar 16:9")
    click(uploading, slack, message, "Again")
    slack.wait_for(lambda: len(vertex.api_calls()) >= 2, timeout=20)
    first, second = (call.json()["generationConfig"] for call in vertex.api_calls()[:2])
    assert first["seed"] == 7 and second.get("seed") != 7
    assert first["imageConfig"] == second["imageConfig"]
