"""The HTTP mode: a WSGI app (Bolt's adapter) with `/healthz` and `/metrics`, for gunicorn."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot import metrics
from bot.config import Config
from bot.slack.app import build_app, build_web_client, listener_pool, publisher_factory
from bot.wiring import build_for_slack

EVENTS_PATH = "/slack/events"


class ImagineWsgiApp:
    """Bolt's WSGI adapter on `/slack/events`, plus `/healthz` and `/metrics`.

    `gunicorn 'bot.web:create_wsgi_app()'` also works, for custom deployments; call `drain()`
    from gunicorn's `worker_exit` hook so accepted pictures are finished.
    """

    def __init__(self, config: Config) -> None:
        client = build_web_client(config)
        self.services = build_for_slack(config, publisher_factory(config, client))
        self.listeners = listener_pool()
        app = build_app(config, self.services, client, self.listeners)
        self.bolt = SlackRequestHandler(app, EVENTS_PATH)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        if path == "/metrics" and environ.get("REQUEST_METHOD") == "GET":
            body, content_type = metrics.exposition()
            start_response(
                "200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))]
            )
            return [body]
        return self.bolt(environ, start_response)

    def drain(self) -> None:
        """Finish what was accepted: listeners may still be handing jobs over, then the jobs."""
        self.listeners.shutdown(wait=True)
        assert self.services.runner is not None
        self.services.runner.drain()
        self.services.close()


def create_wsgi_app(config: Config | None = None) -> ImagineWsgiApp:
    return ImagineWsgiApp(config or Config.from_env())
