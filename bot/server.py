"""`python -m bot serve`: Socket Mode when SLACK_APP_TOKEN is set, else HTTP on gunicorn;
`python -m bot worker`: a queue worker (REDIS_URL)."""

from __future__ import annotations

import gc
import logging
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from bot.config import Config
from bot.logs import configure_logging
from bot.startup import unreachable_slack


def missing_slack_settings(config: Config) -> list[str]:
    missing = [] if config.slack.bot_token else ["SLACK_BOT_TOKEN"]
    if not config.slack.app_token and not config.slack.signing_secret:
        missing.append("SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode)")
    return missing


def main_serve() -> int:
    config = Config.from_env()  # reads .env first, so LOG_LEVEL there counts
    configure_logging(config.log_level)
    missing = missing_slack_settings(config)
    if missing:
        print(f"error: set {', '.join(missing)} to run the Slack app", file=sys.stderr)
        return 2
    from slack_bolt.error import BoltError

    try:
        if config.slack.app_token:
            return _serve_socket_mode(config)
        return _serve_http(config)
    except BoltError as err:
        print(f"error: {startup_error(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # URLError, timeouts: Bolt's auth.test could not reach Slack
        print(f"error: {unreachable_slack(config, err)}", file=sys.stderr)
        return 2


def startup_error(err: Exception) -> str:
    """Bolt's start-up failure as one line: a refused token names the variable to check."""
    code = re.search(r"'error': '(\w+)'", str(err))
    if code:
        return f"Slack refused SLACK_BOT_TOKEN ({code.group(1)}): check the Bot User OAuth Token"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


@contextmanager
def quiet_slack_client() -> Iterator[None]:
    """slack_sdk logs each failed call (and each retry) at ERROR; at start-up the failure is
    one sentence of ours instead."""
    logger = logging.getLogger("slack_sdk.web.base_client")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def announce(config: Config, services, mode: str) -> None:
    from bot.startup import describe

    logging.getLogger("imagine.server").info(describe(config, services, mode))


class _Stopping(Exception):
    """Raised in the main thread by SIGTERM, as KeyboardInterrupt is by SIGINT."""


def _stopping(signum: int, frame: object) -> None:
    raise _Stopping


def _serve_socket_mode(config: Config) -> NoReturn:
    """Until SIGTERM or Ctrl+C; then take no more envelopes, finish the pictures promised,
    and end the process (exit 2 when Slack refuses the app-level token)."""
    import signal
    import time

    from slack_sdk.errors import SlackApiError

    from bot.slack.app import build_app, build_web_client, listener_pool, publisher_factory
    from bot.slack.socket_mode import SocketModeFrontEnd
    from bot.wiring import build_for_slack

    client = build_web_client(config)
    services = build_for_slack(config, publisher_factory(config, client))
    listeners = listener_pool()
    with quiet_slack_client():  # a failed auth.test is reported in one sentence, by us
        app = build_app(config, services, client, listeners)
        commands = build_app(config, services, client, listeners, commands_only=True)
    announce(config, services, "Socket Mode")
    gc.freeze()  # what exists now lives as long as the process (see _serve_http)
    if config.jobs.metrics_port is not None:
        from bot import metrics

        metrics.serve(config.jobs.metrics_port)
    assert services.runner is not None
    handler = SocketModeFrontEnd(app, commands, config.slack.app_token, services.runner.gate)
    signal.signal(signal.SIGTERM, _stopping)
    status = 0
    stopped_at = None
    try:
        handler.start()
    except SlackApiError as err:  # apps.connections.open refused the app-level token
        code = err.response.get("error", "unknown")
        print(
            f"error: Slack refused SLACK_APP_TOKEN ({code}): check the App-Level Token "
            "(xapp-..., scope connections:write)",
            file=sys.stderr,
        )
        status = 2
    except (_Stopping, KeyboardInterrupt):
        stopped_at = time.monotonic()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        _within(CLOSE_WAIT, handler.close)
        listeners.shutdown(wait=True)
        # as long as the platform allows; then whoever waits is told it was interrupted
        services.runner.drain(None if stopped_at is None else stopped_at + config.jobs.stop_wait)
        services.close()
    # What we accepted is done. slack_sdk's own threads (its close joins them without a
    # timeout, and a reconnect in progress can hold it) must not keep the process alive
    # until the platform's SIGKILL.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


CLOSE_WAIT = 5.0  # seconds we give the websocket client to close


def _within(seconds: float, call: Callable[[], object]) -> None:
    """Run `call` but wait for it at most `seconds` (it runs on in a daemon thread)."""
    worker = threading.Thread(target=call, daemon=True, name="socket-mode-close")
    worker.start()
    worker.join(seconds)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}es"


