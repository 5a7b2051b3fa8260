"""What a starting process says about itself, and its start-up failures as one sentence.

An operator reads the first lines of a log to learn what runs (the mode, the providers, the
store, the database); a setting that cannot work must stop the process with a sentence that
names it, never a traceback. No secret is written: URLs are shown with their password masked.
"""

from __future__ import annotations

from typing import Any

from bot.config import Config, SettingError


def masked_url(url: str) -> str:
    """`scheme://user:***@host:port/db`; only the scheme when the URL cannot be parsed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        scheme = url.split("://", 1)[0] if "://" in url else "?"
        return f"{scheme}://…"


def open_vote_store(config: Config):
    """The vote store (its schema created or migrated), or a `SettingError` naming
    DATABASE_URL: not a URL we can use, or a database we cannot reach."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    from bot.votes.db import VoteStore

    url = config.database_url
    try:
        return VoteStore(url)
    except (ArgumentError, ImportError):  # unparsable, or a dialect/driver we do not have
        raise SettingError(
            "DATABASE_URL is not a database URL we can use: give sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST/DATABASE"
        ) from None
    except OperationalError as err:
        reason = str(getattr(err, "orig", err) or err).strip().splitlines()[0]
        raise SettingError(
            f"could not open the database in DATABASE_URL ({masked_url(url)}): {reason}"
        ) from None


def unreachable_slack(config: Config, err: OSError) -> str:
    """Slack's Web API did not answer (URLError, a timeout): the network, not the token."""
    from bot.slack.app import DEFAULT_SLACK_API_URL

    reason = getattr(err, "reason", None) or err
    url = config.slack.api_url or DEFAULT_SLACK_API_URL
    return f"could not reach Slack at {url} ({reason}); check the network and SLACK_API_URL"


def describe(config: Config, services: Any, mode: str) -> str:
    """One line: the mode, the providers, the store, the job runner and the database."""
    service = services.service
    providers = ", ".join(
        f"{name} ({service.providers[name].model} on {service.providers[name].label})"
        for name in service.configured_providers()
    )
    if config.store.gcs_bucket:
        store = f"gs://{config.store.gcs_bucket} ({config.store.gcs_url_mode} URLs)"
    else:
        store = "Slack uploads (no GCS_BUCKET)"
    jobs = "threads in this process"
    if config.jobs.redis_url:
        jobs = f"the queue at {masked_url(config.jobs.redis_url)}"
    return (
        f"imagine starting: mode {mode}; providers {providers or 'none configured'}; "
        f"store {store}; jobs on {jobs}; database {masked_url(config.database_url)}"
    )
