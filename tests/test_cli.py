"""`python -m bot generate` and `check`, run as a new user would, against the fakes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from PIL import Image
from sqlalchemy import select

from bot.votes.db import VoteStore
from bot.votes.schema import GENERATIONS
from tests.fakes.run import fake_cloud
from tests.fakes.slack import FakeSlack
from tests.services import postgres_schema, redis_database

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cloud_env():
    with fake_cloud() as env:
        yield env


def bot(*args: str | bytes, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_with_everything_configured(cloud_env, tmp_path):
    run = bot("check", env=cloud_env, cwd=tmp_path)
    lines = run.stdout.splitlines()
    assert run.returncode == 0, run.stdout + run.stderr
    assert lines[0].startswith("imagen  ok: model gemini-3.1-flash-image reachable")
    assert lines[1].startswith("dalle3  ok: Azure OpenAI")
    assert lines[2].startswith("store   ok: bucket imagine-demo reachable")
    assert lines[3] == "db      ok: SQLite at imagine.db, created at the first start"
    assert lines[4] == "slack   not configured: set SLACK_BOT_TOKEN to serve"
    assert len(lines) == 5 and not run.stderr
    assert not (tmp_path / "imagine.db").exists()  # a check writes nothing


def test_check_names_what_is_missing_in_one_line_each(tmp_path):
    run = bot("check", env={}, cwd=tmp_path)
    assert run.returncode == 1  # nothing to draw with
    assert run.stdout.splitlines() == [
        "imagen  not configured: set GOOGLE_CLOUD_PROJECT",
        "dalle3  not configured: set AZURE_OPENAI_ENDPOINT or OPENAI_API_KEY",
        "store   no GCS_BUCKET: Slack uploads the images itself",
        "db      ok: SQLite at imagine.db, created at the first start",
        "slack   not configured: set SLACK_BOT_TOKEN to serve",
    ]
    assert "Traceback" not in run.stderr


def test_check_reports_a_rejected_key_without_echoing_it(cloud_env, tmp_path):
    env = {**cloud_env, "AZURE_OPENAI_API_KEY": "wrong-key-do-not-print"}
    run = bot("check", env=env, cwd=tmp_path)
    assert run.returncode == 1
    [line] = [line for line in run.stdout.splitlines() if line.startswith("dalle3")]
    assert "check failed" in line and "AZURE_OPENAI_API_KEY" in line
    assert "wrong-key-do-not-print" not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr


def test_generate_prints_urls_that_download(cloud_env, tmp_path):
    run = bot(
        "generate",
        "--provider",
        "imagen",
        "--n",
        "2",
        "--aspect",
        "16:9",
        "--no",
        "text",
        "--seed",
        "7",
        "a red fox",
        env=cloud_env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("imagen (gemini-3.1-flash-image) provider")
    urls = [line.strip() for line in lines if line.strip().startswith("http")]
    assert len(urls) == 2
    for url in urls:
        assert requests.get(url, timeout=5).content[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("negative prompt" in line for line in lines)  # the approximation is reported


def test_generate_both_providers_and_write_files(cloud_env, tmp_path):
    out = tmp_path / "pictures"
    run = bot(
        "generate",
        "-p",
        "imagen",
        "-p",
        "dalle3",
        "--out",
        str(out),
        "a red fox",
        env=cloud_env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    files = sorted(out.iterdir())
    assert len(files) == 2 and all(f.read_bytes()[:4] == b"\x89PNG" for f in files)
    assert sum(line.strip().startswith("file://") for line in run.stdout.splitlines()) == 2


def test_compare_draws_with_both_and_puts_them_side_by_side(cloud_env, tmp_path):
    out = tmp_path / "pictures"
    run = bot("compare", "--out", str(out), "a red fox", env=cloud_env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("compare: A = ") and "imagen" in lines[0] and "dalle3" in lines[0]
    side_by_side = lines[1].split("side by side: ")[1]
    assert side_by_side.startswith("file://")
    with Image.open(side_by_side.removeprefix("file://")) as picture:
        assert picture.width > 1.8 * picture.height  # two squares next to each other
    assert len(list(out.iterdir())) == 3  # the two pictures and the side-by-side


def test_a_bare_prompt_chooses_as_slack_does(cloud_env, tmp_path):
    """Two providers configured and no default: `generate` compares, as `/imagine` does."""
    run = bot("generate", "--out", str(tmp_path), "a red fox", env=cloud_env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("compare: A = ")
    one = {**cloud_env, "IMAGINE_DEFAULT_PROVIDER": "dalle3"}
    run = bot("generate", "--out", str(tmp_path), "a red fox", env=one, cwd=tmp_path)
    assert run.stdout.startswith("dalle3 (gpt-image-2)")


def test_control_characters_and_undecodable_bytes_leave_the_prompt(cloud_env, tmp_path):
    """A terminal escape, a control character or a byte that is not UTF-8 (it arrives as a
    lone surrogate, which no database or JSON body can encode) is dropped, as in Slack."""
    prompt = b"a red\x1b[1m fox \xff\x01in\tthe snow"
    run = bot(
        "generate",
        "-p",
        "imagen",
        "--out",
        str(tmp_path / "out"),
        prompt,
        env=cloud_env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    store = VoteStore(f"sqlite:///{tmp_path / 'imagine.db'}")
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(select(GENERATIONS.c.prompt, GENERATIONS.c.outcome)).all()
    finally:
        store.close()
    assert [tuple(row) for row in rows] == [("a red[1m fox in the snow", "ok")]


def test_generate_with_nothing_configured_says_so_first(tmp_path):
    run = bot("generate", "a fox", env={}, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stdout.startswith("error: No image provider is configured")


def test_generate_without_a_store_or_out_says_what_to_do(cloud_env, tmp_path):
    run = bot("generate", "a fox", env={**cloud_env, "GCS_BUCKET": ""}, cwd=tmp_path)
    assert run.returncode == 2
    assert "GCS_BUCKET is not set" in run.stdout and "--out" in run.stdout


def test_generate_reports_a_provider_error_in_one_line(cloud_env, tmp_path):
    run = bot(
        "generate",
        "-p",
        "dalle3",
        "a fox",
        cwd=tmp_path,
        env={**cloud_env, "AZURE_OPENAI_IMAGE_DEPLOYMENT": "missing"},
    )
    assert run.returncode == 1
    assert run.stdout.startswith("dalle3: ") and "AZURE_OPENAI_IMAGE_DEPLOYMENT" in run.stdout
    assert "Traceback" not in run.stderr


def test_bad_setting_is_one_line(tmp_path):
    run = bot("check", env={"GCS_URL_MODE": "sometimes"}, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip() == "error: GCS_URL_MODE must be signed or public, not 'sometimes'"


def test_serve_without_slack_settings_names_them(tmp_path):
    run = bot("serve", env={}, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "error: set SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode)"
        " to run the Slack app"
    )


def test_compare_with_one_provider_says_so_and_touches_nothing(cloud_env, tmp_path):
    one = {k: v for k, v in cloud_env.items() if not k.startswith("AZURE_")}
    run = bot("compare", "a fox", env=one, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stdout.strip() == (
        "error: Comparing needs two configured providers; only imagen is set up here "
        "(see `/imagine help`)."
    )
    assert list(tmp_path.iterdir()) == []  # no database, no pictures: nothing was started


def test_worker_names_what_it_needs_and_one_line_when_slack_is_unreachable(tmp_path):
    run = bot("worker", env={}, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip() == "error: set SLACK_BOT_TOKEN, REDIS_URL to run a worker"
    unreachable = {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
        "REDIS_URL": "redis://127.0.0.1:6379/15",
        "LOG_LEVEL": "CRITICAL",
    }
    run = bot("worker", env=unreachable, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().startswith("error: could not reach Slack at http://127.0.0.1:9/")
    assert "Traceback" not in run.stderr and "xoxb-test-token" not in run.stderr


def check_lines(run: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """`check`'s lines by their first word."""
    assert "Traceback" not in run.stderr, run.stderr
    return {line.split()[0]: line for line in run.stdout.splitlines()}


