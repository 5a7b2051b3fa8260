"""The queue's Redis parts, on the machine's Redis: the doorbell (bot/core/broker.py), with
which an idle consumer waits instead of polling and takes a job the moment it is enqueued, and
which the web process rings once its acknowledgements are sent; and a process's bounded pool
of connections (bot/wiring.py)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from dramatiq.common import dq_name

from bot.config import Config, SettingError
from bot.core.acknowledging import AcknowledgementsFirst
from bot.core.broker import FETCH_BATCH, BellBroker, DeferredBell
from bot.core.jobs import GenerateJob, job_to_payload
from bot.core.queue import (
    NAMESPACE,
    QUEUE,
    JobActors,
    QueueRunner,
    QueueWorker,
    RedisJobBoard,
    make_broker,
)
from bot.generation.types import ImageRequest
from bot.wiring import redis_client
from tests.services import redis_database


@pytest.fixture
def broker():
    import redis

    with redis_database() as url:
        client = redis.Redis.from_url(url)
        broker = make_broker(client, job_deadline=60)
        JobActors(broker)  # the actors the messages name
        yield broker
        client.close()


class Taker(threading.Thread):
    """A consumer's loop, as Dramatiq's consumer thread runs it: next() until a message."""

    def __init__(self, consumer) -> None:
        super().__init__(daemon=True)
        self.consumer = consumer
        self.taken = threading.Event()
        self.at = 0.0
        self.running = True

    def run(self) -> None:
        while self.running:
            if next(self.consumer) is not None:
                self.at = time.monotonic()
                self.taken.set()
                return


def counting_fetches(broker) -> list[float]:
    fetches: list[float] = []
    fetch = broker.do_fetch

    def counted(*args):
        fetches.append(time.monotonic())
        return fetch(*args)

    broker.do_fetch = counted
    return fetches


def test_an_idle_consumer_fetches_once_a_bell_wait_not_four_times_a_second(broker):
    broker.bell_wait = 1.0
    fetches = counting_fetches(broker)
    # Dramatiq's own consumer, with this timeout, polls up to four times a second
    taker = Taker(broker.consume(QUEUE, prefetch=4, timeout=250))
    taker.start()
    time.sleep(2.5)
    taker.running = False
    taker.join(broker.bell_wait + 1)  # a stop waits no longer than the bell
    assert not taker.is_alive()
    assert 2 <= len(fetches) <= 5, f"{len(fetches)} fetches in 2.5 idle seconds"


def test_an_idle_consumer_takes_a_job_the_moment_it_is_enqueued(broker):
    broker.bell_wait = 10.0  # far longer than the test: only the bell can wake it in time
    taker = Taker(broker.consume(QUEUE, prefetch=4, timeout=10_000))
    taker.start()
    time.sleep(1.5)  # long idle: Dramatiq's own consumer would be in a seconds-long sleep
    assert not taker.taken.is_set()
    sent = time.monotonic()
    broker.get_actor("imagine_run_job").send({"kind": "generate"})
    assert taker.taken.wait(2.0), "the enqueued job was not taken"
    assert taker.at - sent < 0.5


def test_the_bell_holds_one_token_however_often_it_is_rung(broker):
    for _ in range(5):
        broker.get_actor("imagine_run_job").send({"kind": "generate"})
    assert broker.client.llen(broker.bell(QUEUE)) == 1
    assert broker.wait_for_bell(QUEUE, 0.1) is True
    assert broker.wait_for_bell(QUEUE, 0.1) is False  # taken: the next consumer waits


def test_messages_handed_back_ring_the_bell(broker):
    actor = broker.get_actor("imagine_run_job")
    actor.send({"kind": "generate"})
    consumer = broker.consume(QUEUE, prefetch=4, timeout=250)
    assert broker.wait_for_bell(QUEUE, 0.1) is True  # the enqueue's token, taken
    message = next(consumer)
    assert message is not None
    consumer.requeue([message])  # as Dramatiq does with what a stopping worker prefetched
    assert broker.wait_for_bell(QUEUE, 0.1) is True


def generate_jobs(count: int) -> list[GenerateJob]:
    return [
        GenerateJob(
            key=f"k{i}",
            request_id=f"r{i}",
            team_id="T1",
            channel_id="C1",
            user_id=f"U{i}",
            providers=("dalle3",),
            request=ImageRequest(prompt=f"picture {i}"),
        )
        for i in range(count)
    ]


def counting_rings(broker) -> list[float]:
    rings: list[float] = []
    ring = broker.ring

    def counted(queue_name):
        rings.append(time.monotonic())
        return ring(queue_name)

    broker.ring = counted
    return rings


def test_the_web_process_rings_once_its_acknowledgements_are_sent():
    """Each job is stored before its acknowledgement; the workers are woken after the
    acknowledgements, once for the whole burst, not once per command."""
    with redis_database() as url:
        client = redis_client(Config.from_env({"REDIS_URL": url}), acknowledging=True)
        broker = make_broker(client, 60, ring_on_enqueue=False)
        runner = QueueRunner(RedisJobBoard(client, 5), JobActors(broker))
        runner.gate = AcknowledgementsFirst(hold=10.0)  # only the end of the answers releases
        rings = counting_rings(broker)
        bell = broker.bell(QUEUE)
        with runner.gate.acknowledging():  # twenty commands answered at once
            for job in generate_jobs(20):
                submitted = runner.submit(job)
                assert submitted.admission.value == "accepted"
                submitted.start()  # as the listener does, once it has acknowledged
            assert broker.do_qsize(QUEUE) == 20  # stored before the answers went
            time.sleep(0.2)
            assert not rings and client.llen(bell) == 0  # no worker woken yet
        deadline = time.monotonic() + 2.0
        while client.llen(bell) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.llen(bell) == 1
        assert 1 <= len(rings) <= 2, f"{len(rings)} rings for one burst"
        client.close()


def test_a_stopping_web_process_rings_for_the_jobs_its_gate_holds():
    """SIGTERM while a command is being answered: its job is stored, and the workers are
    woken for it before the process ends, not a bell wait later."""
    with redis_database() as url:
        client = redis_client(Config.from_env({"REDIS_URL": url}), acknowledging=True)
        broker = make_broker(client, 60, ring_on_enqueue=False)
        runner = QueueRunner(RedisJobBoard(client, 5), JobActors(broker))
        runner.gate = AcknowledgementsFirst(hold=10.0)
        with runner.gate.acknowledging():
            runner.submit(generate_jobs(1)[0]).start()
            assert client.llen(broker.bell(QUEUE)) == 0
            runner.drain()
            assert client.llen(broker.bell(QUEUE)) == 1
        client.close()


def ring_and_end(bell: DeferredBell) -> None:
    bell.request()
    bell.flush()  # as a stop does


def test_the_deferred_bell_rings_in_a_process_forked_after_it_was_made(broker):
    """gunicorn builds the app and then forks its workers: threads do not cross a fork, so
    the bell's thread must be started by the process that rings."""
    bell = DeferredBell(broker, QUEUE)
    child = multiprocessing.get_context("fork").Process(target=ring_and_end, args=(bell,))
    child.start()
    child.join(10)
    assert child.exitcode == 0
    assert broker.client.llen(broker.bell(QUEUE)) == 1


