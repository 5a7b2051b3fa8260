"""build_app(config, service) -> slack_bolt.App with every listener registered."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.config import Config
from bot.generation.service import GenerationService
from bot.slack.compare import CompareRunner
from bot.slack.leaderboard import LeaderboardRunner
from bot.slack.listeners import ImagineCommand
from bot.slack.publish import Publisher
from bot.slack.reactions import Voting
from bot.votes.db import VoteStore

DEFAULT_SLACK_API_URL = "https://slack.com/api/"


def build_web_client(config: Config) -> WebClient:
    """One WebClient per process; Slack's 429s are retried after `Retry-After`."""
    client = WebClient(
        token=config.slack.bot_token,
        base_url=config.slack.api_url or DEFAULT_SLACK_API_URL,
        timeout=30,
    )
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    return client


@dataclass
class Executors:
    """Bolt's listener threads and our job threads, so that a stop can drain both in order."""

    listeners: ThreadPoolExecutor
    jobs: ThreadPoolExecutor

    @classmethod
    def from_config(cls, config: Config) -> Executors:
        return cls(
            # Bolt runs listeners here; ours only parse and ack, but 5 threads (Bolt's
            # default) would still queue a burst of commands behind each other.
            ThreadPoolExecutor(32, thread_name_prefix="listener"),
            # generations: slow provider calls that mostly wait
            ThreadPoolExecutor(config.slack.workers, thread_name_prefix="job"),
        )

    def drain(self) -> None:
        """Finish what was accepted: listeners may still be handing jobs over, then the jobs."""
        self.listeners.shutdown(wait=True)
        self.jobs.shutdown(wait=True)


def build_app(
    config: Config,
    service: GenerationService,
    votes: VoteStore | None = None,
    executors: Executors | None = None,
) -> App:
    """The Bolt app with every listener registered."""
    executors = executors or Executors.from_config(config)
    votes = votes or VoteStore(config.database_url)
    bolt_log = logging.getLogger("imagine.bolt")
    # Bolt also reads SLACK_BOT_TOKEN itself and warns that our client's token wins: it is the
    # same token, so that warning is noise.
    bolt_log.addFilter(lambda record: "`token` will be unused" not in record.getMessage())
    app = App(
        signing_secret=config.slack.signing_secret,
        client=build_web_client(config),
        listener_executor=executors.listeners,
        logger=bolt_log,
    )
    publisher = Publisher(votes)
    ImagineCommand(
        service,
        executors.jobs.submit,
        config.default_provider,
        publisher=publisher,
        compare=CompareRunner(service, votes, config.voting, publisher),
        leaderboard=LeaderboardRunner(votes, service.store, config.voting),
    ).register(app)
    Voting(votes, config.voting).register(app)
    return app
