"""The queue on Redis (with REDIS_URL): the web process enqueues, `python -m bot worker` draws.

Dramatiq carries the jobs: thread workers (a job mostly waits 5-60 s on a provider, so one
process runs many at once), late acknowledgement (a message stays with its worker until the
job is done, and a dead worker's messages go back on the queue), retries with backoff. Its
broker rings a doorbell when it enqueues, so idle workers wait on Redis rather than poll it
(bot/core/broker.py). Two things are added here:
- a heartbeat thread: Dramatiq's Redis consumer only reports that its worker is alive when it
  fetches, and a worker whose threads are all busy on long jobs stops fetching; without the
  heartbeat its jobs would be handed to another worker while it still runs them;
- a stop that fits Heroku's 30 seconds: jobs that cannot finish in time go back on the queue
  at once rather than waiting for the heartbeat to expire.

The `RedisJobBoard` keeps, next to the queue, which jobs each person has on the way (the cap,
deduplication, cancellation), in Lua scripts so that every process sees one consistent board.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import AgeLimit, Middleware, Retries, ShutdownNotifications, TimeLimit

from bot.core.broker import BellBroker, DeferredBell
from bot.core.jobs import Job, job_from_payload, job_to_payload
from bot.core.runner import DEDUP_SECONDS, Admission, JobBoard, Runner, counts_toward_cap
from bot.votes.group_commit import Batches

log = logging.getLogger("imagine.queue")

QUEUE = "imagine"
RUN_ACTOR = "imagine_run_job"
FAILED_ACTOR = "imagine_job_failed"
NAMESPACE = "imagine:queue"
HEARTBEAT_TIMEOUT = 15.0  # seconds without a heartbeat after which a worker counts as dead
HEARTBEAT_EVERY = 3.0
MAINTENANCE_CHANCE = 100_000  # of 1,000,000 broker commands: requeue dead workers' jobs soon
POLL_MS = 250  # a consumer holding all it may: its longest pause before it looks again
IDLE_THREAD_WAKEUP = 5.0  # seconds
GRACE = 120.0  # a job still listed this long after its deadline died with its worker
FINISH_LINGER = 0.05  # seconds a finished job's entry waits to leave the board with others
FINISH_FLUSH_WAIT = 5.0


def make_broker(
    client: redis.Redis, job_deadline: float, *, ring_on_enqueue: bool = True
) -> BellBroker:
    """`ring_on_enqueue` False: the web process, which rings after its acknowledgements."""
    broker = BellBroker(
        ring_on_enqueue=ring_on_enqueue,
        client=client,
        namespace=NAMESPACE,
        heartbeat_timeout=int(HEARTBEAT_TIMEOUT * 1000),
        maintenance_chance=MAINTENANCE_CHANCE,
        middleware=[
            AgeLimit(),
            # our own deadline ends a job long before this; the limit only catches a hang
            TimeLimit(time_limit=int((job_deadline + 300) * 1000)),
            ShutdownNotifications(),
            Retries(max_retries=2, min_backoff=1000, max_backoff=30_000),
        ],
    )
    broker.declare_queue(QUEUE)
    return broker


class JobActors:
    """The two actors: run a job; tell the person when every retry of a job crashed.

    The web process only sends; a worker process calls `attach` with what runs the jobs.
    """

    def __init__(self, broker: BellBroker) -> None:
        self.broker = broker
        self._run: Callable[[Job], object] | None = None
        self._failed: Callable[[Job], None] | None = None
        self.run_job = dramatiq.actor(
            self._run_payload,
            broker=broker,
            actor_name=RUN_ACTOR,
            queue_name=QUEUE,
            on_retry_exhausted=FAILED_ACTOR,
        )
        self.job_failed = dramatiq.actor(
            self._failed_payload, broker=broker, actor_name=FAILED_ACTOR, queue_name=QUEUE
        )

    def attach(self, run: Callable[[Job], object], failed: Callable[[Job], None]) -> None:
        self._run, self._failed = run, failed

    def _run_payload(self, payload: dict[str, Any]) -> None:
        assert self._run is not None, "only worker processes run jobs"
        self._run(job_from_payload(payload))

    def _failed_payload(self, message: dict[str, Any], retries: dict[str, Any]) -> None:
        assert self._failed is not None, "only worker processes run jobs"
        self._failed(job_from_payload(message["args"][0]))


_ADMIT = """
-- KEYS: seen, user's jobs, all jobs; ARGV: key, now, expires_at, dedup_seconds, cap, counts
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[4]) then return 'duplicate' end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[2])
if ARGV[6] == '1' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
    redis.call('DEL', KEYS[1])
    return 'too_many'
  end
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  redis.call('EXPIREAT', KEYS[2], math.ceil(tonumber(ARGV[3])))
end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 'accepted'
"""

_CANCEL = """
-- KEYS: user's jobs, cancelled flag; ARGV: key, ttl
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
return 1
"""


class RedisJobBoard(JobBoard):
    """The board shared by the web processes and the workers."""

    def __init__(self, client: redis.Redis, max_per_user: int, prefix: str = "imagine:jobs"):
        super().__init__(max_per_user)
        self.client = client
        self.prefix = prefix
        self._admit = client.register_script(_ADMIT)
        self._cancel = client.register_script(_CANCEL)
        # a burst's finished jobs leave the board together: a round trip each, in the
        # middle of the burst's posts, cost more CPU than the posts' own Redis work
        self._finished: Batches[tuple[str, str]] = Batches(
            self._take_off, what="finished jobs", linger=FINISH_LINGER, log=log
        )

    def _user(self, user_id: str) -> str:
        return f"{self.prefix}:user:{user_id}"

    def _cancelled_key(self, key: str) -> str:
        return f"{self.prefix}:cancelled:{key}"

    def admit(self, job: Job) -> Admission:
        expires = (job.deadline or time.time() + 3600) + GRACE
        answer = self._admit(
            keys=[f"{self.prefix}:seen:{job.key}", self._user(job.user_id), f"{self.prefix}:all"],
            args=[
                job.key,
                time.time(),
                expires,
                int(DEDUP_SECONDS),
                self.max_per_user,
                int(counts_toward_cap(job)),
            ],
        )
        return Admission(answer.decode() if isinstance(answer, bytes) else answer)

    def cancel(self, key: str, user_id: str) -> bool:
        ttl = int(DEDUP_SECONDS) * 2
        return bool(
            self._cancel(keys=[self._user(user_id), self._cancelled_key(key)], args=[key, ttl])
        )

    def cancelled(self, key: str) -> bool:
        return bool(self.client.exists(self._cancelled_key(key)))

    def once(self, key: str, seconds: float) -> bool:
        ttl_ms = max(1, int(seconds * 1000))
        return bool(self.client.set(f"{self.prefix}:once:{key}", "1", nx=True, px=ttl_ms))

    def finish(self, job: Job) -> None:
        self._take_off([(job.user_id, job.key)])

    def finish_soon(self, job: Job) -> None:
        self._finished.add((job.user_id, job.key))

    def flush(self) -> None:
        if not self._finished.flush(FINISH_FLUSH_WAIT):
            log.warning("finished jobs not taken off the board in time; they expire by themselves")

    def _take_off(self, jobs: list[tuple[str, str]]) -> None:
        """Jobs' entries off the board, in one round trip however many."""
        mine: dict[str, list[str]] = {}
        for user_id, key in jobs:
            mine.setdefault(user_id, []).append(key)
        pipe = self.client.pipeline(transaction=False)
        for user_id, keys in mine.items():
            pipe.zrem(self._user(user_id), *keys)
        pipe.zrem(f"{self.prefix}:all", *(key for _, key in jobs))
        pipe.execute()

    def active(self) -> int:
        self._finished.flush(FINISH_FLUSH_WAIT)  # the jobs that ended here are not counted
        key = f"{self.prefix}:all"
        self.client.zremrangebyscore(key, "-inf", time.time())
        return int(self.client.zcard(key))


