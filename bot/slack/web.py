"""The HTTP mode: a WSGI app (Bolt's adapter) with `/healthz`, served by gunicorn."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.config import Config
from bot.generation.service import GenerationService
from bot.slack.app import build_app

EVENTS_PATH = "/slack/events"


def create_wsgi_app(config: Config | None = None) -> Callable[..., Iterable[bytes]]:
    """`gunicorn 'bot.slack.web:create_wsgi_app()'` also works, for custom deployments."""
    config = config or Config.from_env()
    bolt = SlackRequestHandler(
        build_app(config, GenerationService.from_config(config)), EVENTS_PATH
    )

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        return bolt(environ, start_response)

    return application
