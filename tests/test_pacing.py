"""The pacing gate: spacing, round-robin fairness, deadlines, retries, and sharing via Redis.

Every behaviour is checked on both LocalPacer and RedisPacer. The Redis cases need a server:
set IMAGINE_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/15); each test uses its own key
prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import json
import math
import os
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.generation import pacing
from bot.generation.pacing import (
    JobCancelled,
    LocalPacer,
    NoPacer,
    Pacer,
    PacingUnavailable,
    QuotaWaitExpired,
    RedisPacer,
    Turn,
    current_turn,
    submit_in_context,
)
from bot.generation.types import RateLimitError

REDIS_URL = os.environ.get("IMAGINE_TEST_REDIS_URL")
NO_REDIS = "IMAGINE_TEST_REDIS_URL is not set: Redis tests did not run"
ROOT = Path(__file__).resolve().parents[1]

needs_redis = pytest.mark.skipif(not REDIS_URL, reason=NO_REDIS)


class Factory:
    """Builds pacers of one kind; for Redis, all share one fresh key prefix."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.prefix = f"imagine:test:{uuid.uuid4().hex}"
        self.client = redis.Redis.from_url(REDIS_URL) if kind == "redis" else None
        self.pacers: list[Pacer] = []

    def __call__(self, rates: dict[str, float], **redis_options: Any) -> Pacer:
        pacer: Pacer
        if self.client is None:
            pacer = LocalPacer(rates)
        else:
            redis_options.setdefault("poll", 0.05)
            client = redis.Redis.from_url(REDIS_URL)
            pacer = RedisPacer(rates, client, prefix=self.prefix, **redis_options)
        self.pacers.append(pacer)
        return pacer

    def cleanup(self) -> None:
        for pacer in self.pacers:
            pacer.close()
            if isinstance(pacer, RedisPacer):
                pacer.client.close()
        if self.client is not None:
            for key in self.client.scan_iter(match=f"{self.prefix}*"):
                self.client.delete(key)
            self.client.close()


@pytest.fixture(params=["local", pytest.param("redis", marks=needs_redis)])
def make(request: pytest.FixtureRequest) -> Iterator[Factory]:
    factory = Factory(request.param)
    yield factory
    factory.cleanup()


@pytest.fixture
def redis_make() -> Iterator[Factory]:
    if not REDIS_URL:
        pytest.skip(NO_REDIS)
    factory = Factory("redis")
    yield factory
    factory.cleanup()


@pytest.fixture(autouse=True)
def no_turn() -> Iterator[None]:
    """Tests set current_turn in the main thread; do not let one leak into the next test."""
    token = current_turn.set(None)
    yield
    current_turn.reset(token)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting for the test setup"
        time.sleep(0.002)


class Calls:
    """Runs wait_turn calls in threads and records the order and times they are granted."""

    def __init__(self, pacer: Pacer, provider: str = "p") -> None:
        self.pacer = pacer
        self.provider = provider
        self.lock = threading.Lock()
        self.granted: list[tuple[str, float]] = []  # (label, monotonic time)
        self.errors: dict[str, BaseException] = {}
        self.threads: list[threading.Thread] = []

    def start(self, label: str, turn: Turn, *, retry: bool = False, queued: bool = True) -> None:
        """Start one call; with `queued`, return once it is waiting in the queue."""
        before = self.pacer.waiting(self.provider)

        def run() -> None:
            current_turn.set(turn)
            try:
                self.pacer.wait_turn(self.provider, retry=retry)
            except BaseException as err:  # the test inspects it
                self.errors[label] = err
                return
            with self.lock:
                self.granted.append((label, time.monotonic()))

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()
        if queued:
            wait_until(lambda: self.pacer.waiting(self.provider) > before)

    def join(self, timeout: float = 10.0) -> None:
        for thread in self.threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a wait_turn call never returned"

    @property
    def order(self) -> list[str]:
        return [label for label, _ in self.granted]