STOP_MARGIN = 5  # seconds between the drain's end and gunicorn's SIGKILL: telling, exiting


def _serve_http(config: Config) -> int:
    from gunicorn.app.base import BaseApplication

    from bot.web import create_app

    # Built before gunicorn forks (preload) so that a bad token stops start-up with one line.
    with quiet_slack_client():  # a failed auth.test is reported in one sentence, by us
        application = create_app(config)
    announce(
        config,
        application.services,
        f"HTTP on port {config.slack.port} ({_count(config.http.processes, 'process')})",
    )
    # What exists now lives as long as the process: keep it out of the garbage collector's
    # passes (less CPU per request) and unwritten after the fork (shared between workers).
    gc.freeze()

    def worker_exit(server, worker) -> None:
        if application.stopping:  # else a worker that failed to boot: gunicorn reports it
            application.end()

    class ImagineServer(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"0.0.0.0:{config.slack.port}")
            self.cfg.set("workers", config.http.processes)
            # asyncio: a slow client costs a socket, not a thread (see bot/web.py)
            self.cfg.set("worker_class", "bot.web.ImagineWorker")
            # not uvloop, which gunicorn takes when it is installed: measured here, 200
            # commands at once got their acknowledgements 2.5 times later at the p99 with it
            self.cfg.set("asgi_loop", "asyncio")
            self.cfg.set("timeout", 60)
            # Heroku sends SIGKILL 30 s after SIGTERM; the drain gets IMAGINE_WORKER_STOP_WAIT
            self.cfg.set("graceful_timeout", math.ceil(config.jobs.stop_wait) + STOP_MARGIN)
            self.cfg.set("preload_app", True)
            self.cfg.set("backlog", 2048)
            # the master built the services: each worker drops the connections it inherited
            self.cfg.set("post_fork", lambda server, worker: application.after_fork())
            self.cfg.set("worker_exit", worker_exit)

        def load(self):
            return application

    ImagineServer().run()
    return 0


WORKER_METRICS_PORT = 9091


def main_worker() -> int:
    """Run queued jobs until SIGTERM; then finish what can finish, hand the rest back."""
    import signal
    import time

    from slack_sdk.errors import SlackApiError

    from bot import metrics
    from bot.slack.app import build_web_client, publisher_factory
    from bot.wiring import build_for_slack

    config = Config.from_env()
    configure_logging(config.log_level)
    missing = [] if config.slack.bot_token else ["SLACK_BOT_TOKEN"]
    if not config.jobs.redis_url:
        missing.append("REDIS_URL")
    if missing:
        print(f"error: set {', '.join(missing)} to run a worker", file=sys.stderr)
        return 2
    client = build_web_client(config)
    try:
        with quiet_slack_client():
            client.auth_test()
    except SlackApiError as err:
        code = err.response.get("error", "unknown")
        print(
            f"error: Slack refused SLACK_BOT_TOKEN ({code}): check the Bot User OAuth Token",
            file=sys.stderr,
        )
        return 2
    except OSError as err:  # URLError, timeouts: the network, not the token
        print(f"error: {unreachable_slack(config, err)}", file=sys.stderr)
        return 2
    services = build_for_slack(config, publisher_factory(config, client), worker=True)
    announce(config, services, "queue worker")
    gc.freeze()  # what exists now lives as long as the process (see _serve_http)
    port = config.jobs.metrics_port
    if port is None:
        port = WORKER_METRICS_PORT
    worker = services.queue_worker
    signal.signal(signal.SIGTERM, _stopping)
    gc.freeze()  # the services live as long as the process (see _serve_http)
    worker.start()
    if port:
        metrics.serve(port)  # answering /metrics means the worker runs
    logging.getLogger("imagine.queue").info(
        "worker started: %d threads, metrics on port %s", config.jobs.worker_threads, port or "off"
    )
    try:
        while True:
            time.sleep(3600)
    except (_Stopping, KeyboardInterrupt):
        pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
    handed_back = worker.stop(config.jobs.stop_wait)
    services.close()
    logging.getLogger("imagine.queue").info(
        "worker stopped; %d unfinished jobs handed back to the queue", handed_back
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # provider pools' threads must not hold the process past the platform's kill
