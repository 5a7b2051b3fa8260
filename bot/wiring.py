"""The one place the services are built from the config, for each kind of process.

- `serve`: the Slack app. Without REDIS_URL it also runs the jobs (threads); with it, it only
  acknowledges and enqueues.
- `worker`: runs queued jobs and posts to Slack; needs REDIS_URL.
- the command line: runs a job in the foreground with a console publisher.

Network clients are built once per process and shared by every thread.
"""

from __future__ import annotations

from typing import Any

from bot import metrics
from bot.config import Config, SettingError
from bot.core.choice import AUTO, COMPARE, ProviderChoice, TeamFavourite
from bot.core.governance import Governance
from bot.core.ports import Publisher
from bot.core.runner import DatabaseJobBoard, JobBoard, LocalJobBoard, ThreadRunner
from bot.core.services import Services
from bot.core.workflows import Workflows
from bot.generation.pacing import LocalPacer, NoPacer, Pacer, RedisPacer
from bot.generation.providers import PROVIDER_CLASSES, resolve_provider_name
from bot.generation.service import GenerationService
from bot.generation.stores.base import ImageStore
from bot.startup import open_vote_store
from bot.votes.db import TOLD, VoteStore
from bot.votes.leaderboard import Leaderboard

REDIS_CONNECTION_WAIT = 5.0  # seconds a worker's thread waits for a free connection
# The process that acknowledges gives Redis at most this long to connect, to answer a command,
# or to free a connection: a Redis that hangs (paused, or its network dropping packets) then
# costs a command about this long before it is answered with a sentence, inside Slack's 3 s.
# A healthy Redis answers in a millisecond. Workers keep redis-py's 5 s.
ACKNOWLEDGING_REDIS_WAIT = 1.0


def redis_client(config: Config, *, acknowledging: bool = False):
    """One Redis client per process, shared by the queue, the board and the pacer; None
    without REDIS_URL. `acknowledging`: the process that answers Slack, whose every wait on
    Redis is bounded by ACKNOWLEDGING_REDIS_WAIT (timeouts given in REDIS_URL take precedence).

    Its pool holds at most IMAGINE_REDIS_CONNECTIONS connections, and a thread waits for a
    free one: a command takes a millisecond, so a burst's dozens of threads taking turns on a
    few sockets cost less CPU than opening a socket each, and a hosted Redis limits the
    connections of all the app's processes together."""
    if not config.jobs.redis_url:
        return None
    import redis
    from redis.driver_info import DriverInfo

    waits: dict[str, float] = {"timeout": REDIS_CONNECTION_WAIT}
    if acknowledging:
        waits = {
            "timeout": ACKNOWLEDGING_REDIS_WAIT,
            "socket_timeout": ACKNOWLEDGING_REDIS_WAIT,
            "socket_connect_timeout": ACKNOWLEDGING_REDIS_WAIT,
        }
    try:
        pool = redis.BlockingConnectionPool.from_url(
            config.jobs.redis_url,
            max_connections=config.jobs.redis_connections,
            health_check_interval=30,
            # named here, the version is not looked up in the installed packages for each
            # new connection
            driver_info=DriverInfo(lib_version=redis.__version__),
            **waits,
        )
        return redis.Redis(connection_pool=pool)
    except ValueError as err:
        raise SettingError(f"REDIS_URL is not a Redis URL: {err}") from None


STALE_MARGIN = 60.0  # seconds past its deadline a job on the database board counts as dead
PACING_SHARE = 0.98  # of a quota we pace to: network jitter must not fit 11 calls in 10 s


def web_processes(config: Config) -> int:
    """gunicorn's worker processes in HTTP mode; Socket Mode runs one process."""
    return 1 if config.slack.app_token else config.http.processes


def build_service(
    config: Config, client: Any = None, *, store: ImageStore | None | str = "default"
) -> GenerationService:
    """The generation service, its calls paced to the providers' quotas: in Redis when there
    is a queue (every process shares the quota), else in this process (several web processes
    without Redis: each to its share)."""
    service = GenerationService.from_config(config, store=store)
    # without Redis each web process paces alone: a share of the quota each
    share = PACING_SHARE / (1 if client is not None else web_processes(config))
    quotas = {name: rpm * share for name, rpm in service.quotas().items()}
    pacer: Pacer
    if not quotas:
        pacer = NoPacer()
    elif client is not None:
        pacer = RedisPacer(quotas, client)
    else:
        pacer = LocalPacer(quotas)
    service.use_pacer(pacer)
    for name in quotas:
        metrics.watch(metrics.WAITING_CALLS, [name], lambda name=name: pacer.waiting(name))
    return service


