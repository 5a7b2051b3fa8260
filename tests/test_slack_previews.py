"""Streaming previews end to end: the app as a real process, the fake Azure OpenAI streaming
server-sent events, the fake Slack recording every post, update and deletion, the GCS emulator
holding the previews. In process, with the queue's delivery ledger: a re-run never posts twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from bot.config import Config
from bot.core.jobs import GenerateJob
from bot.generation.types import ImageRequest
from bot.slack.app import build_web_client, publisher_factory
from bot.slack.messages import RATE_HINT
from bot.votes.db import POSTED, TOLD
from bot.wiring import build_for_slack
from tests.fakes.slack import FakeSlack
from tests.services import redis_database
from tests.slack_harness import AppProcess
from tests.worlds import all_fakes

CHANNEL = "C123"
GEN = "/images/generations"
STILL_DRAWING = "Still drawing: preview"


@pytest.fixture(scope="module")
def fakes(tmp_path_factory) -> Iterator[dict]:
    with all_fakes() as started:
        yield {
            "slack": started.slack,
            "openai": started.openai,
            "vertex": started.vertex,
            "env": started.env(IMAGINE_RETRY_BACKOFF="0.01"),
            "gcs": started.gcs,
        }


@pytest.fixture(scope="module")
def app(fakes, tmp_path_factory) -> Iterator[AppProcess]:
    db = f"sqlite:///{tmp_path_factory.mktemp('previews') / 'imagine.db'}"
    with AppProcess({**fakes["env"], "DATABASE_URL": db}) as process:
        # A first picture pays what only the first pays (connections, tokens, lazy imports):
        # on a busy machine it delayed the first preview enough for the second to come within
        # a second of it, when the tests below measure the spacing of warm ones.
        slack, openai = fakes["slack"], fakes["openai"]
        delay, openai.generation_delay = openai.generation_delay, 0.5
        try:
            ask(process, slack, "dalle3 a warm up")
            slack.wait_for(lambda: finished(slack, "a warm up"), timeout=30)
        finally:
            openai.generation_delay = delay
        yield process


@pytest.fixture(autouse=True)
def clean(fakes):
    for name in ("slack", "openai", "vertex"):
        fakes[name].quiesce()
        fakes[name].reset()


def ask(app: AppProcess, slack: FakeSlack, text: str) -> str:
    response_url = slack.response_url()
    status, body, _ = app.post_command(text, channel_id=CHANNEL, response_url=response_url)
    assert status == 200, body
    return response_url


def about(prompt: str, calls: list[dict]) -> list[dict]:
    return [c for c in calls if prompt in json.dumps(c, ensure_ascii=False)]


def finished(slack: FakeSlack, prompt: str) -> list[dict]:
    return [
        m
        for m in slack.messages(CHANNEL)
        if prompt in json.dumps(m) and RATE_HINT in json.dumps(m) and STILL_DRAWING not in str(m)
    ]


def image_urls(message: dict) -> list[str]:
    return [b["image_url"] for b in message.get("blocks") or [] if b.get("type") == "image"]


def slack_times(slack: FakeSlack, method: str, prompt: str) -> list[float]:
    return [
        r.at
        for r in slack.calls(f"/api/{method}")
        if r.path == f"/api/{method}" and prompt.encode() in r.body.replace(b"+", b" ")
    ]


def test_previews_are_replaced_in_place_by_the_finished_picture(fakes, app):
    slack, openai = fakes["slack"], fakes["openai"]
    openai.generation_delay = 3.0  # previews at 1 s and 2 s, the picture at 3 s
    asked = time.monotonic()
    ask(app, slack, "dalle3 a lighthouse at dusk")
    [message] = slack.wait_for(lambda: finished(slack, "a lighthouse at dusk"), timeout=15)

    [call] = openai.calls(GEN)
    assert call.json()["stream"] is True and call.json()["partial_images"] == 2
    [post] = about("a lighthouse at dusk", slack.calls_to("chat.postMessage"))
    assert STILL_DRAWING + " 1" in json.dumps(post)
    updates = about("a lighthouse at dusk", slack.calls_to("chat.update"))
    assert [STILL_DRAWING + " 2" in json.dumps(u) for u in updates] == [True, False]
    assert all(u["ts"] == message["ts"] for u in updates)  # one message, replaced in place
    # the channel holds the finished picture, not a preview: one message, the final image
    assert [m["ts"] for m in slack.messages(CHANNEL)] == [message["ts"]]
    [final] = image_urls(message)
    assert final not in image_urls(json.loads(json.dumps(post))) and "imgs" in final
    # the first preview came while drawing, at about a second; at most one call a second
    [posted_at] = slack_times(slack, "chat.postMessage", "a lighthouse at dusk")
    assert posted_at - asked < 2.5
    times = [posted_at, *slack_times(slack, "chat.update", "a lighthouse at dusk")]
    assert len(times) == 3 and all(b - a >= 0.85 for a, b in zip(times, times[1:], strict=False))


def test_previews_faster_than_a_second_are_skipped_not_sent(fakes, app):
    slack, openai = fakes["slack"], fakes["openai"]
    openai.generation_delay = 1.2  # previews every 0.6 s: too fast to show each
    ask(app, slack, "dalle3 a quick sketch of a cat")
    [message] = slack.wait_for(lambda: finished(slack, "a quick sketch of a cat"), timeout=15)
    times = slack_times(slack, "chat.postMessage", "a quick sketch of a cat") + slack_times(
        slack, "chat.update", "a quick sketch of a cat"
    )
    assert len(times) == 2  # the first preview, then the picture in its place
    assert times[1] - times[0] >= 0.85
    assert [m["ts"] for m in slack.messages(CHANNEL)] == [message["ts"]]


def test_a_stream_failing_after_a_preview_ends_in_one_sentence(fakes, app):
    slack, openai = fakes["slack"], fakes["openai"]
    openai.generation_delay = 2.0
    openai.script_stream_failure("server_error", after=1)
    response_url = ask(app, slack, "dalle3 a storm at sea")
    slack.wait_for(lambda: slack.calls_to("chat.delete"), timeout=15)
    [post] = about("a storm at sea", slack.calls_to("chat.postMessage"))
    assert STILL_DRAWING + " 1" in json.dumps(post)
    [deleted] = slack.calls_to("chat.delete")
    assert not slack.messages(CHANNEL)  # no preview left looking like a picture
    slack.wait_for(lambda: slack.responses_to(response_url))
    time.sleep(0.5)
    sentences = [r.text for r in slack.responses_to(response_url)]
    assert len(sentences) == 1 and "failed while drawing" in (sentences[0] or "")
    assert not slack.calls_to("chat.update")


def test_the_comparison_has_no_previews(fakes, app):
    """Blind: a preview of one side would name the model that streams (and the quicker one)."""
    slack, openai = fakes["slack"], fakes["openai"]
    ask(app, slack, "compare a red barn")
    slack.wait_for(lambda: about("a red barn", slack.messages(CHANNEL)), timeout=15)
    assert "stream" not in openai.calls(GEN)[0].json()
    assert not slack.calls_to("chat.update") or all(
        STILL_DRAWING not in json.dumps(u) for u in slack.calls_to("chat.update")
    )


@pytest.mark.parametrize(
    ("settings", "why"),
    [({"OPENAI_PARTIAL_IMAGES": "0"}, "no previews asked"), ({"GCS_BUCKET": ""}, "no bucket")],
)
def test_without_previews_only_the_finished_picture_is_posted(fakes, tmp_path, settings, why):
    slack, openai = fakes["slack"], fakes["openai"]
    openai.generation_delay = 1.5
    env = {**fakes["env"], "DATABASE_URL": f"sqlite:///{tmp_path / 'i.db'}", **settings}
    with AppProcess(env) as other:
        ask(other, slack, "dalle3 a paper boat")
        if settings.get("GCS_BUCKET") == "":
            slack.wait_for(lambda: slack.uploaded_files, timeout=15)
        else:
            slack.wait_for(lambda: finished(slack, "a paper boat"), timeout=15)
        other.stop()
    assert "stream" not in openai.calls(GEN)[0].json(), why
    assert not slack.calls_to("chat.update") and not slack.calls_to("chat.delete"), why
    assert not about(STILL_DRAWING, slack.calls_to("chat.postMessage")), why


# -- the delivery ledger: a preview is a post -------------------------------------------------
@pytest.fixture
def worker(fakes, tmp_path):
    """A queue worker's workflows, in process (the ledger is on where jobs can run twice)."""
    with redis_database() as redis_url:
        config = Config.from_env(
            {
                **fakes["env"],
                "DATABASE_URL": f"sqlite:///{tmp_path / 'imagine.db'}",
                "REDIS_URL": redis_url,
            }
        )
        client = build_web_client(config)
        services = build_for_slack(config, publisher_factory(config, client), worker=True)
        yield services
        services.close()