class QueueRunner(Runner):
    """The web side: admit on the board, enqueue, let the acknowledgement go, and then wake
    the workers (the broker does not ring on enqueue here: `DeferredBell`)."""

    name = "redis"

    def __init__(
        self,
        board: RedisJobBoard,
        actors: JobActors,
        disown: Callable[[Job], object] | None = None,
    ) -> None:
        super().__init__(board, disown)
        self.actors = actors
        self.bell = DeferredBell(actors.broker, QUEUE)

    def _dispatch(self, job: Job) -> Callable[[], object]:
        self.actors.run_job.send(job_to_payload(job))  # stored in Redis before the ack
        return lambda: self.gate.after(self.bell.request)

    def drain(self, deadline: float | None = None) -> None:
        """The accepted jobs are in Redis already: ring for the last of them before the end."""
        self.gate.close()
        self.bell.flush()


class InFlight(Middleware):
    """Which messages this worker is processing right now (to hand them back at a stop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: dict[str, Any] = {}

    def before_process_message(self, broker, message) -> None:
        with self._lock:
            self.messages[message.message_id] = message

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        with self._lock:
            self.messages.pop(message.message_id, None)

    after_skip_message = after_process_message

    def take(self) -> list[Any]:
        with self._lock:
            taken, self.messages = list(self.messages.values()), {}
            return taken


class QueueWorker:
    """One `python -m bot worker` process: Dramatiq's worker, our heartbeat, a timely stop."""

    def __init__(self, broker: BellBroker, threads: int) -> None:
        self.broker = broker
        self.in_flight = InFlight()
        broker.add_middleware(self.in_flight)
        self.worker = dramatiq.Worker(
            broker, queues={QUEUE}, worker_threads=threads, worker_timeout=POLL_MS
        )
        # Prefetch no more than we can run: a job waits seconds to minutes, and messages held
        # in one worker's memory are work another worker could be doing.
        self.worker.queue_prefetch = threads
        self._stopping = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.worker.start()
        # `worker_timeout` (250 ms) is both how long a consumer holding all it may pauses
        # before it looks again (an idle one waits on the bell instead: bot/core/broker.py)
        # and how often an idle job thread wakes up to look at its local queue. With a
        # hundred threads, four wake-ups a second each is real CPU for nothing; every few
        # seconds is plenty (it only delays their exit at a stop, which hands back what is
        # still running anyway).
        for thread in self.worker.workers:
            thread.timeout = IDLE_THREAD_WAKEUP
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stopping.wait(HEARTBEAT_EVERY):
            try:
                self.broker.heartbeat(QUEUE)
            except redis.RedisError as err:
                log.warning("heartbeat: Redis unreachable (%s)", type(err).__name__)

    def stop(self, wait: float) -> int:
        """Finish what can finish within `wait` seconds, hand the rest back; returns how many
        jobs were handed back."""
        done = threading.Event()

        def stop_worker() -> None:
            self.worker.stop(timeout=int(wait * 1000))
            done.set()

        threading.Thread(target=stop_worker, name="worker-stop", daemon=True).start()
        done.wait(wait + 2)
        unfinished = self.in_flight.take()
        if unfinished:
            ids = [m.options["redis_message_id"] for m in unfinished]
            try:
                self.broker.do_requeue(QUEUE, *ids)
                self.broker.ring(QUEUE)  # the other workers take them now
            except redis.RedisError:
                log.exception("could not hand %d jobs back; the heartbeat expiry will", len(ids))
        self._stopping.set()
        return len(unfinished)
