"""The HTTP mode: a WSGI app (Bolt's adapter) with `/healthz`, served by gunicorn."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.config import Config
from bot.generation.service import GenerationService
from bot.slack.app import Executors, build_app

EVENTS_PATH = "/slack/events"


class ImagineWsgiApp:
    """Bolt's WSGI adapter on `/slack/events`, plus `/healthz`.

    `gunicorn 'bot.slack.web:create_wsgi_app()'` also works, for custom deployments; call
    `drain()` from gunicorn's `worker_exit` hook so accepted pictures are finished.
    """

    def __init__(self, config: Config) -> None:
        self.executors = Executors.from_config(config)
        app = build_app(config, GenerationService.from_config(config), executors=self.executors)
        self.bolt = SlackRequestHandler(app, EVENTS_PATH)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        return self.bolt(environ, start_response)

    def drain(self) -> None:
        self.executors.drain()


def create_wsgi_app(config: Config | None = None) -> ImagineWsgiApp:
    return ImagineWsgiApp(config or Config.from_env())