def assert_paced(starts: list[float], interval: float) -> None:
    """Starts are `interval` apart, and no one-second window holds more than a second's quota.

    A thread records its start a little after the grant (on a busy machine, tens of ms), and
    one start recorded late makes the next gap look short by as much: each gap is held to 70 %
    of the interval, the run as a whole to 95 % (a late record moves only its own start), and
    the windows are 30 ms short of a second.
    """
    starts = sorted(starts)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 0.7 * interval, gaps
    assert (starts[-1] - starts[0]) / len(gaps) >= 0.95 * interval, gaps
    per_second = round(1 / interval)
    for a in starts:
        assert sum(1 for t in starts if a <= t < a + 1 - 0.3 * interval) <= per_second, starts


def turn(user: str, seconds: float = 10.0, **callbacks: Any) -> Turn:
    return Turn(user=user, deadline=time.time() + seconds, **callbacks)


def occupy(pacer: Pacer, provider: str = "p") -> float:
    """Take the idle provider's immediate grant so that the next calls have to queue."""
    current_turn.set(turn("warm-up"))
    pacer.wait_turn(provider)
    current_turn.set(None)
    return time.monotonic()


def test_spacing_holds_under_concurrency(make: Factory) -> None:
    pacer = make({"p": 600})  # 0.1 s between starts
    calls = Calls(pacer)
    for i in range(20):
        calls.start(f"c{i}", turn(f"user{i % 3}"), queued=False)
    calls.join()
    assert not calls.errors
    starts = [t for _, t in calls.granted]
    assert len(starts) == 20
    assert_paced(starts, 0.1)
    assert pacer.waiting("p") == 0


def test_idle_provider_grants_at_once(make: Factory) -> None:
    pacer = make({"p": 600})
    if make.client is not None:
        make.client.ping()
    seconds = []
    for _ in range(3):
        began = time.monotonic()
        pacer.wait_turn("p")
        seconds.append(time.monotonic() - began)
        time.sleep(0.11)  # idle again: the interval has passed
    # At once: well under the 0.1 s interval every time (a busy machine may delay one call),
    # and within 20 ms at least once.
    assert max(seconds) < 0.05 and min(seconds) < 0.02, seconds


def test_unpaced_provider_does_no_io() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once we leave the block: nothing listens
    client = redis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    pacer = RedisPacer({"p": 60}, client)
    assert pacer.paced("p") and not pacer.paced("other")
    for _ in range(100):
        pacer.wait_turn("other")
    assert pacer.waiting("other") == 0
    with pytest.raises(PacingUnavailable) as caught:
        pacer.wait_turn("p")  # the client really points nowhere: one sentence, fail closed
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    assert "Redis" in caught.value.message
    nothing = NoPacer()
    nothing.wait_turn("p")
    assert not nothing.paced("p") and nothing.waiting("p") == 0


def test_round_robin_serves_the_second_user_second(make: Factory) -> None:
    pacer = make({"p": 300})  # 0.2 s: time to queue everything before the first grant
    occupy(pacer)
    calls = Calls(pacer)
    for i in range(10):
        calls.start(f"A{i}", turn("A"))
    b_waits: list[int] = []
    calls.start("B", turn("B", on_wait=lambda _p, ahead: b_waits.append(ahead)))
    assert pacer.waiting("p") == 11
    assert calls.granted == [], "setup too slow: a call was granted before all were queued"
    calls.join()
    # A's head was queued first, so it goes first; then B, then the rest of A in order.
    assert calls.order == ["A0", "B"] + [f"A{i}" for i in range(1, 10)]
    assert b_waits == [1, 0]


def test_on_wait_counts_down_and_on_start_once(make: Factory) -> None:
    pacer = make({"p": 240})  # 0.25 s
    events: list[tuple[str, Any]] = []
    first = turn(
        "A",
        on_wait=lambda p, ahead: events.append(("wait", ahead)),
        on_start=lambda p: events.append(("start", p)),
    )
    current_turn.set(first)
    pacer.wait_turn("p")  # idle: granted at once, so no callbacks at all
    current_turn.set(None)
    assert events == []

    calls = Calls(pacer)
    for i in range(3):
        calls.start(f"A{i}", turn("A"))
    last = turn(
        "A",
        math.inf,  # no deadline at all (the workflows' default)
        on_wait=lambda p, ahead: events.append(("wait", ahead)),
        on_start=lambda p: events.append(("start", p)),
    )
    calls.start("last", last)
    calls.join()
    assert calls.order == ["A0", "A1", "A2", "last"]
    # Far back in line a call polls only about when it can move up, so it may skip a count;
    # what it reports counts down from its place to 0, then it starts once.
    waits = [ahead for kind, ahead in events if kind == "wait"]
    assert waits[0] == 3 and waits[-1] == 0 and waits == sorted(set(waits), reverse=True)
    assert events[len(waits) :] == [("start", "p")]


