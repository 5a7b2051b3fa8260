"""A stop (SIGTERM, as Heroku sends daily) while pictures take longer than the platform's grace
period: the process drains for IMAGINE_WORKER_STOP_WAIT seconds, then tells each person whose
picture will not arrive, through their command's response_url, and exits before the SIGKILL.
The real process, in HTTP mode and in Socket Mode, against a Vertex AI fake that takes 30 s.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from bot.core.jobs import GenerateJob
from bot.core.runner import LocalJobBoard, ThreadRunner
from bot.generation.types import ImageRequest
from tests.fakes.slack import FakeSlack
from tests.fakes.socket_mode import FakeSocketMode
from tests.fakes.vertex import FakeVertexAI, service_account_info
from tests.slack_harness import AppProcess, slack_env
from tests.test_socket_mode import SocketModeApp

STOP_WAIT = 2  # the drain's budget here; 20 s by default, inside Heroku's 30
PICTURES = 10


@pytest.fixture
def fakes() -> Iterator[tuple[FakeSlack, FakeVertexAI, FakeSocketMode]]:
    with FakeSlack() as slack, FakeVertexAI() as vertex, FakeSocketMode(slack) as socket_mode:
        vertex.slow(30.0, times=PICTURES)  # every picture takes longer than the stop allows
        yield slack, vertex, socket_mode


def vertex_env(vertex: FakeVertexAI) -> dict[str, str]:
    key = service_account_info(token_uri=vertex.url + "/token")
    return {
        "GOOGLE_CLOUD_PROJECT": "test-project",
        "GOOGLE_SERVICE_ACCOUNT_JSON": json.dumps(key),
        "VERTEX_AI_BASE_URL": vertex.url,
        "IMAGINE_PROVIDER_TIMEOUT": "60",
        "IMAGINE_WORKER_STOP_WAIT": str(STOP_WAIT),
    }


def assert_everyone_was_told(slack: FakeSlack, urls: list[str], app: AppProcess, code, took):
    logs = app.logs()
    assert code == 0, f"exit status {code}:\n{logs}"
    assert took < STOP_WAIT + 4, f"the stop took {took:.1f}s"  # gunicorn would kill at +5
    for i, url in enumerate(urls):
        told = [r for r in slack.responses_to(url) if "interrupted by a restart" in (r.text or "")]
        assert len(told) == 1, f"person {i} heard: {[r.text for r in slack.responses_to(url)]}"
        assert told[0].body["response_type"] == "ephemeral"
        assert f"picture {i}" in told[0].text and "please try again" in told[0].text
    assert not slack.uploaded_files and not slack.calls_to("chat.postMessage")
    assert "Traceback" not in logs, logs


def test_http_mode_tells_each_person_whose_picture_a_stop_interrupts(fakes, tmp_path):
    slack, vertex, _ = fakes
    app = AppProcess(slack_env(slack, **vertex_env(vertex)), workdir=tmp_path).start()
    try:
        urls = []
        for i in range(PICTURES):
            urls.append(slack.response_url())
            status, body, _ = app.post_command(
                f"imagen picture {i}", user_id=f"U{i}", response_url=urls[-1]
            )
            assert status == 200 and "Drawing" in body
        slack.wait_for(lambda: len(vertex.api_calls()) == PICTURES)  # all of them drawing
        # a client still sending its headers: gunicorn would wait for it until the SIGKILL
        slow = socket.create_connection(("127.0.0.1", app.port))
        slow.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        code = app.stop(timeout=STOP_WAIT + 20)
        took = time.monotonic() - started
        slow.close()
    finally:
        app.stop()
    assert_everyone_was_told(slack, urls, app, code, took)


def test_socket_mode_tells_each_person_whose_picture_a_stop_interrupts(fakes, tmp_path):
    slack, vertex, socket_mode = fakes
    env = {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_APP_TOKEN": socket_mode.app_token,
        "SLACK_API_URL": slack.url + "/api/",
        **vertex_env(vertex),
    }
    app = SocketModeApp(env, socket_mode, workdir=tmp_path).start()
    try:
        urls = []
        for i in range(PICTURES):
            urls.append(slack.response_url())
            ack = socket_mode.slash_command(
                f"imagen picture {i}", session=app.session, user_id=f"U{i}", response_url=urls[-1]
            )
            assert "Drawing" in ack.text
        slack.wait_for(lambda: len(vertex.api_calls()) == PICTURES)
        started = time.monotonic()
        code = app.stop(timeout=STOP_WAIT + 20)
        took = time.monotonic() - started
    finally:
        app.stop()
    assert_everyone_was_told(slack, urls, app, code, took)


# -- the runner itself ---------------------------------------------------------------------------
def make_job(i: int, seconds: float) -> GenerateJob:
    now = time.time()
    return GenerateJob(
        key=f"k{i}",
        request_id=f"r{i}",
        team_id="T1",
        channel_id="C1",
        user_id=f"U{i}",
        created_at=now,
        deadline=now + 600,
        providers=("imagen",),
        request=ImageRequest(f"picture {i} taking {seconds}s"),
    )


def test_the_runner_tells_only_the_jobs_that_miss_the_deadline_and_those_after_it():
    told: list[tuple[str, str]] = []
    done: list[str] = []

    def run(job: GenerateJob) -> None:
        time.sleep(float(job.request.prompt.split()[-1].rstrip("s")))
        done.append(job.key)

    runner = ThreadRunner(
        LocalJobBoard(5), run, workers=4, tell=lambda j, t: told.append((j.key, t))
    )
    starts = [runner.submit(make_job(i, s)) for i, s in enumerate([0.1, 0.2, 5, 5, 5, 5])]
    for submitted in starts:
        submitted.start()  # four threads: two of the 5-second jobs wait for a thread
    started = time.monotonic()
    runner.drain(time.monotonic() + 0.6)
    assert time.monotonic() - started < 1.5
    assert sorted(done) == ["k0", "k1"]
    assert sorted(key for key, _ in told) == ["k2", "k3", "k4", "k5"]
    assert told[0][1].startswith(":warning: Your picture of “picture ")
    assert "was interrupted by a restart; please try again." in told[0][1]
    assert all(runner.board.cancelled(key) for key, _ in told)  # a waiting turn is not taken
    late = runner.submit(make_job(9, 0.1))  # acknowledged in the instant the stop began
    late.start()
    assert told[-1][0] == "k9" and "k9" not in done
