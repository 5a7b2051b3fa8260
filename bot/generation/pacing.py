"""Fair pacing of provider calls: every HTTP call to an image provider waits here for its turn.

The image services refuse bursts: a per-minute quota is evaluated over short (10-second)
windows, so a burst of calls that fits the minute still gets 429s. We therefore space call
*starts* evenly, `60 / rpm` seconds apart, with no burst allowance. When the quota binds,
people are served in turn (round-robin by user) so that one person asking for many pictures
cannot starve everyone else.

`LocalPacer` does this within one process; `RedisPacer` shares the same state between
processes and hosts through Redis. Who a call is for comes from the `current_turn` context
variable, which the Slack layer sets per job; `submit_in_context` carries it into the
provider threads.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from bot import metrics
from bot.generation.types import ImagineError, ProviderUnavailableError, RateLimitError

log = logging.getLogger("imagine.pacing")

T = TypeVar("T")

ANONYMOUS = "anonymous"
DEFAULT_WAIT = 600.0  # seconds a call without a turn may wait
CANCEL_POLL = 2.5  # seconds between calls of Turn.cancelled while waiting (a Redis read)
KEY_TTL = 300.0  # seconds Redis keys outlive their last use
REDIS_SLOTS = 16  # concurrent Redis calls per RedisPacer
MAX_SLEEP = 60.0  # seconds: a waiter looks again at least this often


@dataclass
class Turn:
    """Who the calls made in this context are for."""

    user: str
    deadline: float  # time.time() seconds; waiting past it raises QuotaWaitExpired
    # (provider, ahead): when a call first has to wait, and again whenever `ahead` changes.
    on_wait: Callable[[str, int], None] | None = None
    # (provider): once, when a call that had to wait is granted.
    on_start: Callable[[str], None] | None = None
    # Polled while waiting; True -> JobCancelled.
    cancelled: Callable[[], bool] | None = None


current_turn: contextvars.ContextVar[Turn | None] = contextvars.ContextVar(
    "imagine_current_turn", default=None
)


class QuotaWaitExpired(RateLimitError):
    """A call waited for its provider's quota until the picture's deadline."""

    def __init__(self, provider: str) -> None:
        super().__init__(
            f"The {provider} quota stayed full until this picture's deadline; "
            "try again in a few minutes.",
            provider=provider,
        )


class JobCancelled(ImagineError):
    """The job was cancelled while one of its calls waited for the quota."""

    kind = "cancelled"

    def __init__(self, provider: str | None = None) -> None:
        super().__init__("This picture was cancelled.", provider=provider)


class PacingUnavailable(ProviderUnavailableError):
    """Redis, where the providers' quotas are shared, cannot be reached."""

    def __init__(self) -> None:
        super().__init__(
            "I could not reach the queue's Redis to wait for the provider's quota; "
            "try again in a minute."
        )


def submit_in_context(
    pool: Executor, fn: Callable[..., T], /, *args: Any, **kwargs: Any
) -> Future[T]:
    """`pool.submit` that runs `fn` in a copy of the caller's context.

    Executor threads do not inherit context variables, so without this `current_turn` would
    be None in provider threads and every call would be paced as "anonymous".
    """
    return pool.submit(contextvars.copy_context().run, fn, *args, **kwargs)


def _turn() -> Turn:
    turn = current_turn.get()
    if turn is None:
        return Turn(user=ANONYMOUS, deadline=time.time() + DEFAULT_WAIT)
    return turn