def test_ahead_counts_round_robin() -> None:
    """ahead = calls granted before mine: one per other user per round, in ring order."""
    # ring [A(3), B(1), C(2)]: A0 B C0 A1 C1 A2
    lengths = [3, 1, 2]
    assert [pacing._ahead(lengths, 0, k) for k in range(3)] == [0, 3, 5]
    assert pacing._ahead(lengths, 1, 0) == 1
    assert [pacing._ahead(lengths, 2, k) for k in range(2)] == [2, 4]


def test_deadline_leaves_the_queue(make: Factory) -> None:
    pacer = make({"p": 120})  # 0.5 s
    t0 = occupy(pacer)
    calls = Calls(pacer)
    calls.start("X", turn("x", seconds=0.2))  # the head, but its deadline comes first
    calls.start("Y", turn("y", seconds=3.0))
    calls.join()
    err = calls.errors.get("X")
    assert isinstance(err, QuotaWaitExpired) and isinstance(err, RateLimitError)
    assert err.provider == "p" and err.kind == "rate_limit"
    assert "p quota stayed full" in err.message
    assert calls.order == ["Y"]
    # Y was not held back by X: it started when the rate allowed, 0.5 s after the warm-up.
    assert 0.45 <= calls.granted[0][1] - t0 < 0.75
    assert pacer.waiting("p") == 0


def test_cancelled_leaves_the_queue(make: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pacing, "CANCEL_POLL", 0.05)
    pacer = make({"p": 6})  # 10 s: nothing else can end this wait within the test
    occupy(pacer)
    stop = threading.Event()
    calls = Calls(pacer)
    calls.start("Z", turn("z", cancelled=stop.is_set))
    time.sleep(0.1)
    assert calls.errors == {} and pacer.waiting("p") == 1
    stop.set()
    began = time.monotonic()
    calls.join()
    assert time.monotonic() - began < 0.5
    err = calls.errors.get("Z")
    assert isinstance(err, JobCancelled) and err.kind == "cancelled" and err.provider == "p"
    assert pacer.waiting("p") == 0


def test_retry_goes_to_the_front_of_its_users_queue(make: Factory) -> None:
    pacer = make({"p": 300})  # 0.2 s
    occupy(pacer)
    calls = Calls(pacer)
    calls.start("B0", turn("B"))
    calls.start("A0", turn("A"))
    calls.start("A1", turn("A"))
    r_waits: list[int] = []
    calls.start("A-retry", turn("A", on_wait=lambda _p, a: r_waits.append(a)), retry=True)
    c_waits: list[int] = []
    calls.start("C-retry", turn("C", on_wait=lambda _p, a: c_waits.append(a)), retry=True)
    assert calls.granted == [], "setup too slow: a call was granted before all were queued"
    calls.join()
    # Ahead of A's own calls, but not of B, who was first in the ring; a retry of a user
    # with nothing waiting joins the ring at the back.
    assert calls.order == ["B0", "A-retry", "C-retry", "A0", "A1"]
    assert r_waits[0] == 1 and c_waits[0] == 2


def test_redis_keys_expire(redis_make: Factory) -> None:
    """Nothing lingers forever: every key the pacer writes carries a TTL."""
    pacer = redis_make({"p": 600})
    occupy(pacer)
    calls = Calls(pacer)
    calls.start("A0", turn("A"))
    calls.start("B0", turn("B"))
    keys = set(redis_make.client.scan_iter(match=f"{redis_make.prefix}*"))
    assert len(keys) >= 5  # next, ring, live and a queue per user
    assert all(redis_make.client.pttl(key) > 0 for key in keys)
    calls.join()
    keys = set(redis_make.client.scan_iter(match=f"{redis_make.prefix}*"))
    assert keys and all(redis_make.client.pttl(key) > 0 for key in keys)