def preview_job(slack: FakeSlack, key: str) -> GenerateJob:
    now = time.time()
    return GenerateJob(
        key=key,
        request_id="r1",
        team_id="T1",
        channel_id=CHANNEL,
        user_id="U1",
        response_url=slack.response_url(),
        created_at=now,
        deadline=now + 600,
        providers=("dalle3",),
        request=ImageRequest("a tall ship"),
    )


def test_a_job_with_previews_run_twice_posts_once(fakes, worker):
    slack, openai = fakes["slack"], fakes["openai"]
    openai.generation_delay = 1.0
    job = preview_job(slack, "command:T1:1.1")
    assert worker.workflows.run(job) == "ok"
    worker.workflows.close()
    assert worker.store.delivery_state(job.key) == POSTED
    assert len(slack.calls_to("chat.postMessage")) == 1  # the preview, then updated in place
    assert worker.workflows.run(job) == "duplicate"  # a queue redelivery
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert len(slack.messages(CHANNEL)) == 1 and finished(slack, "a tall ship")


def test_a_rerun_after_a_crash_mid_preview_posts_no_second_picture(fakes, worker):
    slack, openai = fakes["slack"], fakes["openai"]
    openai.generation_delay = 1.0
    job = preview_job(slack, "command:T1:2.2")
    worker.store.claim_delivery(job.key, CHANNEL)  # the first run claimed, posted, then died
    assert worker.workflows.run(job) == "interrupted"
    assert openai.calls(GEN)[0].json()["stream"] is True  # drawn again, previews offered...
    assert not slack.calls_to("chat.postMessage") and not slack.calls_to("chat.update")
    [reply] = slack.responses_to(job.response_url)[-1:]
    assert "may not have arrived" in reply.text
    worker.workflows.close()
    assert worker.store.delivery_state(job.key) == TOLD
