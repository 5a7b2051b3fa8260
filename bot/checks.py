"""`python -m bot check` beyond the providers: the database, the Slack token, Redis.

Each check makes one cheap call and returns what it found, or raises `CheckFailed` with one
sentence that names the setting to look at. None writes anything (a SQLite file that does not
exist yet is not created: the app creates it at its first start).
"""

from __future__ import annotations

from pathlib import Path

from bot.config import Config, SettingError
from bot.startup import masked_url, unreachable_slack

DIALECTS = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}


class CheckFailed(Exception):
    """A configured service did not answer as it should; the message is for the operator."""


def check_database(config: Config) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError
    from sqlalchemy.pool import NullPool

    from bot.votes.db import normalise_url

    shown = masked_url(config.database_url)
    try:
        url = make_url(normalise_url(config.database_url))
        engine = create_engine(url, poolclass=NullPool)
    except (ArgumentError, ImportError):
        raise CheckFailed(
            "DATABASE_URL is not a database URL we can use: give sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST/DATABASE"
        ) from None
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        if not path.exists():
            if not path.resolve().parent.is_dir():
                raise CheckFailed(f"the directory of DATABASE_URL's file does not exist ({shown})")
            return f"SQLite at {url.database}, created at the first start"
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise CheckFailed(
            f"could not open the database in DATABASE_URL ({shown}): {reason}"
        ) from None
    finally:
        engine.dispose()
    return f"{DIALECTS.get(engine.dialect.name, engine.dialect.name)} at {shown}"


def check_slack(config: Config) -> str:
    from slack_sdk.errors import SlackApiError

    from bot.slack.app import build_web_client

    try:
        answer = build_web_client(config).auth_test()
    except SlackApiError as err:
        code = err.response.get("error", "unknown")
        raise CheckFailed(
            f"Slack refused SLACK_BOT_TOKEN ({code}): check the Bot User OAuth Token"
        ) from None
    except OSError as err:
        raise CheckFailed(unreachable_slack(config, err)) from None
    who = f"@{answer.get('user')} in {answer.get('team')}"
    if config.slack.app_token:
        return f"{who}, Socket Mode"
    if config.slack.signing_secret:
        return f"{who}, HTTP mode"
    raise CheckFailed(
        f"the token works ({who}), but set SLACK_SIGNING_SECRET (HTTP mode) or "
        "SLACK_APP_TOKEN (Socket Mode) to serve"
    )


def check_redis(config: Config) -> str:
    import redis

    from bot.wiring import redis_client

    shown = masked_url(config.jobs.redis_url or "")
    try:
        client = redis_client(config)
    except SettingError as err:
        raise CheckFailed(str(err)) from None
    try:
        client.ping()
    except redis.RedisError as err:
        raise CheckFailed(f"could not reach Redis at REDIS_URL ({shown}): {err}") from None
    finally:
        client.close()
    return f"Redis at {shown}"