def test_a_burst_rung_once_is_shared_by_the_idle_workers():
    """One ring wakes one consumer; taking a batch at a time and passing the bell on, it
    leaves part of the burst to the other worker, which the bell woke in turn."""
    import redis

    with redis_database() as url:
        ran: dict[int, list[str]] = {0: [], 1: []}
        workers = []
        for number in ran:

            def run(job, taken=ran[number]) -> None:
                taken.append(job.key)
                time.sleep(0.5)  # a drawing: the job holds its thread

            broker = make_broker(redis.Redis.from_url(url), 60)
            actors = JobActors(broker)
            actors.attach(run, lambda job: None)
            workers.append(QueueWorker(broker, threads=128))  # room for the whole burst
        for worker in workers:
            worker.start()
        sender = make_broker(redis.Redis.from_url(url), 60, ring_on_enqueue=False)
        try:
            time.sleep(1.5)  # both consumers idle, waiting on the bell
            actors = JobActors(sender)
            for job in generate_jobs(10 * FETCH_BATCH):
                actors.run_job.send(job_to_payload(job))
            sender.ring(QUEUE)
            deadline = time.monotonic() + 5.0
            while len(ran[0]) + len(ran[1]) < 10 * FETCH_BATCH and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(ran[0]) + len(ran[1]) == 10 * FETCH_BATCH
            assert min(len(ran[0]), len(ran[1])) >= FETCH_BATCH, {n: len(r) for n, r in ran.items()}
        finally:
            for worker in workers:
                worker.stop(1.0)
                worker.broker.client.close()
            sender.client.close()


