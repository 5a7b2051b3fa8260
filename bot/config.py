"""Every setting, read once from the environment (and `.env` when present).

Other modules receive these typed objects and never read `os.environ` themselves, so a test
can build a config from a plain dict and a deployment can see all its knobs in one place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.generation.pricing import PriceError, parse_prices

DEFAULT_IMAGEN_MODEL = "gemini-3.1-flash-image"
DEFAULT_OPENAI_IMAGE_MODEL = "gpt-image-2"
DEFAULT_OPENAI_API_VERSION = "2025-04-01-preview"
MAX_SIGNED_URL_TTL = 7 * 24 * 3600
TOKEN_HEADERS = ("authorization", "api-key")  # where a client-credentials token is sent


class SettingError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


def _text(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name, "").strip()
    return value or default


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise SettingError(f"{name} must be 1/true/yes or 0/false/no, not {value!r}")


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0) -> float:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingError(f"{name} must be a number, not {value!r}") from None
    if number < minimum:
        raise SettingError(f"{name} must be at least {minimum:g}")
    return number


def _count(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    """A whole number (processes, threads)."""
    value = env.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < minimum:
        raise SettingError(f"{name} must be a whole number of at least {minimum}, not {value!r}")
    return int(value)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(env: Mapping[str, str]) -> str:
    level = (_text(env, "LOG_LEVEL", "INFO") or "INFO").upper()
    if level not in LOG_LEVELS:
        raise SettingError(
            f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {env['LOG_LEVEL'].strip()!r}"
        )
    return level


def _duration(env: Mapping[str, str], name: str, default: int) -> int:
    """Seconds, or a number followed by s/m/h/d (`3600`, `12h`, `7d`)."""
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    scale = units.get(value[-1], 1)
    digits = value[:-1] if value[-1] in units else value
    try:
        seconds = int(float(digits) * scale)
    except ValueError:
        raise SettingError(f"{name} must be seconds or like 12h / 7d, not {value!r}") from None
    if seconds <= 0:
        raise SettingError(f"{name} must be positive")
    return seconds


def _rate(env: Mapping[str, str], name: str) -> float | None:
    """Requests per minute; unset means no pacing."""
    if not env.get(name, "").strip():
        return None
    rate = _number(env, name, 0.0)
    if rate <= 0:
        raise SettingError(f"{name} must be a positive number of requests per minute")
    return rate


def _partial_images(env: Mapping[str, str]) -> int:
    """OPENAI_PARTIAL_IMAGES: the previews a gpt-image model streams, 0 to 3 (the API's range)."""
    name = "OPENAI_PARTIAL_IMAGES"
    text = env.get(name, "").strip()
    if not text:
        return 2
    if not text.isdigit() or int(text) > 3:
        raise SettingError(f"{name} must be a whole number from 0 to 3, not {text!r}")
    return int(text)


def _port(env: Mapping[str, str], name: str) -> int | None:
    if not env.get(name, "").strip():
        return None
    port = _number(env, name, 0)
    if port != int(port) or port > 65535:
        raise SettingError(f"{name} must be a port number from 0 to 65535")
    return int(port)


@dataclass(frozen=True)
class RetryConfig:
    """How hard we try before telling a person the provider is busy or down."""

    max_retries: int = 2
    max_wait: float = 30.0  # longest single wait we accept from retry-after or backoff
    backoff: float = 1.0  # first exponential backoff step, doubled each retry
    timeout: float = 120.0  # one provider HTTP call


@dataclass(frozen=True)
class GoogleConfig:
    project: str | None = None
    location: str = "us-central1"
    service_account_json: str | None = field(default=None, repr=False)
    base_url: str | None = None
    model: str = DEFAULT_IMAGEN_MODEL
    api_version: str = "v1"
    person_generation: str = "allow_adult"
    safety_setting: str = "block_medium_and_above"
    requests_per_minute: float | None = None  # the project's quota; None: no pacing


@dataclass(frozen=True)
class OpenAIConfig:
    azure_endpoint: str | None = None
    azure_api_key: str | None = field(default=None, repr=False)
    azure_deployment: str | None = None
    api_version: str = DEFAULT_OPENAI_API_VERSION
    azure_token_url: str | None = None
    azure_client_id: str | None = None
    azure_client_secret: str | None = field(default=None, repr=False)
    azure_token_scope: str | None = None
    azure_token_header: str = "authorization"  # "api-key": the token goes in as the API key
    azure_app_key: str | None = field(default=None, repr=False)  # sent as user={"appkey": ...}
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    model: str = DEFAULT_OPENAI_IMAGE_MODEL
    requests_per_minute: float | None = None  # the deployment's quota; None: no pacing
    partial_images: int = 2  # previews a gpt-image model streams while it draws (0: none)


@dataclass(frozen=True)
class StoreConfig:
    gcs_bucket: str | None = None
    gcs_url_mode: str = "signed"
    gcs_signed_url_ttl: int = MAX_SIGNED_URL_TTL
    gcs_prefix: str = ""
    storage_emulator_host: str | None = None
    keep_provider_urls: bool = False


@dataclass(frozen=True)
class SlackConfig:
    bot_token: str | None = field(default=None, repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    app_token: str | None = field(default=None, repr=False)
    api_url: str | None = None
    port: int = 3000
    workers: int = 256  # threads that run generations; provider calls are slow and I/O-bound


@dataclass(frozen=True)
class HttpConfig:
    """HTTP mode's server: gunicorn worker processes, and Bolt's threads in each."""

    processes: int = 1  # WEB_CONCURRENCY, as Heroku sets it
    threads: int = 32  # requests handed to Bolt at once; the event loop reads them


@dataclass(frozen=True)
class JobsConfig:
    """How accepted work runs: in this process, or on a Redis queue served by workers."""

    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    deadline: int = 600  # seconds from acknowledgement after which a picture is given up
    max_queued_per_user: int = 5  # pictures one person may have on the way at once
    worker_threads: int = 128  # jobs one `python -m bot worker` process runs at once
    posts_at_once: int = 8  # pictures one process posts at once; the others wait their turn
    redis_connections: int = 10  # per process: a burst's threads take turns, not new sockets
    stop_wait: float = 20.0  # a stopping worker's jobs get this long; Heroku kills at 30 s
    metrics_port: int | None = None  # where a worker (or Socket Mode) serves /metrics


@dataclass(frozen=True)
class VotingConfig:
    """Blind comparisons: which reactions vote for what, and when names are revealed."""

    emoji_a: str = "a"
    emoji_b: str = "b"
    emoji_tie: str = "handshake"
    emoji_both_bad: str = "x"
    reveal_after_votes: int = 3
    leaderboard_min_votes: int = 10
    favourite_refresh: float = 60.0  # seconds the team's favourite (`auto`) is kept

    @property
    def choices(self) -> dict[str, str]:
        """Reaction name -> choice ("A", "B", "tie", "both_bad")."""
        return {
            self.emoji_a: "A",
            self.emoji_b: "B",
            self.emoji_tie: "tie",
            self.emoji_both_bad: "both_bad",
        }


@dataclass(frozen=True)
class GovernanceConfig:
    """Who may draw where, how much, and for how long what they drew is kept."""

    allowed_channels: frozenset[str] = frozenset()  # empty: every channel
    user_daily_limit: int | None = None  # pictures per person per UTC day; None: no limit
    monthly_budget_usd: float | None = None  # the calendar month's spend; None: no budget
    retention_days: int | None = None  # `python -m bot prune` keeps this many days
    prices: Mapping[str, Any] = field(default_factory=dict)  # IMAGINE_PRICES, validated


@dataclass(frozen=True)
class Config:
    google: GoogleConfig = field(default_factory=GoogleConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    slack: SlackConfig = field(default_factory=SlackConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    voting: VotingConfig = field(default_factory=VotingConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    governance: GovernanceConfig = field(default_factory=GovernanceConfig)
    admins: frozenset[str] = frozenset()  # IMAGINE_ADMINS: see the usage, delete any picture
    default_provider: str | None = None
    database_url: str = field(default="sqlite:///imagine.db", repr=False)  # may hold a password
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Build the config from `env` (default: the process environment plus `.env`)."""
        if env is None:
            load_dotenv_file()
            env = os.environ
        url_mode = (_text(env, "GCS_URL_MODE", "signed") or "signed").lower()
        if url_mode not in {"signed", "public"}:
            raise SettingError(f"GCS_URL_MODE must be signed or public, not {url_mode!r}")
        ttl = _duration(env, "GCS_SIGNED_URL_TTL", MAX_SIGNED_URL_TTL)
        if ttl > MAX_SIGNED_URL_TTL:
            raise SettingError("GCS_SIGNED_URL_TTL can be at most 7 days (604800 seconds)")
        port = int(_number(env, "PORT", 3000, minimum=0))
        token_header = (_text(env, "AZURE_OPENAI_TOKEN_HEADER", "authorization") or "").lower()
        if token_header not in TOKEN_HEADERS:
            raise SettingError(
                f"AZURE_OPENAI_TOKEN_HEADER must be authorization or api-key, not {token_header!r}"
            )
        return cls(
            google=GoogleConfig(
                project=_text(env, "GOOGLE_CLOUD_PROJECT"),
                location=_text(env, "GOOGLE_CLOUD_LOCATION", "us-central1"),
                service_account_json=_text(env, "GOOGLE_SERVICE_ACCOUNT_JSON"),
                base_url=_text(env, "VERTEX_AI_BASE_URL"),
                model=_text(env, "IMAGEN_MODEL", DEFAULT_IMAGEN_MODEL),
                api_version=_text(env, "VERTEX_AI_API_VERSION", "v1"),
                person_generation=_text(env, "IMAGEN_PERSON_GENERATION", "allow_adult"),
                safety_setting=_text(env, "IMAGEN_SAFETY_SETTING", "block_medium_and_above"),
                requests_per_minute=_rate(env, "IMAGEN_REQUESTS_PER_MINUTE"),
            ),
            openai=OpenAIConfig(
                azure_endpoint=_text(env, "AZURE_OPENAI_ENDPOINT"),
                azure_api_key=_text(env, "AZURE_OPENAI_API_KEY"),
                azure_deployment=_text(env, "AZURE_OPENAI_IMAGE_DEPLOYMENT"),
                api_version=_text(env, "OPENAI_API_VERSION", DEFAULT_OPENAI_API_VERSION),
                azure_token_url=_text(env, "AZURE_OPENAI_TOKEN_URL"),
                azure_client_id=_text(env, "AZURE_OPENAI_CLIENT_ID"),
                azure_client_secret=_text(env, "AZURE_OPENAI_CLIENT_SECRET"),
                azure_token_scope=_text(env, "AZURE_OPENAI_TOKEN_SCOPE"),
                azure_token_header=token_header,
                azure_app_key=_text(env, "AZURE_OPENAI_APP_KEY"),
                api_key=_text(env, "OPENAI_API_KEY"),
                base_url=_text(env, "OPENAI_BASE_URL"),
                model=_text(env, "OPENAI_IMAGE_MODEL", DEFAULT_OPENAI_IMAGE_MODEL),
                requests_per_minute=_rate(env, "OPENAI_REQUESTS_PER_MINUTE"),
                partial_images=_partial_images(env),
            ),
            store=StoreConfig(
                gcs_bucket=_text(env, "GCS_BUCKET"),
                gcs_url_mode=url_mode,
                gcs_signed_url_ttl=ttl,
                gcs_prefix=(_text(env, "GCS_PREFIX", "") or "").strip("/"),
                storage_emulator_host=_text(env, "STORAGE_EMULATOR_HOST"),
                keep_provider_urls=_flag(env, "KEEP_PROVIDER_URLS"),
            ),
            slack=SlackConfig(
                bot_token=_text(env, "SLACK_BOT_TOKEN"),
                signing_secret=_text(env, "SLACK_SIGNING_SECRET"),
                app_token=_text(env, "SLACK_APP_TOKEN"),
                api_url=_text(env, "SLACK_API_URL"),
                port=port,
                workers=int(_number(env, "IMAGINE_WORKERS", 256, minimum=1)),
            ),
            retry=RetryConfig(
                max_retries=int(_number(env, "IMAGINE_MAX_RETRIES", 2)),
                max_wait=_number(env, "IMAGINE_MAX_RETRY_WAIT", 30.0),
                backoff=_number(env, "IMAGINE_RETRY_BACKOFF", 1.0),
                timeout=_number(env, "IMAGINE_PROVIDER_TIMEOUT", 120.0, minimum=0.1),
            ),
            voting=_voting(env),
            jobs=JobsConfig(
                redis_url=_text(env, "REDIS_URL"),
                deadline=_duration(env, "IMAGINE_JOB_DEADLINE", 600),
                max_queued_per_user=int(_number(env, "IMAGINE_MAX_QUEUED_PER_USER", 5, minimum=1)),
                worker_threads=int(_number(env, "IMAGINE_WORKER_THREADS", 128, minimum=1)),
                posts_at_once=_count(env, "IMAGINE_POSTS_AT_ONCE", 8),
                redis_connections=_count(env, "IMAGINE_REDIS_CONNECTIONS", 10, minimum=4),
                stop_wait=_number(env, "IMAGINE_WORKER_STOP_WAIT", 20.0),
                metrics_port=_port(env, "IMAGINE_METRICS_PORT"),
            ),
            http=HttpConfig(
                processes=_count(env, "WEB_CONCURRENCY", 1),
                threads=_count(env, "IMAGINE_HTTP_THREADS", 32),
            ),
            governance=_governance(env),
            admins=_slack_ids(env, "IMAGINE_ADMINS", USER_ID, "user ids like U012AB3CD"),
            default_provider=_text(env, "IMAGINE_DEFAULT_PROVIDER"),
            database_url=_text(env, "DATABASE_URL", "sqlite:///imagine.db"),
            log_level=_log_level(env),
        )


def _voting(env: Mapping[str, str]) -> VotingConfig:
    names = {
        field_name: (_text(env, var, default) or default).strip(":").lower()
        for field_name, var, default in (
            ("emoji_a", "VOTE_EMOJI_A", "a"),
            ("emoji_b", "VOTE_EMOJI_B", "b"),
            ("emoji_tie", "VOTE_EMOJI_TIE", "handshake"),
            ("emoji_both_bad", "VOTE_EMOJI_BOTH_BAD", "x"),
        )
    }
    if len(set(names.values())) < 4 or {"+1", "-1"} & set(names.values()):
        raise SettingError(
            "VOTE_EMOJI_A, _B, _TIE and _BOTH_BAD must be four different emoji, "
            "other than +1 and -1 (those rate single pictures)"
        )
    return VotingConfig(
        **names,
        reveal_after_votes=int(_number(env, "REVEAL_AFTER_VOTES", 3, minimum=1)),
        leaderboard_min_votes=int(_number(env, "LEADERBOARD_MIN_VOTES", 10, minimum=1)),
        favourite_refresh=_number(env, "IMAGINE_AUTO_REFRESH_SECONDS", 60.0),
    )


USER_ID = re.compile(r"^[UW][A-Z0-9]+$")
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]+$")


def _slack_ids(env: Mapping[str, str], name: str, pattern: re.Pattern, what: str) -> frozenset:
    """Comma-separated Slack ids, each checked, so a typo stops start-up instead of being
    silently never matched."""
    ids = [part.strip() for part in env.get(name, "").split(",") if part.strip()]
    for value in ids:
        if not pattern.match(value):
            raise SettingError(f"{name} must be comma-separated Slack {what}, not {value!r}")
    return frozenset(ids)


def _limit(env: Mapping[str, str], name: str) -> int | None:
    """A whole number of at least 0; unset means no limit."""
    value = env.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise SettingError(f"{name} must be a whole number of 0 or more, not {value!r}")
    return int(value)


def _governance(env: Mapping[str, str]) -> GovernanceConfig:
    budget = None
    if env.get("IMAGINE_MONTHLY_BUDGET_USD", "").strip():
        budget = _number(env, "IMAGINE_MONTHLY_BUDGET_USD", 0.0)
    retention = _limit(env, "IMAGINE_RETENTION_DAYS")
    if retention == 0:
        raise SettingError("IMAGINE_RETENTION_DAYS must be at least 1 day")
    try:
        prices = parse_prices(env.get("IMAGINE_PRICES", ""))
    except PriceError as err:
        raise SettingError(f"IMAGINE_PRICES {err}") from None
    return GovernanceConfig(
        allowed_channels=_slack_ids(
            env, "IMAGINE_ALLOWED_CHANNELS", CHANNEL_ID, "channel ids like C012AB3CD"
        ),
        user_daily_limit=_limit(env, "IMAGINE_USER_DAILY_LIMIT"),
        monthly_budget_usd=budget,
        retention_days=retention,
        prices=prices,
    )


def load_dotenv_file(path: str | Path = ".env") -> None:
    """Load `.env` from the working directory; real environment variables win."""
    from dotenv import load_dotenv

    if Path(path).is_file():
        load_dotenv(path, override=False)