def build_governance(config: Config, store, service: GenerationService) -> Governance:
    """Limits, the budget and usage, counted in the vote store's database."""
    return Governance(store, config.governance, config.admins, service.prices)


def build_for_slack(config: Config, publisher_factory, *, worker: bool = False) -> Services:
    """The Slack app's process (`worker=False`) or a queue worker (`worker=True`).

    `publisher_factory(service)` builds the Slack publisher (the Slack layer owns it)."""
    client = redis_client(config, acknowledging=not worker)
    if worker and client is None:
        raise SettingError("REDIS_URL is not set: a worker serves the queue on Redis")
    service = build_service(config, client)
    service.keep_bytes_if_store_fails = True  # Slack uploads what the bucket would not take
    store = open_vote_store(config)
    choice = build_choice(config, service, store)
    services: Services
    if client is None:
        board: JobBoard = LocalJobBoard(config.jobs.max_queued_per_user)
        if web_processes(config) > 1:
            # several web processes: the board they share is the database
            stale = config.jobs.deadline + STALE_MARGIN
            board = DatabaseJobBoard(store, config.jobs.max_queued_per_user, stale)
        publisher = publisher_factory(service)
        workflows = Workflows(
            service,
            store,
            publisher,
            config.voting,
            board=board,
            ledger=False,
            governance=build_governance(config, store, service),
            posts_at_once=config.jobs.posts_at_once,
        )
        runner = ThreadRunner(board, workflows.run, config.slack.workers, tell=publisher.tell)
        services = Services(config, service, store, choice, board, workflows, runner)
    else:
        from bot.core.queue import JobActors, QueueRunner, QueueWorker, RedisJobBoard, make_broker

        board = RedisJobBoard(client, config.jobs.max_queued_per_user)
        broker = make_broker(client, config.jobs.deadline, ring_on_enqueue=worker)
        actors = JobActors(broker)
        if worker:
            workflows = Workflows(
                service,
                store,
                publisher_factory(service),
                config.voting,
                board=board,
                governance=build_governance(config, store, service),
                posts_at_once=config.jobs.posts_at_once,
            )
            actors.attach(workflows.run, workflows.give_up)
            queue_worker = QueueWorker(broker, config.jobs.worker_threads)
            services = Services(
                config, service, store, choice, board, workflows, queue_worker=queue_worker
            )
        else:
            # a job whose hand-over failed may be stored anyway: its person was told no
            runner = QueueRunner(
                board, actors, lambda job: store.claim_delivery(job.key, job.channel_id, TOLD)
            )
            services = Services(config, service, store, choice, board, runner=runner)
    metrics.watch(metrics.QUEUE_DEPTH, ["redis" if client else "threads"], board.active)
    return services


def build_for_cli(
    config: Config, publisher: Publisher, service: GenerationService | None = None
) -> Services:
    """The command line: jobs run in the foreground, unpaced unless quotas are set."""
    service = service or build_service(config)
    votes = open_vote_store(config)
    board = LocalJobBoard(config.jobs.max_queued_per_user)
    workflows = Workflows(
        service,
        votes,
        publisher,
        config.voting,
        board=board,
        ledger=False,
        governance=build_governance(config, votes, service),
    )
    choice = build_choice(config, service, votes)
    return Services(config, service, votes, choice, board, workflows)


def build_choice(config: Config, service: GenerationService, store: VoteStore) -> ProviderChoice:
    """The one provider choice of a process: the settings, each person's default, the votes.
    A default that names nothing we run stops the start, in one sentence."""
    default = (config.default_provider or "").strip().lower()
    if default and default not in (COMPARE, AUTO) and resolve_provider_name(default) is None:
        names = ", ".join(p.name for p in PROVIDER_CLASSES)
        raise SettingError(
            f"IMAGINE_DEFAULT_PROVIDER must be {names}, compare or auto, not {default!r}"
        )
    favourite = TeamFavourite(
        Leaderboard(store), config.voting.leaderboard_min_votes, config.voting.favourite_refresh
    )
    return ProviderChoice(service, config.default_provider, store=store, favourite=favourite)