def test_submit_in_context_carries_the_turn() -> None:
    mine = turn("someone")
    token = current_turn.set(mine)
    try:
        with ThreadPoolExecutor(2) as pool:
            assert submit_in_context(pool, current_turn.get).result() is mine
            assert pool.submit(current_turn.get).result() is None  # why it exists
            assert submit_in_context(pool, lambda a, *, b: (a, b), 1, b=2).result() == (1, 2)
    finally:
        current_turn.reset(token)


def test_submit_in_context_paces_for_the_callers_user() -> None:
    pacer = LocalPacer({"p": 300})
    occupy(pacer)
    waits: list[tuple[str, str, int]] = []
    current_turn.set(turn("me", on_wait=lambda p, a: waits.append(("me", p, a))))
    with ThreadPoolExecutor(1) as pool:
        submit_in_context(pool, pacer.wait_turn, "p").result(timeout=5)
    current_turn.set(None)
    assert waits == [("me", "p", 0)]


# ---------------------------------------------------------------------------------------
# Separate processes, through Redis
# ---------------------------------------------------------------------------------------

CHILD_CALLS = textwrap.dedent(
    """
    import json, sys, threading, time
    import redis
    from bot.generation.pacing import RedisPacer

    url, prefix, go, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    pacer = RedisPacer({"p": 600}, redis.Redis.from_url(url), prefix=prefix, poll=0.05)
    pacer.client.ping()
    late = time.time() > go
    time.sleep(max(0.0, go - time.time()))
    starts = []
    def call():
        pacer.wait_turn("p")
        starts.append(time.time())
    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"late": late, "starts": starts}))
    """
)

CHILD_DIES_WAITING = textwrap.dedent(
    """
    import sys, time
    import redis
    from bot.generation.pacing import RedisPacer, Turn, current_turn

    url, prefix = sys.argv[1], sys.argv[2]
    pacer = RedisPacer({"p": 1}, redis.Redis.from_url(url), prefix=prefix, ticket_ttl=1.0)
    current_turn.set(
        Turn("doomed", time.time() + 60, on_wait=lambda p, a: print("waiting", a, flush=True))
    )
    pacer.wait_turn("p")
    print("granted", flush=True)
    """
)


def child(script: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )


def test_processes_share_one_rate(redis_make: Factory) -> None:
    go = time.time() + 3.0  # both children started (imports done) by then, even on a busy machine
    children = [child(CHILD_CALLS, REDIS_URL, redis_make.prefix, go, 6) for _ in range(2)]
    results = []
    try:
        for proc in children:
            out, _ = proc.communicate(timeout=15)
            assert proc.returncode == 0
            results.append(json.loads(out))
    finally:
        for proc in children:
            proc.kill()  # no-op for those that ended
            proc.wait()
    assert not any(r["late"] for r in results), "a child started after the common start time"
    first, second = (sorted(r["starts"]) for r in results)
    assert len(first) == len(second) == 6
    assert first[0] < second[-1] and second[0] < first[-1], "the two processes did not overlap"
    assert_paced(first + second, 0.1)


def test_killed_waiter_does_not_block_the_queue(redis_make: Factory) -> None:
    pacer = redis_make({"p": 1}, ticket_ttl=1.0)  # 60 s between starts
    occupy(pacer)
    proc = child(CHILD_DIES_WAITING, REDIS_URL, redis_make.prefix)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "the child never started waiting"
        assert proc.stdout.readline().split() == ["waiting", "0"]  # the head of the queue
    finally:
        proc.kill()  # SIGKILL: no finally clause runs in the child
        proc.wait()
    killed = time.monotonic()
    # Let the rate allow the next call at once: only the dead ticket stands in the way.
    keys, _ = pacer.keys("p")
    redis_make.client.delete(keys[0])
    waits: list[int] = []
    current_turn.set(turn("survivor", seconds=5, on_wait=lambda _p, a: waits.append(a)))
    pacer.wait_turn("p")
    current_turn.set(None)
    assert waits[0] == 1, "the dead child's ticket was not ahead of us"
    assert time.monotonic() - killed < 1.0 + 0.5  # about ticket_ttl
    assert pacer.waiting("p") == 0