def test_check_asks_slack_about_the_token(cloud_env, tmp_path):
    with FakeSlack() as slack:
        env = {**cloud_env, "SLACK_BOT_TOKEN": slack.token, "SLACK_API_URL": slack.url + "/api/"}
        run = bot("check", env={**env, "SLACK_SIGNING_SECRET": "s"}, cwd=tmp_path)
        assert run.returncode == 0, run.stdout
        assert check_lines(run)["slack"] == "slack   ok: @imagine in Imagine Test, HTTP mode"
        assert slack.calls_to("auth.test")
        run = bot("check", env=env, cwd=tmp_path)  # neither a signing secret nor an app token
        assert run.returncode == 1
        assert (
            "but set SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN"
            in check_lines(run)["slack"]
        )
        run = bot("check", env={**env, "SLACK_BOT_TOKEN": "xoxb-revoked-secret"}, cwd=tmp_path)
        assert run.returncode == 1
        assert check_lines(run)["slack"] == (
            "slack   configured, but the check failed: Slack refused SLACK_BOT_TOKEN "
            "(invalid_auth): check the Bot User OAuth Token"
        )
        assert "xoxb-revoked-secret" not in run.stdout + run.stderr


def test_check_reaches_postgresql_and_redis(cloud_env, tmp_path):
    with postgres_schema() as database_url, redis_database() as redis_url:
        env = {**cloud_env, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
        run = bot("check", env=env, cwd=tmp_path)
    lines = check_lines(run)
    assert run.returncode == 0, run.stdout
    assert lines["db"].startswith("db      ok: PostgreSQL at postgresql")
    assert lines["redis"] == f"redis   ok: Redis at {redis_url}"


def test_check_says_in_one_line_each_what_it_cannot_reach(cloud_env, tmp_path):
    env = {
        **cloud_env,
        "DATABASE_URL": "postgresql://imagine:hunter2-secret@127.0.0.1:9/imagine",
        "REDIS_URL": "redis://:redis-secret@127.0.0.1:9/0",
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
    }
    run = bot("check", env=env, cwd=tmp_path)
    lines = check_lines(run)
    assert run.returncode == 1
    assert lines["db"].startswith(
        "db      configured, but the check failed: could not open the database in DATABASE_URL "
        "(postgresql://imagine:***@127.0.0.1:9/imagine): connection failed"
    )
    assert lines["slack"].startswith(
        "slack   configured, but the check failed: could not reach Slack at "
        "http://127.0.0.1:9/api/ ("
    )
    assert lines["redis"].startswith(
        "redis   configured, but the check failed: could not reach Redis at REDIS_URL "
        "(redis://:***@127.0.0.1:9/0): "
    )
    for secret in ("hunter2-secret", "redis-secret", "xoxb-test-token"):
        assert secret not in run.stdout + run.stderr
    run = bot("check", env={**cloud_env, "DATABASE_URL": "postgres//imagine"}, cwd=tmp_path)
    assert check_lines(run)["db"] == (
        "db      configured, but the check failed: DATABASE_URL is not a database URL we can "
        "use: give sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DATABASE"
    )


def test_a_bare_prompt_follows_the_votes_as_slack_does(cloud_env, tmp_path):
    """`auto` (two providers, no default): a comparison until the votes show a clear leader,
    then the leader alone, saying why; the same rule as `/imagine <prompt>`."""
    from bot.config import Config
    from bot.generation.service import GenerationService
    from bot.votes.db import ModelRef
    from tests.seed import seed_comparison

    env = {**cloud_env, "IMAGINE_AUTO_REFRESH_SECONDS": "0"}
    store = VoteStore(f"sqlite:///{tmp_path / 'imagine.db'}")
    try:
        store.migrate()
        models = {
            name: provider.model
            for name, provider in GenerationService.from_config(
                Config.from_env(env)
            ).providers.items()
        }
        dalle, imagen = ModelRef("dalle3", models["dalle3"]), ModelRef("imagen", models["imagen"])
        seed_comparison(store, dalle, imagen, 6, 5)
        run = bot("generate", "--out", str(tmp_path), "a red fox", env=env, cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.startswith("compare: A = ")
        seed_comparison(store, dalle, imagen, 40, 3)
    finally:
        store.close()
    run = bot("generate", "--out", str(tmp_path), "a red fox", env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"dalle3 ({models['dalle3']})")
    assert lines[1].startswith("  chosen: the team's favourite, 1,")
