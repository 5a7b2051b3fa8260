"""App Home and `auto`: the Home tab's content (last pictures, leaderboard, the person's own
model), choosing a default that a plain `/imagine` then follows, and the votes choosing the
model. In process (Bolt's `dispatch` with signed requests against the fake Web API) and end
to end through the real process, with a bucket whose links must be signed afresh."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import urlencode

import pytest
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient

from bot.config import Config
from bot.generation.service import GenerationService
from bot.slack.listeners.home import AppHome
from bot.slack.messages import DEFAULT_MODEL_ACTION, escape
from bot.votes.db import ModelRef, VoteStore
from bot.wiring import build_choice
from tests.fakes.slack import FakeSlack
from tests.seed import seed_comparison
from tests.slack_harness import (
    SIGNING_SECRET,
    AppProcess,
    block_actions_payload,
    event_body,
    sign,
    slack_env,
)
from tests.worlds import all_fakes

FORM = "application/x-www-form-urlencoded"
HOSTILE = "a <!channel> fox & <https://evil.example|free pizza> <@U999>"


def home_opened(user: str) -> dict:
    return {
        "type": "app_home_opened",
        "user": user,
        "channel": "D0HOME",
        "tab": "home",
        "event_ts": f"{time.time():.6f}",
    }


def chose_default(user: str, value: str) -> dict:
    """The `block_actions` payload of the Home tab's model menu (a view, not a message)."""
    payload = block_actions_payload(DEFAULT_MODEL_ACTION, user_id=user, block_id="default_model")
    for key in ("message", "channel", "response_url"):
        payload.pop(key, None)
    payload["container"] = {"type": "view", "view_id": "V0HOME"}
    payload["view"] = {"id": "V0HOME", "type": "home", "blocks": [], "hash": "1.1"}
    payload["actions"] = [
        {
            "type": "static_select",
            "action_id": DEFAULT_MODEL_ACTION,
            "block_id": "default_model",
            "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value},
            "action_ts": f"{time.time():.6f}",
        }
    ]
    return payload


def texts(view: dict) -> str:
    return json.dumps(view["blocks"], ensure_ascii=False)


def menu(view: dict) -> dict:
    return next(b["accessory"] for b in view["blocks"] if b.get("block_id") == "default_model")


# -- in process ---------------------------------------------------------------------------------
@pytest.fixture
def home(tmp_path):
    with FakeSlack() as slack:
        env = slack_env(
            slack,
            GOOGLE_CLOUD_PROJECT="p",
            OPENAI_API_KEY="sk-test-key-123456",
            DATABASE_URL=f"sqlite:///{tmp_path / 'imagine.db'}",
        )
        config = Config.from_env(env)
        store = VoteStore(config.database_url)
        store.migrate()
        service = GenerationService.from_config(config)
        client = WebClient(token=slack.token, base_url=slack.url + "/api/")
        app = App(signing_secret=SIGNING_SECRET, client=client, process_before_response=True)
        listener = AppHome(store, build_choice(config, service, store), service, config.voting)
        listener.register(app)
        yield slack, app, store, client
        store.close()


def dispatch(app: App, body: bytes, content_type: str) -> int:
    headers = {"content-type": [content_type], **{k.lower(): [v] for k, v in sign(body).items()}}
    return app.dispatch(BoltRequest(body=body.decode(), headers=headers)).status


def open_home(app: App, user: str) -> int:
    return dispatch(app, event_body(home_opened(user)), "application/json")


def test_home_without_pictures_invites_a_first_one(home):
    slack, app, _, _ = home
    slack.add_user("U1")
    assert open_home(app, "U1") == 200
    view = slack.home_view("U1")
    assert view is not None
    assert "No pictures yet" in texts(view) and "No head-to-head votes yet" in texts(view)
    options = [o["value"] for o in menu(view)["options"]]
    assert options == ["imagen", "dalle3", "compare", "auto"]
    assert "initial_option" not in menu(view)
    assert "the team's default: `auto`" in texts(view)