def _notify(callback: Callable[..., None] | None, *args: Any) -> None:
    """Run a progress callback; a failed status update must not fail the picture."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        log.exception("pacing callback %r failed", callback)


def _started(turn: Turn, provider: str, since: float) -> None:
    """A call that had to wait got its turn: count the wait, tell the job."""
    metrics.QUOTA_WAIT.labels(provider).observe(time.monotonic() - since)
    _notify(turn.on_start, provider)


def _ahead(lengths: list[int], j: int, k: int) -> int:
    """Waiting calls granted before call `k` of ring user `j`, round-robin from ring user 0."""
    ahead = k
    for i, n in enumerate(lengths):
        if i != j:
            ahead += min(n, k) + (1 if i < j and n > k else 0)
    return ahead


class Pacer(ABC):
    """Gate every provider call passes before it is sent; see the module docstring."""

    def __init__(self, rates: Mapping[str, float]) -> None:
        for provider, rpm in rates.items():
            if not rpm > 0:
                raise ValueError(f"requests per minute for {provider} must be > 0, not {rpm}")
        self.rates = dict(rates)
        self._intervals = {provider: 60.0 / rpm for provider, rpm in rates.items()}

    def paced(self, provider: str) -> bool:
        return provider in self._intervals

    @abstractmethod
    def wait_turn(self, provider: str, *, retry: bool = False) -> None:
        """Block until one call to `provider` may start.

        Unpaced providers return at once, without any I/O. The turn comes from
        `current_turn`; without one the call is "anonymous" with a 10-minute deadline.
        `retry=True` (a call retried after a 429) goes to the front of its own user's queue,
        never ahead of other users. Raises QuotaWaitExpired or JobCancelled.
        """

    def waiting(self, provider: str) -> int:
        """Calls waiting now, for a metrics gauge."""
        return 0

    def close(self) -> None:  # noqa: B027 (most pacers hold nothing)
        """Release what the pacer holds."""


class NoPacer(Pacer):
    """Paces nothing: for tests, the command line and providers without a known quota."""

    def __init__(self, rates: Mapping[str, float] | None = None) -> None:
        super().__init__({})

    def wait_turn(self, provider: str, *, retry: bool = False) -> None:
        return None


# ---------------------------------------------------------------------------------------
# One process
# ---------------------------------------------------------------------------------------


class _Waiter:
    __slots__ = ("user",)

    def __init__(self, user: str) -> None:
        self.user = user


class _Lane:
    """One provider's queue. Guarded by `cond`; times are time.monotonic()."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.cond = threading.Condition()
        self.next_free = -math.inf
        self.ring: deque[str] = deque()
        self.queues: dict[str, deque[_Waiter]] = {}
        self.count = 0

    def enqueue(self, user: str, front: bool) -> _Waiter:
        waiter = _Waiter(user)
        queue = self.queues.get(user)
        if queue is None:
            queue = self.queues[user] = deque()
            self.ring.append(user)
        if front:
            queue.appendleft(waiter)
        else:
            queue.append(waiter)
        self.count += 1
        return waiter

    def remove(self, waiter: _Waiter) -> None:
        queue = self.queues[waiter.user]
        queue.remove(waiter)
        self.count -= 1
        if not queue:
            del self.queues[waiter.user]
            self.ring.remove(waiter.user)

    def is_head(self, waiter: _Waiter) -> bool:
        return self.ring[0] == waiter.user and self.queues[waiter.user][0] is waiter

    def grant(self, waiter: _Waiter, now: float) -> None:
        """Grant the head: it leaves, and its user goes to the back of the ring."""
        self.ring.popleft()
        queue = self.queues[waiter.user]
        queue.popleft()
        self.count -= 1
        if queue:
            self.ring.append(waiter.user)
        else:
            del self.queues[waiter.user]
        self.next_free = max(now, self.next_free) + self.interval

    def ahead(self, waiter: _Waiter) -> int:
        lengths = [len(self.queues[user]) for user in self.ring]
        return _ahead(lengths, self.ring.index(waiter.user), self.queues[waiter.user].index(waiter))


