"""Governance: the price of each picture, limits checked before any provider call (under
concurrency, across processes, on SQLite and PostgreSQL), the monthly budget and its alerts to
the admins, `/imagine usage`, the audit export, retention (against the GCS emulator), and
settings that stop start-up.

The workflows run in process against the fake Slack and the fake Vertex AI, through the real
clients, exactly as a queue worker or the web process runs them."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
import requests

from bot.__main__ import main
from bot.cli import main_audit, main_forget_user, main_prune
from bot.config import Config, SettingError
from bot.core.jobs import CompareJob, GenerateJob, UsageJob
from bot.generation.pricing import PriceTable, TokenUsage
from bot.generation.types import ImageRequest
from bot.slack.app import build_web_client, publisher_factory
from bot.slack.command import GenerateCommand, UsageCommand, parse_command
from bot.votes.db import VoteStore
from bot.votes.spend import SpendLedger
from bot.wiring import build_for_slack
from tests.fakes._http import HANG_UP
from tests.fakes.gcs import GcsFront, start_gcs_emulator
from tests.fakes.openai_images import FakeOpenAIImages
from tests.fakes.slack import FakeSlack
from tests.fakes.vertex import IMAGE_TOKENS, FakeVertexAI, service_account_info
from tests.services import postgres_schema, redis_database
from tests.slack_harness import AppProcess, WorkerProcess, providers_env, slack_env

ADMINS = ("U0ADMIN1", "U0ADMIN2")
BUCKET = "imgs"


# -- settings ---------------------------------------------------------------------------------
NEGATIVE_PRICE = '{"dalle3": {"gpt-image-2": {"per_image": {"*/*": -1}}}}'
NO_SIZE = '{"dalle3": {"gpt-image-2": {"per_image": {"high": 1}}}}'


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"IMAGINE_PRICES": "{not json"}, "IMAGINE_PRICES"),
        ({"IMAGINE_PRICES": NEGATIVE_PRICE}, "IMAGINE_PRICES"),
        ({"IMAGINE_PRICES": NO_SIZE}, "IMAGINE_PRICES"),
        ({"IMAGINE_PRICES": '{"dalle3": {"gpt-image-2": {"cost": 1}}}'}, "IMAGINE_PRICES"),
        ({"IMAGINE_USER_DAILY_LIMIT": "-3"}, "IMAGINE_USER_DAILY_LIMIT"),
        ({"IMAGINE_USER_DAILY_LIMIT": "ten"}, "IMAGINE_USER_DAILY_LIMIT"),
        ({"IMAGINE_MONTHLY_BUDGET_USD": "-5"}, "IMAGINE_MONTHLY_BUDGET_USD"),
        ({"IMAGINE_MONTHLY_BUDGET_USD": "lots"}, "IMAGINE_MONTHLY_BUDGET_USD"),
        ({"IMAGINE_ALLOWED_CHANNELS": "C0123,general"}, "IMAGINE_ALLOWED_CHANNELS"),
        ({"IMAGINE_ALLOWED_CHANNELS": "#design"}, "IMAGINE_ALLOWED_CHANNELS"),
        ({"IMAGINE_ADMINS": "U0123,alice"}, "IMAGINE_ADMINS"),
        ({"IMAGINE_ADMINS": "u0123"}, "IMAGINE_ADMINS"),
        ({"IMAGINE_RETENTION_DAYS": "0"}, "IMAGINE_RETENTION_DAYS"),
        ({"IMAGINE_RETENTION_DAYS": "-1"}, "IMAGINE_RETENTION_DAYS"),
    ],
)  # fmt: skip
def test_a_bad_setting_is_one_sentence_naming_it(env, named):
    with pytest.raises(SettingError) as caught:
        Config.from_env(env)
    message = str(caught.value)
    assert message.startswith(named) and "\n" not in message


def test_a_bad_setting_stops_start_up_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("IMAGINE_PRICES", "[1, 2]")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: IMAGINE_PRICES") and err.count("\n") == 1
    assert "Traceback" not in err


def test_good_settings_are_parsed():
    config = Config.from_env(
        {
            "IMAGINE_ADMINS": " U0ADMIN1 , W0ADMIN2 ",
            "IMAGINE_ALLOWED_CHANNELS": "C0123,G0456",
            "IMAGINE_USER_DAILY_LIMIT": "0",
            "IMAGINE_MONTHLY_BUDGET_USD": "12.5",
            "IMAGINE_RETENTION_DAYS": "90",
            "IMAGINE_PRICES": '{"dalle3": {"my-deployment": {"per_image": {"*/*": 0.05}}}}',
        }
    )
    assert config.admins == frozenset({"U0ADMIN1", "W0ADMIN2"})
    governance = config.governance
    assert governance.allowed_channels == frozenset({"C0123", "G0456"})
    assert governance.user_daily_limit == 0 and governance.monthly_budget_usd == 12.5
    assert governance.retention_days == 90
    assert PriceTable(governance.prices).per_image("dalle3", "my-deployment", "high", None) == 0.05
    unset = Config.from_env({}).governance
    assert unset.user_daily_limit is None and unset.monthly_budget_usd is None


# -- prices -----------------------------------------------------------------------------------
def test_cost_comes_from_reported_tokens_else_from_the_picture_price():
    prices = PriceTable()
    tokens = prices.cost("dalle3", "gpt-image-2", images=1, usage=TokenUsage(10, 272))
    assert tokens == pytest.approx((10 * 5 + 272 * 30) / 1e6)
    assert prices.cost("dalle3", "dall-e-3", images=2, quality="hd", size="1024x1792") == 0.24
    assert prices.cost("dalle3", "dall-e-3", images=1, quality="standard", size="1024x1024") == 0.04
    # a versioned id takes its family's price; an unknown model has none
    assert prices.cost("imagen", "imagen-4.0-generate-001", images=3) == pytest.approx(0.12)
    assert prices.cost("imagen", "imagen-4.0-fast-generate-001", images=1) == 0.02
    assert prices.cost("imagen", "some-new-model", images=1) is None
    overridden = PriceTable({"imagen": {"imagen-4.0-generate": {"per_image": {"*/*": 0.5}}}})
    assert overridden.cost("imagen", "imagen-4.0-generate-001", images=2) == 1.0


def vertex_config(vertex, tmp_path, **extra):
    key = service_account_info(token_uri=vertex.url + "/token")
    return {
        "GOOGLE_CLOUD_PROJECT": "test-project",
        "GOOGLE_SERVICE_ACCOUNT_JSON": json.dumps(key),
        "VERTEX_AI_BASE_URL": vertex.url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'imagine.db'}",
        **extra,
    }


def test_gemini_and_gpt_image_costs_come_from_their_usage(tmp_path):
    from bot.generation.service import GenerationService

    with FakeVertexAI() as vertex, FakeOpenAIImages() as openai_fake:
        config = Config.from_env(
            {
                **vertex_config(vertex, tmp_path),
                "OPENAI_API_KEY": "sk-test-openai-key",
                "OPENAI_BASE_URL": openai_fake.url + "/v1",
            }
        )
        service = GenerationService.from_config(config, store=None)
        try:
            gemini, gpt = service.generate(ImageRequest("a red fox", n=2), ["imagen", "dalle3"])
        finally:
            service.close()
    assert gemini.ok and gpt.ok, (gemini.error, gpt.error)
    # two Gemini calls, each 3 prompt tokens in and one picture out
    assert gemini.cost_usd == pytest.approx(2 * (3 * 0.50 + IMAGE_TOKENS * 60) / 1e6)
    # one gpt-image call for both: the fake bills 10 tokens in, 272 per picture out
    assert gpt.cost_usd == pytest.approx((10 * 5 + 2 * 272 * 30) / 1e6)


# -- the workflows against the fakes ------------------------------------------------------------
@pytest.fixture
def world(tmp_path):
    """The web process's services (threads, no queue) against the fake Slack and Vertex AI;
    every picture costs $1 so that budgets are round numbers."""
    worlds = []

    def build(**env):
        slack = FakeSlack().__enter__()
        vertex = FakeVertexAI().__enter__()
        settings = vertex_config(
            vertex,
            tmp_path,
            SLACK_BOT_TOKEN=slack.token,
            SLACK_API_URL=slack.url + "/api/",
            IMAGINE_ADMINS=",".join(ADMINS),
            IMAGINE_PRICES='{"imagen": {"gemini-3.1-flash-image": {"per_image": {"*/*": 1}}}}',
        )
        settings.update(env)
        config = Config.from_env(settings)
        client = build_web_client(config)
        services = build_for_slack(config, publisher_factory(config, client))
        worlds.append((slack, vertex, services))
        return slack, vertex, services

    yield build
    for slack, vertex, services in worlds:
        services.close()
        vertex.__exit__(None, None, None)
        slack.__exit__(None, None, None)


def a_job(slack, kind=GenerateJob, user="U0ALICE", channel="C0GENERAL", n=1, **fields):
    now = time.time()
    base = dict(
        key=f"command:T1:{uuid.uuid4().hex}",
        request_id=uuid.uuid4().hex[:12],
        team_id="T1",
        channel_id=channel,
        user_id=user,
        response_url=slack.response_url(),
        created_at=now,
        deadline=now + 600,
    )
    if kind is not UsageJob:
        base |= dict(providers=("imagen",), request=ImageRequest("a red fox", n=n))
        if kind is CompareJob:
            base["providers"] = ("imagen", "imagen")
    return kind(**{**base, **fields})


def replies(slack, job) -> list[str]:
    return [r.text or "" for r in slack.responses_to(job.response_url)]


def drawn(vertex) -> int:
    return len([c for c in vertex.api_calls() if c.path.endswith(":generateContent")])


def test_twenty_at_once_against_a_limit_of_three_draw_exactly_three(world):
    slack, vertex, services = world(IMAGINE_USER_DAILY_LIMIT="3")
    jobs = [a_job(slack) for _ in range(20)]
    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(services.workflows.run, jobs))
    assert outcomes.count("ok") == 3 and outcomes.count("refused_daily") == 17
    assert drawn(vertex) == 3
    refused = [j for j, o in zip(jobs, outcomes, strict=True) if o == "refused_daily"]
    for job in refused:
        [text] = replies(slack, job)
        assert "3 of your 3 pictures today" in text and "resets at midnight UTC (in " in text
    # someone else still draws: the limit is per person
    assert services.workflows.run(a_job(slack, user="U0BOB")) == "ok"


def test_a_comparison_counts_each_picture(world):
    slack, vertex, services = world(IMAGINE_USER_DAILY_LIMIT="3")
    assert services.workflows.run(a_job(slack, kind=CompareJob)) == "ok"  # 2 pictures
    two_more = a_job(slack, kind=CompareJob)
    assert services.workflows.run(two_more) == "refused_daily"
    assert "drawn 2 of your 3 pictures today and this asks for 2" in replies(slack, two_more)[0]
    assert services.workflows.run(a_job(slack)) == "ok"  # the third


def test_a_refused_prompt_does_not_count_against_the_person(world):
    slack, vertex, services = world(IMAGINE_USER_DAILY_LIMIT="1")
    vertex.block_prompt()
    blocked = a_job(slack)
    assert services.workflows.run(blocked) == "content_policy"
    assert services.workflows.run(a_job(slack)) == "ok"  # the one picture of the day
    assert services.workflows.run(a_job(slack)) == "refused_daily"


def test_elsewhere_than_the_allowed_channels_a_sentence_says_where(world):
    slack, vertex, services = world(IMAGINE_ALLOWED_CHANNELS="C0DESIGN,C0ART")
    outside = a_job(slack, channel="C0RANDOM")
    assert services.workflows.run(outside) == "refused_channel"
    [text] = replies(slack, outside)
    assert "I draw in <#C0ART>, <#C0DESIGN>." in text
    assert drawn(vertex) == 0
    assert services.workflows.run(a_job(slack, channel="C0DESIGN")) == "ok"


def admin_dms(slack, admin: str) -> list[str]:
    return [m["text"] for m in slack.messages(f"D{admin[1:]}")]


def test_the_budget_alerts_admins_at_80_and_100_percent_once_each_then_refuses(world):
    slack, vertex, services = world(IMAGINE_MONTHLY_BUDGET_USD="5")
    for _ in range(3):
        assert services.workflows.run(a_job(slack)) == "ok"
    assert all(not admin_dms(slack, admin) for admin in ADMINS)  # $3 of $5: 60 %
    assert services.workflows.run(a_job(slack)) == "ok"  # $4: 80 %
    for admin in ADMINS:
        [alert] = admin_dms(slack, admin)
        assert "$4.00 of this month's $5.00 image budget (80 %" in alert
    assert services.workflows.run(a_job(slack, user="U0BOB")) == "ok"  # $5: 100 %
    over = a_job(slack)
    assert services.workflows.run(over) == "refused_budget"
    assert "budget ($5.00) is spent" in replies(slack, over)[0]
    assert drawn(vertex) == 5
    for admin in ADMINS:
        first, second = admin_dms(slack, admin)
        assert "(100 %" in second and "refused until next month" in second
    assert len(slack.calls_to("conversations.open")) == 4  # each alert once, to each admin


def test_a_budget_alert_whose_answer_was_lost_reaches_each_admin_once(world):
    """Slack posted an admin's alert but the connection was lost before its answer: the bot
    finds its tagged message in the DM and does not send it again."""
    slack, vertex, services = world(IMAGINE_MONTHLY_BUDGET_USD="5")
    for _ in range(3):
        assert services.workflows.run(a_job(slack)) == "ok"
    lost = len(slack.calls_to("chat.postMessage"))
    slack.lose_answer("chat.postMessage", status=HANG_UP)  # the next post: the first alert
    assert services.workflows.run(a_job(slack)) == "ok"  # $4: 80 %
    assert slack.calls_to("chat.postMessage")[lost]["channel"].startswith("D")
    for admin in ADMINS:
        [alert] = admin_dms(slack, admin)
        assert "(80 %" in alert
    assert slack.calls_to("conversations.history")  # the bot looked for it
    # a DM the bot opened is one it is in: no conversations.info (`im:read` is not asked for)
    assert not [c for c in slack.calls_to("conversations.info") if c["channel"].startswith("D")]


def test_budget_alerts_go_out_once_when_many_cross_at_once(world):
    slack, vertex, services = world(IMAGINE_MONTHLY_BUDGET_USD="10")
    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(services.workflows.run, [a_job(slack) for _ in range(12)]))
    assert outcomes.count("ok") == 10 and outcomes.count("refused_budget") == 2
    for admin in ADMINS:  # 80 % and 100 %, or only 100 % when one check saw both crossed
        alerts = admin_dms(slack, admin)  # sent from the jobs' threads: in either order
        assert sum("(100 %" in a for a in alerts) == 1
        assert sum("(80 %" in a for a in alerts) == len(alerts) - 1 <= 1


def test_usage_for_a_person_and_for_an_admin(world):
    slack, vertex, services = world(IMAGINE_USER_DAILY_LIMIT="10", IMAGINE_MONTHLY_BUDGET_USD="50")
    for job in (a_job(slack, n=2), a_job(slack, kind=CompareJob), a_job(slack, user="U0BOB")):
        assert services.workflows.run(job) == "ok"
    services.workflows.close()  # the history (per model) is written in batches
    mine = a_job(slack, kind=UsageJob)
    assert services.workflows.run(mine) == "ok"
    [text] = replies(slack, mine)
    assert "Today: 4 pictures, $4.00 · this month: 4 pictures, $4.00" in text
    assert "10 pictures a day" in text and "The team" not in text and "U0BOB" not in text
    admin = a_job(slack, kind=UsageJob, user=ADMINS[0])
    assert services.workflows.run(admin) == "ok"
    [text] = replies(slack, admin)
    assert "Today: 0 pictures, $0.00" in text
    assert "The team this month*: 5 pictures, $5.00" in text
    assert "Budget: $50.00, $45.00 left" in text
    assert "<@U0ALICE> 4 pictures, $4.00 · <@U0BOB> 1 picture, $1.00" in text
    assert "imagen/gemini-3.1-flash-image: 5 pictures, $5.00" in text


def test_usage_is_counted_without_limits_too(world):
    slack, vertex, services = world()
    assert services.workflows.run(a_job(slack, n=3)) == "ok"
    services.workflows.close()  # without limits, usage is written off the job's path
    mine = a_job(slack, kind=UsageJob)
    assert services.workflows.run(mine) == "ok"
    [text] = replies(slack, mine)
    assert "Today: 3 pictures, $3.00" in text and "no daily limit" in text


def test_a_job_run_twice_is_counted_once_without_limits(world):
    # a queue redelivers a job whose worker died after drawing: it draws again, one row
    run_twice_counted_once(*world())


def test_a_job_run_twice_is_counted_once_without_limits_on_postgresql(world):
    with postgres_schema() as url:
        run_twice_counted_once(*world(DATABASE_URL=url))


def run_twice_counted_once(slack, vertex, services) -> None:
    job = a_job(slack, n=2)
    services.workflows.run(job)
    services.workflows.run(job)
    services.workflows.close()
    assert len(vertex.api_calls()) == 4  # both runs drew both pictures
    mine = a_job(slack, kind=UsageJob)
    assert services.workflows.run(mine) == "ok"
    [text] = replies(slack, mine)
    assert "Today: 2 pictures, $2.00" in text


def test_usage_is_a_command_and_only_the_word_alone():
    assert parse_command("usage", lambda word: None) == UsageCommand()
    assert isinstance(
        parse_command("usage of light in a painting", lambda w: None), GenerateCommand
    )


# -- limits across processes, on both databases ---------------------------------------------------
def reserve_in_process(url: str, user: str, count: int) -> int:
    """A worker process: `count` threads reserving a picture each; how many were granted."""
    store = VoteStore(url)
    ledger = SpendLedger(store)
    now = datetime.now(UTC)

    def one(_):
        return ledger.reserve(
            uuid.uuid4().hex,
            team_id="T1",
            user_id=user,
            channel_id="C1",
            pictures=1,
            estimate_usd=0.04,
            daily_limit=3,
            budget_usd=None,
            now=now,
        ).granted

    with ThreadPoolExecutor(count) as pool:
        granted = sum(pool.map(one, range(count)))
    store.close()
    return granted


def reserve_everywhere(url: str) -> int:
    VoteStore(url).close()  # migrated once, before the burst
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = [pool.apply_async(reserve_in_process, (url, "U0ALICE", 5)) for _ in range(4)]
        return sum(r.get(timeout=120) for r in results)


def test_twenty_reservations_from_four_processes_grant_three_on_sqlite(tmp_path):
    assert reserve_everywhere(f"sqlite:///{tmp_path / 'imagine.db'}") == 3


def test_twenty_reservations_from_four_processes_grant_three_on_postgresql():
    with postgres_schema() as url:
        assert reserve_everywhere(url) == 3


def test_twenty_at_once_against_a_limit_of_three_on_postgresql():
    with postgres_schema() as url:
        ledger = SpendLedger(VoteStore(url, pool_size=8))
        now = datetime.now(UTC)
        barrier = threading.Barrier(20)

        def one(_):
            barrier.wait()
            return ledger.reserve(
                uuid.uuid4().hex, team_id="T1", user_id="U0ALICE", channel_id="C1",
                pictures=1, estimate_usd=0.0, daily_limit=3, budget_usd=None, now=now,
            ).granted  # fmt: skip

        with ThreadPoolExecutor(20) as pool:
            assert sum(pool.map(one, range(20))) == 3
        ledger.store.close()


# -- the audit export -----------------------------------------------------------------------------
def test_the_audit_export_has_one_row_per_picture(world, tmp_path, monkeypatch):
    slack, vertex, services = world()
    assert services.workflows.run(a_job(slack, n=2)) == "ok"
    vertex.block_prompt()
    assert services.workflows.run(a_job(slack, user="U0BOB")) == "content_policy"
    services.workflows.close()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'imagine.db'}")
    out = io.StringIO()
    assert main_audit(["--since", "1d", "--format", "csv"], out) == 0
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == [
        "time", "team", "channel", "user", "provider", "model", "prompt", "revised_prompt",
        "cost_usd", "outcome", "message_link", "image",
    ]  # fmt: skip
    alice = [r for r in rows if r["user"] == "U0ALICE"]
    assert len(alice) == 2 and {r["outcome"] for r in alice} == {"ok"}
    assert {r["cost_usd"] for r in alice} == {"1.0"} and alice[0]["team"] == "T1"
    assert alice[0]["prompt"] == "a red fox" and alice[0]["model"] == "gemini-3.1-flash-image"
    [bob] = [r for r in rows if r["user"] == "U0BOB"]
    assert bob["outcome"] == "content_policy" and bob["image"] == "" and bob["cost_usd"] == ""
    out = io.StringIO()
    assert main_audit(["--format", "json"], out) == 0
    assert len(json.loads(out.getvalue())) == 3


# -- retention against the GCS emulator ----------------------------------------------------------
@pytest.fixture(scope="module")
def gcs():
    server, url = start_gcs_emulator(BUCKET)
    try:
        with GcsFront(url) as front:
            yield url, front
    finally:
        server.stop()


def bucket_objects(emulator_url: str) -> list[str]:
    answer = requests.get(f"{emulator_url}/storage/v1/b/{BUCKET}/o")
    return sorted(item["name"] for item in answer.json().get("items") or [])


@pytest.fixture
def stored_world(world, gcs, monkeypatch, tmp_path):
    url, front = gcs
    for name in bucket_objects(url):  # the emulator is shared: each test starts from empty
        requests.delete(f"{url}/storage/v1/b/{BUCKET}/o/{quote(name, safe='')}")
    env = {
        "GCS_BUCKET": BUCKET,
        "STORAGE_EMULATOR_HOST": front.url,
        "GCS_SIGNED_URL_TTL": "900",
    }
    slack, vertex, services = world(**env)
    # the CLI reads the same settings from the environment (the vertex key signs the URLs)
    for name, value in {
        **env,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'imagine.db'}",
        "GOOGLE_CLOUD_PROJECT": "test-project",
        "GOOGLE_SERVICE_ACCOUNT_JSON": services.config.google.service_account_json or "",
    }.items():
        monkeypatch.setenv(name, value)
    return slack, vertex, services, url


def backdate(store: VoteStore, days: int) -> None:
    """Everything in the history drawn `days` ago (the clock cannot be moved for the emulator)."""
    from sqlalchemy import update

    from bot.votes.schema import COMPARISONS, GENERATIONS

    then = datetime.now(UTC) - timedelta(days=days)
    with store.writing() as conn:
        conn.execute(update(GENERATIONS).values(created_at=then))
        conn.execute(update(COMPARISONS).values(created_at=then))


def test_prune_deletes_old_pictures_from_the_bucket_and_blanks_prompts(stored_world, monkeypatch):
    slack, vertex, services, url = stored_world
    assert services.workflows.run(a_job(slack, n=2)) == "ok"
    assert services.workflows.run(a_job(slack, kind=CompareJob)) == "ok"
    services.workflows.close()
    old = bucket_objects(url)
    assert len(old) == 5  # two single pictures, two originals and the side-by-side one
    backdate(services.store, 100)
    assert services.workflows.run(a_job(slack, user="U0BOB")) == "ok"  # today's: kept
    services.workflows.close()
    monkeypatch.setenv("IMAGINE_RETENTION_DAYS", "90")
    out = io.StringIO()
    assert main_prune([], out) == 0
    assert out.getvalue().strip() == (
        "Older than 90 days: 5 pictures deleted from the bucket, 4 prompts blanked."
    )
    assert len(bucket_objects(url)) == 1 and not set(bucket_objects(url)) & set(old)
    audit = io.StringIO()
    main_audit(["--since", "365d", "--format", "json"], audit)
    prompts = {(r["user"], r["prompt"], r["image"] != "") for r in json.loads(audit.getvalue())}
    assert prompts == {("U0ALICE", "", False), ("U0BOB", "a red fox", True)}
    out = io.StringIO()
    assert main_prune([], out) == 0  # again: nothing left to do
    assert "0 pictures deleted from the bucket, 0 prompts blanked." in out.getvalue()


def test_forget_user_removes_one_persons_prompts_and_pictures(stored_world):
    slack, vertex, services, url = stored_world
    assert services.workflows.run(a_job(slack, kind=CompareJob)) == "ok"
    assert services.workflows.run(a_job(slack, user="U0BOB")) == "ok"
    services.workflows.close()
    assert len(bucket_objects(url)) == 4
    out = io.StringIO()
    assert main_forget_user(["U0ALICE"], out) == 0
    assert "For U0ALICE: 3 pictures deleted from the bucket, 3 prompts blanked." in out.getvalue()
    assert len(bucket_objects(url)) == 1
    comparison = services.store.comparison(1)
    assert comparison is not None and comparison.prompt == ""
    assert comparison.details["post"]["prompt"] == "" and not comparison.details["post"]["pictures"]
    out = io.StringIO()
    assert main_forget_user(["alice"], out) == 2
    assert "is not a Slack user id" in out.getvalue()


def test_history_from_before_the_migration_is_exported_by_object_name(tmp_path):
    """A database at version 6 (no cost, no object names) migrates in place; its pictures
    are found from the URLs it kept (without their signatures)."""
    from sqlalchemy import text

    from bot.votes.retention import audit_rows
    from bot.votes.schema import MIGRATIONS

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = VoteStore(url, migrations=MIGRATIONS[:6])
    with old.writing() as conn:
        conn.execute(
            text(
                "INSERT INTO generations (created_at, user_id, channel_id, prompt, provider, "
                "model, options, timings, outcome, image_urls, message_ts, request_id) VALUES "
                "(:at, 'U0ALICE', 'C0GENERAL', 'a red fox', 'imagen', 'imagen-4.0-generate-001', "
                "'{}', '{}', 'ok', :urls, '1700000000.000100', 'r1')"
            ),
            {
                "at": datetime.now(UTC),
                "urls": json.dumps(["https://storage.googleapis.com/imgs/2026/11/01/a.png"]),
            },
        )
    old.close()
    store = VoteStore(url)
    assert store.schema_version() == len(MIGRATIONS)
    [row] = audit_rows(store, datetime.now(UTC) - timedelta(days=1))
    assert row["image"] == "gs://imgs/2026/11/01/a.png" and row["cost_usd"] is None
    assert row["message_link"] == "https://slack.com/archives/C0GENERAL/p1700000000000100"
    assert row["team"] == "" and row["prompt"] == "a red fox"
    store.close()


# -- the Slack app, as Slack drives it -------------------------------------------------------------
def test_the_slack_app_refuses_past_the_limit_and_answers_usage_privately(tmp_path):
    with FakeSlack() as slack, FakeVertexAI() as vertex:
        env = slack_env(
            slack,
            **vertex_config(vertex, tmp_path),
            IMAGINE_USER_DAILY_LIMIT="1",
            IMAGINE_ADMINS="U0ADMIN1",
        )
        with AppProcess(env, workdir=tmp_path / "app") as app:
            first = slack.response_url()
            assert app.post_command("imagen a red fox", user_id="U0ALICE", response_url=first)[0]
            slack.wait_for(lambda: slack.uploaded_files)
            second = slack.response_url()
            app.post_command("imagen a blue fox", user_id="U0ALICE", response_url=second)
            refused = slack.wait_for(lambda: [r.text for r in slack.responses_to(second)])
            assert "You have drawn 1 of your 1 pictures today" in refused[-1]
            asked = slack.response_url()
            status, _, _ = app.post_command("usage", user_id="U0ALICE", response_url=asked)
            assert status == 200
            [answer] = slack.wait_for(lambda: slack.responses_to(asked))
            assert answer.body["response_type"] == "ephemeral"
            assert "Today: 1 picture" in answer.text and "1 picture a day" in answer.text
            assert len(vertex.api_calls()) == 1


def test_queue_workers_in_separate_processes_draw_exactly_the_limit(tmp_path):
    """20 commands at once from one person, a limit of 3, two `python -m bot worker`
    processes on PostgreSQL and Redis: 3 drawn, 17 told why not."""
    with (
        FakeSlack() as slack,
        FakeVertexAI() as vertex,
        FakeOpenAIImages(deployments={"img": "gpt-image-2"}) as images,
        redis_database() as redis_url,
        postgres_schema() as database_url,
    ):
        images.generation_delay = 0.5  # the twenty overlap in the workers
        key = service_account_info(token_uri=vertex.url + "/token")
        env = slack_env(
            slack,
            **providers_env(vertex, images, key),
            REDIS_URL=redis_url,
            DATABASE_URL=database_url,
            IMAGINE_USER_DAILY_LIMIT="3",
            IMAGINE_MAX_QUEUED_PER_USER="20",
            IMAGINE_WORKER_STOP_WAIT="1",
        )
        processes = [AppProcess(env, workdir=tmp_path / "web")]
        processes += [WorkerProcess(env, workdir=tmp_path / f"w{i}") for i in range(2)]
        try:
            web, *_ = [p.start() for p in processes]
            urls = [slack.response_url() for _ in range(20)]
            with ThreadPoolExecutor(20) as pool:
                statuses = list(
                    pool.map(
                        lambda i: web.post_command(
                            f"dalle3 a kite number {i}", user_id="U0ALICE", response_url=urls[i]
                        )[0],
                        range(20),
                    )
                )
            assert statuses == [200] * 20

            def refusals() -> list[str]:
                return [
                    r.text or ""
                    for url in urls
                    for r in slack.responses_to(url)
                    if "pictures today" in (r.text or "")
                ]

            slack.wait_for(lambda: len(refusals()) == 17 and len(slack.uploaded_files) == 3, 60)
            time.sleep(1.0)
            assert len(images.calls("/images/generations")) == 3
            assert len(slack.uploaded_files) == 3 and len(refusals()) == 17
        finally:
            for process in processes:
                process.stop()


def test_the_command_line_obeys_the_limits_and_alerts_the_admins(tmp_path):
    from tests.fakes.run import fake_cloud
    from tests.test_cli import bot

    with fake_cloud() as cloud, FakeSlack() as slack:
        env = {
            **cloud,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'imagine.db'}",
            "SLACK_BOT_TOKEN": slack.token,
            "SLACK_API_URL": slack.url + "/api/",
            "IMAGINE_ADMINS": "U0ADMIN1",
            "IMAGINE_MONTHLY_BUDGET_USD": "1",
            "IMAGINE_PRICES": '{"imagen": {"gemini-3.1-flash-image": {"per_image": {"*/*": 1}}}}',
        }
        out = str(tmp_path / "pictures")
        first = bot("generate", "-p", "imagen", "--out", out, "a red fox", env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "budget alert: Imagine has spent $1.00 of this month's $1.00" in first.stdout
        [dm] = slack.messages("D0ADMIN1")
        assert "(100 %" in dm["text"]
        again = bot("generate", "-p", "imagen", "--out", out, "a blue fox", env=env, cwd=tmp_path)
        assert again.returncode == 1
        assert "This month's image budget ($1.00) is spent" in again.stdout
        assert len(list((tmp_path / "pictures").iterdir())) == 1
