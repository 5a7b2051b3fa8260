"""Starting up: a setting that cannot work stops the process with one sentence naming it (never
a traceback, never a password); `.env` is honoured for LOG_LEVEL; a process that does start says
in one line what it runs. `python -m bot serve | worker` as real processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.config import Config
from bot.startup import describe, masked_url
from bot.wiring import build_service
from tests.fakes.slack import FakeSlack
from tests.fakes.vertex import FakeVertexAI, service_account_info
from tests.slack_harness import AppProcess, slack_env

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "hunter2-do-not-print"


@pytest.fixture(scope="module")
def slack():
    with FakeSlack() as fake:
        yield fake


def run_bot(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"LOG_LEVEL": "bogus"}, "error: LOG_LEVEL must be one of DEBUG, INFO, WARNING"),
        ({"WEB_CONCURRENCY": "abc"}, "error: WEB_CONCURRENCY must be a whole number"),
        ({"IMAGINE_HTTP_THREADS": "0"}, "error: IMAGINE_HTTP_THREADS must be a whole number"),
        ({"DATABASE_URL": "postgres//imagine"}, "error: DATABASE_URL is not a database URL"),
        (
            {"DATABASE_URL": f"postgresql://imagine:{PASSWORD}@127.0.0.1:9/imagine"},
            "error: could not open the database in DATABASE_URL "
            "(postgresql://imagine:***@127.0.0.1:9/imagine): connection failed",
        ),
        (
            {"DATABASE_URL": "sqlite:////no/such/directory/imagine.db"},
            "error: could not open the database in DATABASE_URL "
            "(sqlite:////no/such/directory/imagine.db): unable to open database file",
        ),
        (
            {"SLACK_API_URL": "http://127.0.0.1:9/api/"},
            "error: could not reach Slack at http://127.0.0.1:9/api/ (",
        ),
        (
            {"SLACK_API_URL": "http://127.0.0.1:9/api/", "SLACK_APP_TOKEN": "xapp-1-A-1-secret"},
            "error: could not reach Slack at http://127.0.0.1:9/api/ (",
        ),
    ],
    ids=[
        "log-level",
        "web-concurrency",
        "http-threads",
        "malformed-database-url",
        "unreachable-postgresql",
        "unreachable-sqlite",
        "unreachable-slack-http",
        "unreachable-slack-socket-mode",
    ],
)
def test_serve_stops_with_one_sentence_naming_the_setting(slack, tmp_path, setting, expected):
    run = run_bot("serve", env=slack_env(slack, **setting), cwd=tmp_path)
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert run.returncode == 2, lines
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert PASSWORD not in run.stderr and slack.token not in run.stderr


def test_worker_stops_with_one_sentence_too(tmp_path):
    env = {"SLACK_BOT_TOKEN": "xoxb-x", "REDIS_URL": "redis://127.0.0.1:9/0", "LOG_LEVEL": "loud"}
    run = run_bot("worker", env=env, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "error: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'loud'"
    )


def test_log_level_in_dotenv_is_honoured(slack, tmp_path):
    (tmp_path / ".env").write_text("LOG_LEVEL=DEBUG\n")
    with AppProcess(slack_env(slack), workdir=tmp_path) as app:
        assert app.get("/healthz")[0] == 200
    assert re.search(r"^\S+ \S+ DEBUG ", app.logs(), re.M), app.logs()


def test_a_starting_process_says_what_it_runs_in_one_line(slack, tmp_path):
    with FakeVertexAI() as vertex:
        key = service_account_info(token_uri=vertex.url + "/token")
        env = slack_env(
            slack,
            GOOGLE_CLOUD_PROJECT="test-project",
            GOOGLE_SERVICE_ACCOUNT_JSON=json.dumps(key),
            VERTEX_AI_BASE_URL=vertex.url,
            DATABASE_URL=f"sqlite:///{tmp_path / 'votes.db'}",
        )
        with AppProcess(env, workdir=tmp_path) as app:
            pass
    [line] = [line for line in app.logs().splitlines() if "imagine starting:" in line]
    assert line.endswith(
        f"imagine starting: mode HTTP on port {app.port} (1 process); "
        "providers imagen (gemini-3.1-flash-image on Google Vertex AI); "
        "store Slack uploads (no GCS_BUCKET); jobs on threads in this process; "
        f"database sqlite:///{tmp_path / 'votes.db'}"
    )


def test_the_start_line_masks_passwords():
    config = Config.from_env(
        {
            "OPENAI_API_KEY": "sk-test-key-0123456789",
            "DATABASE_URL": f"postgres://imagine:{PASSWORD}@db.internal:5432/imagine",
            "REDIS_URL": f"redis://:{PASSWORD}@cache.internal:6379/0",
            "GCS_BUCKET": "pictures",
        }
    )
    line = describe(config, SimpleNamespace(service=build_service(config)), "queue worker")
    assert line == (
        "imagine starting: mode queue worker; providers dalle3 (gpt-image-2 on OpenAI); "
        "store gs://pictures (signed URLs); jobs on the queue at "
        "redis://:***@cache.internal:6379/0; database postgres://imagine:***@db.internal:5432/imagine"
    )
    assert PASSWORD not in line and "sk-test" not in line


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql+psycopg://u:{PASSWORD}@h/db?sslmode=require",
            "postgresql+psycopg://u:***@h/db?sslmode=require",
        ),
        ("sqlite:///imagine.db", "sqlite:///imagine.db"),
        (f"rediss://default:{PASSWORD}@h:6380", "rediss://default:***@h:6380"),
        (f"not a url {PASSWORD}", "?://…"),
    ],
)
def test_masked_url(url, shown):
    assert masked_url(url) == shown