class LocalPacer(Pacer):
    """Pacing within one process: one condition per provider, waiters sleep until woken."""

    def __init__(self, rates: Mapping[str, float]) -> None:
        super().__init__(rates)
        self._lanes = {provider: _Lane(interval) for provider, interval in self._intervals.items()}

    def waiting(self, provider: str) -> int:
        lane = self._lanes.get(provider)
        return lane.count if lane else 0

    def wait_turn(self, provider: str, *, retry: bool = False) -> None:
        lane = self._lanes.get(provider)
        if lane is None:
            return
        turn = _turn()
        with lane.cond:
            now = time.monotonic()
            if not lane.ring and now >= lane.next_free:
                lane.next_free = now + lane.interval
                return
            waiter = lane.enqueue(turn.user, retry)
            if lane.is_head(waiter) and now >= lane.next_free:  # a retry before a late head
                lane.grant(waiter, now)
                lane.cond.notify_all()
                return
            ahead = lane.ahead(waiter)
        granted, since = False, time.monotonic()
        try:
            _notify(turn.on_wait, provider, ahead)
            reported = ahead
            next_cancel = time.monotonic()
            while True:
                check_cancel = False
                with lane.cond:
                    while True:
                        now = time.monotonic()
                        head = lane.is_head(waiter)
                        if head and now >= lane.next_free:
                            lane.grant(waiter, now)
                            lane.cond.notify_all()
                            granted = True
                            break
                        remaining = turn.deadline - time.time()
                        if remaining <= 0:
                            raise QuotaWaitExpired(provider)
                        ahead = lane.ahead(waiter)
                        check_cancel = turn.cancelled is not None and now >= next_cancel
                        if ahead != reported or check_cancel:
                            break
                        timeout = min(remaining, MAX_SLEEP)  # the deadline may be math.inf
                        if head:
                            timeout = min(timeout, lane.next_free - now)
                        if turn.cancelled is not None:
                            timeout = min(timeout, next_cancel - now)
                        lane.cond.wait(timeout)
                if granted:
                    break
                if ahead != reported:
                    reported = ahead
                    _notify(turn.on_wait, provider, ahead)
                if check_cancel and turn.cancelled is not None:
                    next_cancel = time.monotonic() + CANCEL_POLL
                    if turn.cancelled():
                        raise JobCancelled(provider)
        finally:
            if not granted:
                with lane.cond:
                    lane.remove(waiter)
                    lane.cond.notify_all()
        _started(turn, provider, since)


# ---------------------------------------------------------------------------------------
# Many processes, through Redis
# ---------------------------------------------------------------------------------------
#
# Keys per provider P (the {P} hash tag keeps them in one cluster slot):
#   <prefix>:{P}:next       string: server time (microseconds) the next call may start
#   <prefix>:{P}:ring       list of users with waiting calls, in serving order
#   <prefix>:{P}:live       sorted set: ticket -> liveness expiry (server microseconds)
#   <prefix>:{P}:q:<user>   list of that user's waiting tickets, first served first
# A ticket is "<32 hex>:<user>", so a dead ticket names the queue it must leave.
# KEYS = next, ring, live. Times come from redis TIME so that host clocks do not matter.

_LUA_COMMON = """
local next_key, ring_key, live_key = KEYS[1], KEYS[2], KEYS[3]
local qprefix = ARGV[1]
local key_ttl = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function fmt(x) return string.format('%.0f', x) end

local function touch(key) redis.call('PEXPIRE', key, key_ttl) end

local function drop(ticket)
  local user = string.sub(ticket, 34)
  local q = qprefix .. user
  redis.call('LREM', q, 1, ticket)
  if redis.call('LLEN', q) == 0 then redis.call('LREM', ring_key, 0, user) end
  redis.call('ZREM', live_key, ticket)
end

local function purge()
  local dead = redis.call('ZRANGEBYSCORE', live_key, '-inf', fmt(now))
  for _, ticket in ipairs(dead) do drop(ticket) end
end

local function next_free() return tonumber(redis.call('GET', next_key) or '0') end

local function take(interval)
  redis.call('SET', next_key, fmt(math.max(now, next_free()) + interval), 'PX', key_ttl)
end

local function touch_all(user)
  touch(ring_key); touch(live_key); touch(qprefix .. user)
end

-- {granted, ahead, microseconds until next_free}
local function poll(ticket, user, interval)
  local users = redis.call('LRANGE', ring_key, 0, -1)
  local lengths, j = {}, nil
  for i, u in ipairs(users) do
    lengths[i] = redis.call('LLEN', qprefix .. u)
    if u == user then j = i end
  end
  local q = qprefix .. user
  local k = redis.call('LPOS', q, ticket)
  local nf = next_free()
  if j == 1 and k == 0 and now >= nf then
    redis.call('LPOP', ring_key)
    redis.call('LPOP', q)
    if redis.call('LLEN', q) > 0 then redis.call('RPUSH', ring_key, user) end
    redis.call('ZREM', live_key, ticket)
    take(interval)
    touch_all(user)
    return {1, 0, 0}
  end
  local ahead = k
  for i, n in ipairs(lengths) do
    if i ~= j then
      ahead = ahead + math.min(n, k)
      if i < j and n > k then ahead = ahead + 1 end
    end
  end
  touch_all(user)
  return {0, ahead, math.max(0, math.floor(nf - now))}
end

local function join_ring(user)
  if not redis.call('LPOS', ring_key, user) then redis.call('RPUSH', ring_key, user) end
end

local function enqueue(ticket, user, front, ttl)
  local q = qprefix .. user
  if front then redis.call('LPUSH', q, ticket) else redis.call('RPUSH', q, ticket) end
  join_ring(user)
  redis.call('ZADD', live_key, fmt(now + ttl), ticket)
end

-- Refresh a waiting ticket's liveness. If we were silent past its ttl and it was dropped
-- as dead, we are alive after all: rejoin at the front of our own queue.
local function refresh(ticket, user, ttl)
  redis.call('ZADD', live_key, fmt(now + ttl), ticket)
  local q = qprefix .. user
  if not redis.call('LPOS', q, ticket) then redis.call('LPUSH', q, ticket) end
  join_ring(user)
end
"""