def test_a_burst_takes_turns_on_the_configured_connections():
    with redis_database() as url:
        named = url + "?client_name=burst-pool"  # its connections, among all Redis has
        config = Config.from_env({"REDIS_URL": named, "IMAGINE_REDIS_CONNECTIONS": "4"})
        client = redis_client(config)
        broker = make_broker(client, 60)
        runner = QueueRunner(RedisJobBoard(client, 5), JobActors(broker))
        jobs = generate_jobs(60)
        with ThreadPoolExecutor(30) as pool:
            admissions = list(pool.map(lambda job: runner.submit(job).admission.value, jobs))
        assert admissions == ["accepted"] * 60
        assert client.connection_pool.max_connections == 4
        opened = [c for c in client.client_list() if c["name"] == "burst-pool"]
        assert 1 <= len(opened) <= 4
        assert broker.do_qsize(QUEUE) == 60
        client.close()


def test_the_connections_setting_has_a_floor():
    with pytest.raises(SettingError, match="IMAGINE_REDIS_CONNECTIONS"):
        Config.from_env({"IMAGINE_REDIS_CONNECTIONS": "2"})
    assert Config.from_env({}).jobs.redis_connections == 10


def test_a_socket_timeout_shorter_than_the_bell_wait_is_a_quiet_bell():
    import redis

    with redis_database() as url:
        client = redis.Redis.from_url(url + "?socket_timeout=0.2")
        broker = make_broker(client, job_deadline=60)
        started = time.monotonic()
        assert broker.wait_for_bell(QUEUE, 1.0) is False
        assert time.monotonic() - started < 1.5
        client.close()


@pytest.fixture
def workers():
    """A Redis client, and a maker of workers' brokers on it whose heartbeats expire in 0.3 s
    (a worker that stops calling `heartbeat` is dead that soon)."""
    import redis

    with redis_database() as url:
        client = redis.Redis.from_url(url)

        def worker() -> BellBroker:
            broker = BellBroker(client=client, namespace=NAMESPACE, heartbeat_timeout=300)
            broker.declare_queue(QUEUE)
            JobActors(broker)
            return broker

        yield client, worker
        client.close()


def test_a_heartbeat_puts_a_dead_workers_jobs_back_every_time(workers):
    """Dramatiq requeues a dead worker's unacknowledged jobs on one command in ten, by chance;
    each heartbeat of a live worker looks for them."""
    client, worker = workers
    dead, alive = worker(), worker()
    for _ in range(3):
        alive.get_actor("imagine_run_job").send({"kind": "generate"})
    taken = dead.consume(QUEUE, prefetch=3, timeout=250)
    assert all(next(taken) is not None for _ in range(3))  # fetched, never acknowledged
    waiting = f"{NAMESPACE}:{QUEUE}"  # the list of message ids not yet taken
    assert client.llen(waiting) == 0
    time.sleep(0.5)  # the dead worker's heartbeat expires
    for _ in range(5):  # every heartbeat looks, not one in ten
        alive.heartbeat(QUEUE)
        assert client.llen(waiting) == 3
        taken_again = alive.consume(QUEUE, prefetch=3, timeout=250)
        assert all(next(taken_again) is not None for _ in range(3))
        time.sleep(0.5)  # now `alive` holds them unacknowledged, and dies in its turn
        dead, alive = alive, worker()


def test_a_heartbeat_also_puts_back_a_dead_workers_delayed_retries(workers):
    client, worker = workers
    dead, alive = worker(), worker()
    alive.get_actor("imagine_run_job").send_with_options(args=({},), delay=60_000)
    delayed = f"{NAMESPACE}:{dq_name(QUEUE)}"
    assert client.llen(delayed) == 1
    assert next(dead.consume(dq_name(QUEUE), prefetch=1, timeout=250)) is not None
    assert client.llen(delayed) == 0  # held by a worker that then dies
    time.sleep(0.5)
    alive.heartbeat(QUEUE)
    assert client.llen(delayed) == 1
