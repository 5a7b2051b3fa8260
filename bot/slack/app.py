"""The Bolt app: a WebClient, and every listener registered over the process's services."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_sdk import WebClient

from bot.config import Config
from bot.core.services import Services
from bot.generation.service import GenerationService
from bot.slack.delivery import Delivery
from bot.slack.listeners.actions import CancelButton, RevealButton
from bot.slack.listeners.commands import ImagineCommand
from bot.slack.listeners.direct import DirectMessages
from bot.slack.listeners.drawing import Drawing
from bot.slack.listeners.edits import ThreadEdits
from bot.slack.listeners.events import ReactionVotes
from bot.slack.listeners.form import ImagineForm
from bot.slack.listeners.home import AppHome
from bot.slack.listeners.pictures import PictureButtons
from bot.slack.listeners.remix import RemixShortcut
from bot.slack.publisher import SlackPublisher
from bot.slack.retry import SlackWebClient, retry_handlers
from bot.slack.reveal import Reveal

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
LISTENER_THREADS = 32  # ours only parse and ack, but Bolt's 5 would queue a burst


def build_web_client(config: Config) -> WebClient:
    """One WebClient per process; Slack's 5xx and 429s (uploads included) are retried until
    the deadline of the job being posted (`bot.slack.retry`)."""
    return SlackWebClient(
        token=config.slack.bot_token,
        base_url=config.slack.api_url or DEFAULT_SLACK_API_URL,
        timeout=30,
        retry_handlers=retry_handlers(config.retry.backoff, config.retry.max_wait),
    )


def publisher_factory(config: Config, client: WebClient):
    """Builds the Slack publisher for `bot.wiring` once the generation service exists."""

    def build(service: GenerationService) -> SlackPublisher:
        labels = {name: p.label for name, p in service.providers.items()}
        return SlackPublisher(client, config.voting, labels, service.configured_providers())

    return build


def build_app(
    config: Config,
    services: Services,
    client: WebClient,
    listeners: ThreadPoolExecutor,
    *,
    commands_only: bool = False,
) -> App:
    """The Bolt app with every listener registered; `listeners` runs them.

    `commands_only`: an app for `/imagine` alone, that runs its listener in the request's own
    thread and answers when it returns (`process_before_response`). Parsing, admitting and
    acknowledging a command is quick work in memory, and everything slow after it runs on
    the runner's threads or a queue worker (a bare `/imagine` opens the form first, which
    must happen within the trigger's 3 seconds anyway). Bolt's other way hands the listener
    to another thread and looks every 10 ms whether it acknowledged: under a burst of
    commands that made the acknowledgements wait. The other listeners (votes, buttons,
    forms, App Home) do slower work after acknowledging, so they stay on the main app."""
    assert services.runner is not None, "the Slack app needs a runner for its jobs"
    bolt_log = logging.getLogger("imagine.bolt")
    # Bolt also reads SLACK_BOT_TOKEN itself and warns that our client's token wins: it is the
    # same token, so that warning is noise.
    bolt_log.addFilter(lambda record: "`token` will be unused" not in record.getMessage())
    app = App(
        signing_secret=config.slack.signing_secret,
        client=client,
        listener_executor=listeners,
        logger=bolt_log,
        process_before_response=commands_only,
    )
    drawing = Drawing(services.service, services.choice, services.runner, config.jobs.deadline)
    form = ImagineForm(drawing)
    command = ImagineCommand(
        services.service, services.choice, services.runner, config.jobs.deadline, form
    )
    command.register(app)
    if commands_only:
        return app
    reveal = Reveal(services.store, config.voting, services.service.link, Delivery(client))
    form.register(app)
    PictureButtons(drawing, form, services.runner.board, config.admins).register(app)
    DirectMessages(drawing, command.help).register(app)
    ReactionVotes(services.store, config.voting, reveal).register(app)
    RevealButton(services.store, config.voting, reveal, services.runner.board).register(app)
    CancelButton(services.runner).register(app)
    ThreadEdits(services.store, services.runner, config.jobs.deadline).register(app)
    RemixShortcut(services.service, services.store, services.runner, config.jobs.deadline).register(
        app
    )
    AppHome(services.store, services.choice, services.service, config.voting).register(app)
    return app


def listener_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(LISTENER_THREADS, thread_name_prefix="listener")