# ARGV: qprefix, key_ttl_ms, ticket, user, front (0/1), interval_us, ticket_ttl_us
_LUA_ENTER = (
    _LUA_COMMON
    + """
local ticket, user = ARGV[3], ARGV[4]
local interval, ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
purge()
if redis.call('LLEN', ring_key) == 0 and now >= next_free() then
  take(interval)
  return {1, 0, 0}
end
enqueue(ticket, user, ARGV[5] == '1', ttl)
return poll(ticket, user, interval)
"""
)

# ARGV: qprefix, key_ttl_ms, ticket, user, interval_us, ticket_ttl_us
_LUA_POLL = (
    _LUA_COMMON
    + """
local ticket, user = ARGV[3], ARGV[4]
local interval, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
refresh(ticket, user, ttl)
purge()
return poll(ticket, user, interval)
"""
)

# ARGV: qprefix, key_ttl_ms, ticket
_LUA_LEAVE = (
    _LUA_COMMON
    + """
drop(ARGV[3])
return 1
"""
)

# ARGV: qprefix, key_ttl_ms
_LUA_WAITING = (
    _LUA_COMMON
    + """
local total = 0
for _, u in ipairs(redis.call('LRANGE', ring_key, 0, -1)) do
  total = total + redis.call('LLEN', qprefix .. u)
end
return total
"""
)


