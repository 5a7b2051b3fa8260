"""The surfaces' pure parts (button values, the form) and their listeners in-process: Bolt's
`app.dispatch` with signed requests, against the fake Web API, as Bolt's own tests do."""

from __future__ import annotations

import json

import pytest
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient

from bot.config import Config
from bot.generation.types import ImageRequest
from bot.slack import buttons, form
from bot.slack.app import build_app, build_web_client, listener_pool, publisher_factory
from bot.wiring import build_for_slack
from tests.fakes.slack import FakeSlack
from tests.slack_harness import (
    block_actions_body,
    event_body,
    message_action_payload,
    payload_body,
    sign,
    slack_env,
    view_submission_payload,
)

FORM = "application/x-www-form-urlencoded"


# -- pure -------------------------------------------------------------------------------------
def test_a_button_value_round_trips_the_request_without_its_seed():
    request = ImageRequest(
        prompt="a <!channel> & fox", n=2, aspect_ratio="16:9", negative_prompt="<b>", seed=7
    )
    ref = buttons.PictureRef(
        "U1", request, provider="imagen", target="dalle3", file_ids=("F1", "F2")
    )
    value = buttons.encode(ref)
    assert "<!channel>" not in value and "&lt;!channel&gt;" in value
    back = buttons.decode(value)
    assert back == buttons.PictureRef(
        "U1",
        ImageRequest(prompt="a <!channel> & fox", n=2, aspect_ratio="16:9", negative_prompt="<b>"),
        provider="imagen",
        target="dalle3",
        file_ids=("F1", "F2"),
    )


def test_a_button_posted_with_one_file_still_names_it():
    """Buttons already in channels carry a single file id: a Delete click still finds it."""
    value = buttons.encode(buttons.PictureRef("U1", ImageRequest(prompt="a fox")))
    older = json.dumps({**json.loads(value), "f": "F1"})
    assert buttons.decode(older).file_ids == ("F1",)
    assert buttons.decode(value).file_ids == ()


def test_a_prompt_too_long_for_a_button_is_cut_visibly():
    value = buttons.encode(buttons.PictureRef("U1", ImageRequest(prompt="fox & " * 800)))
    assert len(value) <= buttons.VALUE_LIMIT
    prompt = buttons.decode(value).request.prompt
    assert prompt.endswith("…") and prompt.startswith("fox & fox")


@pytest.mark.parametrize("value", ["", "not json", "[1]", '{"u": "U1"}'])
def test_a_value_that_is_not_ours_is_refused(value):
    with pytest.raises(ValueError):
        buttons.decode(value)


def test_the_form_reads_back_what_it_was_filled_in_with():
    request = ImageRequest(
        prompt="a fox", n=3, aspect_ratio="4:3", negative_prompt="snow", quality="hd"
    )
    view = form.form_view("C9", "https://hooks/x", ["imagen", "dalle3"], "compare", request)
    submitted = form.read_form(view_submission_payload(view, {})["view"])
    assert submitted == form.FormInput(None, request, "C9", "https://hooks/x")


def test_each_bad_field_is_named():
    view = form.form_view("C9", None, ["imagen"], "imagen")
    values = {"prompt": " \n ", "count": "1"}
    state = view_submission_payload(view, values)["view"]
    state["state"]["values"]["look"]["value"]["selected_option"] = {"value": "style:loud"}
    with pytest.raises(form.FormErrors) as err:
        form.read_form(state)
    assert set(err.value.errors) == {"prompt", "look"}


# -- in-process -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slack():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture(scope="module")
def bolt(slack, tmp_path_factory):
    """The app's listeners over its real services; no provider is configured, so nothing is
    drawn: what is tested is what each listener answers."""
    env = slack_env(
        slack,
        IMAGINE_ADMINS="UADMIN1",
        DATABASE_URL=f"sqlite:///{tmp_path_factory.mktemp('db')}/votes.db",
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",  # configured, never reached here
    )
    config = Config.from_env(env)
    client = build_web_client(config)
    services = build_for_slack(config, publisher_factory(config, client))
    app = build_app(config, services, client, listener_pool())
    yield app
    services.runner.drain(0)


@pytest.fixture(autouse=True)
def clean(slack):
    slack.quiesce()
    slack.reset()


def dispatch(app, body: bytes, content_type: str):
    headers = {"content-type": [content_type], **{k: [v] for k, v in sign(body).items()}}
    return app.dispatch(BoltRequest(body=body.decode(), headers=headers))


def test_a_strangers_delete_is_refused_in_process(bolt, slack):
    ts = slack.person_says("C1", "UBOT", "")  # stands for the picture: never deleted here
    ref = buttons.PictureRef("U123", ImageRequest(prompt="mine"), provider="dalle3")
    url = slack.response_url()
    body = block_actions_body(
        action_id=buttons.DELETE_ACTION,
        value=buttons.encode(ref),
        user_id="U999",
        channel_id="C1",
        message_ts=ts,
        response_url=url,
    )
    assert dispatch(bolt, body, FORM).status == 200
    [told] = slack.wait_for(lambda: slack.responses_to(url))
    assert "Only <@U123>" in told.text
    assert not slack.calls_to("chat.delete")


def test_an_admins_delete_removes_the_post_in_process(bolt, slack):
    client = WebClient(token=slack.token, base_url=slack.url + "/api/")
    ts = client.chat_postMessage(channel="C1", text="a picture")["ts"]
    ref = buttons.PictureRef("U123", ImageRequest(prompt="mine"), provider="dalle3")
    body = block_actions_body(
        action_id=buttons.DELETE_ACTION,
        value=buttons.encode(ref),
        user_id="UADMIN1",
        channel_id="C1",
        message_ts=ts,
        response_url=slack.response_url(),
    )
    assert dispatch(bolt, body, FORM).status == 200
    slack.wait_for(lambda: slack.message("C1", ts) is None)


def test_a_submission_with_an_empty_prompt_is_answered_in_the_ack(bolt, slack):
    view = form.form_view("C1", None, ["dalle3"], "dalle3")
    submission = view_submission_payload({**view, "id": "V1", "hash": "h"}, {"prompt": ""})
    response = dispatch(bolt, payload_body(submission), FORM)
    assert response.status == 200
    assert json.loads(response.body) == {
        "response_action": "errors",
        "errors": {"prompt": "Describe the picture you want."},
    }


def test_only_direct_messages_are_prompts(bolt, slack):
    """A channel's message is not a DM: the DM listener does not take it (another listener,
    for thread replies, may). Bolt ignores `channel_type` in an event's dict constraint, so
    this failed with `app.event({"type": "message", "channel_type": "im"})`."""
    said = {"type": "message", "user": "U1", "text": "help", "ts": "1700000001.000100"}
    in_channel = dict(said, channel="C1", channel_type="channel")
    dispatch(bolt, event_body(in_channel), "application/json")
    in_dm = dict(said, channel="D1", channel_type="im")
    assert dispatch(bolt, event_body(in_dm), "application/json").status == 200
    slack.wait_for(lambda: slack.calls_to("chat.postMessage"))
    slack.quiesce()
    [answer] = slack.calls_to("chat.postMessage")
    assert answer["channel"] == "D1" and "Providers here" in answer["text"]


def test_a_shortcut_without_a_valid_trigger_is_told(bolt, slack):
    url = slack.response_url()
    payload = message_action_payload("a fox", trigger_id="1.2.gone", response_url=url)
    assert dispatch(bolt, payload_body(payload), FORM).status == 200
    [told] = slack.wait_for(lambda: slack.responses_to(url))
    assert "couldn't open the form" in told.text