def test_home_lists_the_last_pictures_escaped_with_fresh_links(home):
    slack, app, store, client = home
    slack.add_user("U1")
    slack.add_channel("C1")
    posted = client.chat_postMessage(channel="C1", text="a picture")["ts"]
    uploaded = client.files_upload_v2(channel="C1", content=b"png", filename="p.png")
    file_id = uploaded["file"]["id"]
    common = {"user_id": "U1", "channel_id": "C1", "options": {}, "timings": {}, "outcome": "ok"}
    for i in range(11):
        store.record_generation(
            **common, prompt=f"old {i}", provider="imagen", model="m", image_urls=[],
            request_id=f"old{i}", message_ts=posted,
        )  # fmt: skip
    store.record_generation(
        **common, prompt=HOSTILE, provider="dalle3", model="gpt-image-2", image_urls=[],
        request_id="up", rated=True, upload_file_id=file_id,
    )  # fmt: skip
    assert open_home(app, "U1") == 200
    view = slack.home_view("U1")
    pictures = [b["text"]["text"] for b in view["blocks"] if b["type"] == "section"][1:11]
    assert len(pictures) == 10  # the last ten: "old 0" is not among them
    assert "old 0" not in texts(view) and "old 1" in texts(view)
    first = pictures[0]
    assert "&lt;!channel&gt;" in first and "&lt;@U999&gt;" in first and "&amp;" in first
    assert "<!channel>" not in first and "<@U999>" not in first and "<https://evil" not in first
    assert f"/files/UBOT/{file_id}/" in first  # an upload links to its file
    archive = f"https://imagine-test.slack.com/archives/C1/p{posted.replace('.', '')}"
    assert archive in pictures[1]  # a post links to its message
    assert "<!date^" in first and "`gpt-image-2`" in first


def test_choosing_a_model_saves_it_and_republishes(home):
    slack, app, store, _ = home
    slack.add_user("U1")
    body = urlencode({"payload": json.dumps(chose_default("U1", "dalle3"))}).encode()
    assert dispatch(app, body, FORM) == 200
    assert store.preference("U1") == "dalle3"
    view = slack.home_view("U1")
    assert menu(view)["initial_option"]["value"] == "dalle3"
    assert "Yours: `dalle3`" in texts(view)


def test_a_value_the_menu_does_not_offer_is_not_saved(home):
    slack, app, store, _ = home
    slack.add_user("U1")
    body = urlencode({"payload": json.dumps(chose_default("U1", "midjourney"))}).encode()
    assert dispatch(app, body, FORM) == 200
    assert store.preference("U1") is None
    assert "initial_option" not in menu(slack.home_view("U1"))


def test_a_user_slack_does_not_know_gets_nothing_and_nothing_breaks(home):
    slack, app, _, _ = home
    assert open_home(app, "UNOBODY") == 200
    [call] = slack.calls_to("views.publish")
    assert call["user_id"] == "UNOBODY" and slack.home_view("UNOBODY") is None


# -- end to end ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    db = f"sqlite:///{tmp_path_factory.mktemp('home') / 'imagine.db'}"
    with all_fakes() as fakes:
        env = fakes.env(
            DATABASE_URL=db, IMAGINE_AUTO_REFRESH_SECONDS="0", IMAGINE_RETRY_BACKOFF="0.01"
        )
        with AppProcess(env) as app:
            store = VoteStore(db)
            yield fakes.slack, app, store
            store.close()


@pytest.fixture(autouse=True)
def clean_world(request):
    if "world" in request.fixturenames:
        slack = request.getfixturevalue("world")[0]
        slack.quiesce()
        slack.reset()
    yield


def plain(world, prompt: str, user: str) -> tuple[str, dict]:
    """`/imagine <prompt>` from `user`; (the acknowledgement, the post in the channel)."""
    slack, app, _ = world
    status, body, _ = app.post_command(prompt, user_id=user, response_url=slack.response_url())
    assert status == 200, body
    tag = prompt.split()[-1]  # `unique`'s suffix: the prompt itself is shown escaped
    finished = lambda m: tag in json.dumps(m) and "Still drawing" not in json.dumps(m)  # noqa: E731
    post = slack.wait_for(  # a gpt-image picture's previews are replaced by the picture
        lambda: [m for m in slack.messages("C123") if finished(m)], timeout=30
    )[0]
    return body, post


