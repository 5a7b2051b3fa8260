"""Dramatiq's Redis broker, with a doorbell: idle consumers wait on Redis instead of polling it.

Dramatiq's Redis consumer finds an empty queue, sleeps, and asks again (up to four times a
second): an idle worker spends CPU and Redis commands on nothing, and a job enqueued after a
quiet spell waits out the rest of that sleep. Here a ring leaves one token on the queue's bell
(a Redis list cut to one item), and a consumer that found its queue empty blocks on the bell
(BLPOP) for up to `BELL_WAIT`: it fetches at once when the bell rings, and asks only once a
second while nothing comes. A worker's enqueue rings at once; the web process rings once its
acknowledgements are sent, once for a burst (`DeferredBell`). A ring follows the storing of
the messages it is for, and a consumer fetches after taking one, so no job waits for the
bell's timeout; a consumer takes a batch at a time and passes the bell on, so that a burst
rung once is shared by the idle workers. Messages put back without a token (a dead worker's
jobs, which every heartbeat of a live worker looks for: see `heartbeat`) are found by that
once-a-second fetch. Blocking there delays nothing else: in Dramatiq 2.2 (the least this app
takes) the job threads acknowledge their own messages, and the consumer thread's other duty,
the delayed messages, waits a second at most (their backoff is counted in seconds).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import dq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

log = logging.getLogger("imagine.queue")

BELL_WAIT = 1.0  # seconds an idle consumer waits on the bell before it fetches anyway
FETCH_BATCH = 8  # messages a consumer takes at once; a full batch passes the bell on


class BellBroker(RedisBroker):
    """`ring_on_enqueue` False: the sender rings itself, later (`DeferredBell`)."""

    def __init__(
        self, *, bell_wait: float = BELL_WAIT, ring_on_enqueue: bool = True, **options
    ) -> None:
        super().__init__(**options)
        self.bell_wait = bell_wait
        self.ring_on_enqueue = ring_on_enqueue

    @property
    def consumer_class(self):
        return _BellConsumer

    def bell(self, queue_name: str) -> str:
        return f"{self.namespace}:{queue_name}.bell"

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        enqueued = super().enqueue(message, delay=delay)
        if self.ring_on_enqueue:
            self.ring(enqueued.queue_name)
        return enqueued

    def ring(self, queue_name: str) -> None:
        """One token on the queue's bell, however many are rung before a consumer looks.

        Best effort: a bell that cannot be rung (Redis gone after the message was stored, or
        before a requeue that failed anyway) delays a job by one `bell_wait` at most."""
        key = self.bell(queue_name)
        pipe = self.client.pipeline(transaction=False)
        pipe.lpush(key, 1)
        pipe.ltrim(key, 0, 0)
        try:
            pipe.execute()
        except redis.RedisError as err:
            log.warning("could not ring the queue's bell (%s)", type(err).__name__)

    def heartbeat(self, queue_name: str) -> None:
        """Record this worker alive and, every time, look for dead workers, whose jobs then
        go back on the queue within one heartbeat of their expiry. Dramatiq looks on one
        command in ten, by chance; with idle consumers waiting on the bell, a quiet queue
        sends few commands, and a dead worker's jobs waited tens of seconds for that chance.
        Dramatiq's maintenance works on the queue it is run with: the delay queue (retries
        waiting their backoff) is looked at too."""
        for name in (queue_name, dq_name(queue_name)):
            self.do_qsize(name)

    def _should_do_maintenance(self, command: str) -> int:
        if command == "qsize":  # only the heartbeat asks for a queue's size here
            return 1
        return super()._should_do_maintenance(command)

    def wait_for_bell(self, queue_name: str, seconds: float) -> bool:
        """Block until the queue's bell is rung (True) or `seconds` pass (False; also when a
        socket timeout set in REDIS_URL is shorter than the wait)."""
        try:
            return self.client.blpop([self.bell(queue_name)], timeout=seconds) is not None
        except redis.TimeoutError:
            return False


class DeferredBell:
    """Rings a queue's bell on a thread of its own, once for any number of requests made
    before it rang. The web process asks for a ring after each acknowledgement, through the
    acknowledgement gate (bot/core/acknowledging.py): the messages are stored before Slack is
    answered, and a burst of commands wakes the workers once its acknowledgements are sent,
    so that the jobs do not compete with them for the machine, and the web process makes two
    round trips to Redis per command (the person's cap, the job), not three. The thread of
    its own keeps a slow Redis off the thread that asks (the gate releases on the server's
    event loop); it starts on first use, so in the process that uses it (gunicorn forks after
    building the app).

    A process that ends before its ring costs its last jobs one `bell_wait` at most."""

    def __init__(self, broker: BellBroker, queue_name: str) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self._lock = threading.Lock()
        self._due = False
        self._ringer = ThreadPoolExecutor(1, thread_name_prefix="bell")

    def request(self) -> None:
        with self._lock:
            if self._due:
                return  # a ring is on its way, after this request's message was stored
            self._due = True
        self._ringer.submit(self._ring)

    def _ring(self) -> None:
        with self._lock:
            self._due = False  # a request from here on rings again
        self.broker.ring(self.queue_name)

    def flush(self, timeout: float = 2.0) -> None:
        """Wait for the ring asked for (at a stop: the process may end right after)."""
        try:
            self._ringer.submit(lambda: None).result(timeout)
        except Exception:  # late, or at the interpreter's exit: a worker's fetch finds them
            log.warning("the queue's bell may not have rung before the stop")


class _BellConsumer(_RedisConsumer):
    """Dramatiq's consumer, except that an empty fetch waits on the bell, not in a sleep, and
    that it takes at most FETCH_BATCH messages at a time, ringing the bell again when it got
    that many: one ring wakes one consumer, and a burst rung once (`DeferredBell`) would
    otherwise all go to it, its jobs taking turns on one interpreter while the other workers
    slept. Passed on, the bell wakes them in turn, and the burst is shared."""

    broker: BellBroker

    def __next__(self):
        if self.message_cache or self.outstanding_message_count >= self.prefetch:
            # a message at hand, or as many as it may hold: Dramatiq's own path (at capacity
            # it sleeps briefly, and fetches once a job of this worker is done)
            return super().__next__()
        try:
            batch = min(FETCH_BATCH, self.prefetch - self.outstanding_message_count)
            fetched = self.broker.do_fetch(self.queue_name, batch)
            if not fetched:
                self.broker.wait_for_bell(self.queue_name, self.broker.bell_wait)
                return None  # the worker's loop runs (delayed messages, a stop), then fetches
            if len(fetched) == batch:
                self.broker.ring(self.queue_name)  # there may be more: wake another consumer
        except redis.ConnectionError as err:
            raise ConnectionClosed(err) from None
        self.message_cache = fetched
        return super().__next__()

    def requeue(self, messages) -> None:
        messages = list(messages)  # Dramatiq may pass a generator
        super().requeue(messages)
        if messages:
            self.broker.ring(self.queue_name)