class RedisPacer(Pacer):
    """Pacing shared by every process that uses the same Redis and prefix.

    Each waiting call holds a ticket whose liveness it refreshes on every poll; a ticket not
    refreshed for `ticket_ttl` seconds (its process died) is dropped by whoever polls next,
    so a killed process stalls the queue for at most about `ticket_ttl`. Waiters poll: the
    head sleeps until the next call may start, the others at most `poll` seconds. `client`
    stays the caller's (the process shares one): close() leaves it open.
    """

    def __init__(
        self,
        rates: Mapping[str, float],
        client: redis.Redis,
        *,
        prefix: str = "imagine:pace",
        ticket_ttl: float = 10.0,
        poll: float = 0.25,
    ) -> None:
        super().__init__(rates)
        if ticket_ttl <= 0 or poll <= 0:
            raise ValueError("ticket_ttl and poll must be > 0")
        self.client = client
        self.prefix = prefix
        self.ticket_ttl = ticket_ttl
        self.poll = poll
        self._enter = client.register_script(_LUA_ENTER)
        self._poll = client.register_script(_LUA_POLL)
        self._leave = client.register_script(_LUA_LEAVE)
        self._waiting = client.register_script(_LUA_WAITING)
        # Redis runs scripts one at a time anyway; hundreds of waiting threads must not
        # exhaust the client's connection pool (redis-py's default holds 100).
        self._slots = threading.BoundedSemaphore(REDIS_SLOTS)
        self._lock = threading.Lock()
        self._local_waiting = dict.fromkeys(self._intervals, 0)

    def keys(self, provider: str) -> tuple[list[str], str]:
        """(KEYS for the scripts: next, ring, live; the prefix of the per-user queues)."""
        base = f"{self.prefix}:{{{provider}}}"
        return [f"{base}:next", f"{base}:ring", f"{base}:live"], f"{base}:q:"

    def _key_ttl_ms(self, provider: str) -> int:
        return int(max(KEY_TTL, 4 * self._intervals[provider] + 2 * self.ticket_ttl) * 1000)

    def waiting(self, provider: str) -> int:
        if provider not in self._intervals:
            return 0
        keys, qprefix = self.keys(provider)
        try:
            return int(self._run(self._waiting, keys, [qprefix, self._key_ttl_ms(provider)]))
        except PacingUnavailable:
            log.warning("could not count waiting %s calls in Redis", provider, exc_info=True)
            return self._local_waiting[provider]

    def wait_turn(self, provider: str, *, retry: bool = False) -> None:
        interval = self._intervals.get(provider)
        if interval is None:
            return
        turn = _turn()
        keys, qprefix = self.keys(provider)
        common = [qprefix, self._key_ttl_ms(provider)]
        ticket = f"{uuid.uuid4().hex}:{turn.user}"
        interval_us = round(interval * 1e6)
        ttl_us = round(self.ticket_ttl * 1e6)
        granted, ahead, wait_us = self._run(
            self._enter, keys, [*common, ticket, turn.user, 1 if retry else 0, interval_us, ttl_us]
        )
        if granted:
            return
        since = time.monotonic()
        with self._lock:
            self._local_waiting[provider] += 1
        try:
            _notify(turn.on_wait, provider, ahead)
            reported = ahead
            next_cancel = time.monotonic()
            while True:
                remaining = turn.deadline - time.time()
                if remaining <= 0:
                    raise QuotaWaitExpired(provider)
                if turn.cancelled is not None and time.monotonic() >= next_cancel:
                    next_cancel = time.monotonic() + CANCEL_POLL
                    if turn.cancelled():
                        raise JobCancelled(provider)
                time.sleep(self._sleep(ahead, wait_us / 1e6, interval, remaining, turn))
                granted, ahead, wait_us = self._run(
                    self._poll, keys, [*common, ticket, turn.user, interval_us, ttl_us]
                )
                if granted:
                    break
                if ahead != reported:
                    reported = ahead
                    _notify(turn.on_wait, provider, ahead)
        finally:
            with self._lock:
                self._local_waiting[provider] -= 1
            if not granted:
                try:
                    self._run(self._leave, keys, [*common, ticket])
                except PacingUnavailable:  # the ticket expires by itself after ticket_ttl
                    log.warning("could not remove a %s pacing ticket", provider, exc_info=True)
        _started(turn, provider, since)

    def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        with self._slots:
            try:
                return script(keys=keys, args=args)
            except redis.RedisError as err:  # fail closed, in a sentence the person can read
                raise PacingUnavailable() from err

    def _sleep(
        self, ahead: int, wait: float, interval: float, remaining: float, turn: Turn
    ) -> float:
        """Seconds until the next poll: when our state can next change, within bounds.

        Calls start at `next_free` (`wait` from now) and every `interval` after. The head
        sleeps until then: only its own grant changes its state. Others wake half an
        interval after the call before theirs is due to start, so that the next in line
        learns it is the head in time and the rate is used fully even when `poll` exceeds
        the interval. The next in line also polls every `poll` seconds; calls further back
        poll only about when they can move up (and every CANCEL_POLL while cancellable):
        sixty waiting calls polling four times a second would cost more CPU than the calls.
        """
        if ahead == 0:
            seconds = wait + 0.001
        elif ahead == 1:
            seconds = min(wait + 0.5 * interval, self.poll)
        else:
            seconds = wait + (ahead - 1.5) * interval
        seconds = min(seconds, self.ticket_ttl / 3, remaining, MAX_SLEEP)
        if turn.cancelled is not None:
            seconds = min(seconds, CANCEL_POLL)
        return max(seconds, 0.0)