def unique(prompt: str) -> str:
    return f"{prompt} {uuid.uuid4().hex[:6]}"


def test_home_end_to_end_signs_links_afresh_and_shows_the_chart(world):
    slack, app, store = world
    slack.add_user("UHOME")
    prompt = unique("a &lt;!here&gt; &amp; <@U999|bob> heron")  # as Slack sends what was typed
    _, post = plain(world, f"imagen {prompt}", "UHOME")
    seed_comparison(
        store, ModelRef("dalle3", "gpt-image-2"), ModelRef("imagen", "gemini-3.1-flash-image"), 7, 5
    )
    history = slack.wait_for(lambda: store.recent_pictures("UHOME"))
    assert history[0].image_urls[0].startswith("gs://imgs/")  # the object, never a signed URL
    assert app.post_event(home_opened("UHOME"))[0] == 200
    view = slack.wait_for(lambda: slack.home_view("UHOME"), timeout=20)
    shown = texts(view)
    kept = history[0].prompt
    assert "<!here>" in kept and "<@U999" not in kept  # what was typed, and a pick, cleaned
    assert escape(kept) in shown and "<!here>" not in shown and "<@U999" not in shown
    [picture] = [b for b in view["blocks"] if b["type"] == "section" and "heron" in json.dumps(b)]
    assert "X-Goog-Signature=" in picture["text"]["text"]  # signed now, from the object name
    [chart] = [b for b in view["blocks"] if b["type"] == "image"]
    assert "X-Goog-Signature=" in chart["image_url"]
    assert "gpt-image-2" in shown and "gemini-3.1-flash-image" in shown
    assert "The chart needs an image store" not in shown
    assert post["ts"]


def test_a_chosen_default_is_what_a_plain_imagine_draws_with(world):
    slack, app, store = world
    slack.add_user("UPICK")
    body = urlencode({"payload": json.dumps(chose_default("UPICK", "dalle3"))}).encode()
    assert app.post_signed(body, FORM)[0] == 200
    slack.wait_for(lambda: store.preference("UPICK") == "dalle3")
    assert menu(slack.wait_for(lambda: slack.home_view("UPICK")))["initial_option"]["value"] == (
        "dalle3"
    )
    ack, post = plain(world, unique("a quiet harbour"), "UPICK")
    assert "with dalle3" in ack
    assert "your default in App Home" in json.dumps(post)


def test_auto_compares_until_a_clear_leader_then_draws_with_it(world):
    slack, app, store = world
    ack, post = plain(world, unique("a windmill at dusk"), "UAUTO")
    assert "Comparing 2 models" in ack
    leader, other = ModelRef("imagen", "gemini-3.1-flash-image"), ModelRef("dalle3", "gpt-image-2")
    for _ in range(3):
        seed_comparison(store, leader, other, 20, 2)
    ack, post = plain(world, unique("a windmill at dawn"), "UAUTO")
    assert "with imagen" in ack
    said = json.dumps(post, ensure_ascii=False)
    assert "Drawn by imagen: the team's favourite, 1," in said
    # a person's own choice wins over the team's
    store.set_preference("UAUTO", "compare")
    ack, _ = plain(world, unique("a windmill at noon"), "UAUTO")
    assert "Comparing 2 models" in ack


def test_home_end_to_end_for_someone_without_pictures(world):
    slack, app, store = world
    slack.add_user("UNEW")
    store.set_preference("UNEW", "imagen")
    assert app.post_event(home_opened("UNEW"))[0] == 200
    view = slack.wait_for(lambda: slack.home_view("UNEW"), timeout=20)
    assert "No pictures yet" in texts(view)
    assert menu(view)["initial_option"]["value"] == "imagen"
    assert "Yours: `imagen`" in texts(view)
