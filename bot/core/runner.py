"""Runners take accepted jobs to the workflows: threads in this process by default, or a
Redis queue served by `python -m bot worker` processes (`bot.core.queue`).

Both keep a `JobBoard`: which jobs are on the way and for whom, so that the same command sent
twice is drawn once, one person cannot queue more than a few pictures, and a waiting job can be
cancelled.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import StrEnum

from bot.core.acknowledging import AcknowledgementsFirst
from bot.core.jobs import Job, LeaderboardJob
from bot.core.withdrawals import Withdrawals
from bot.votes.db import VoteStore

log = logging.getLogger("imagine.jobs")

DEDUP_SECONDS = 600.0  # a command seen again within this window is a duplicate
CLICK_SECONDS = 10.0  # a button clicked again within this (a redelivery, a double click): once


class Admission(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # this job (same key) was accepted already
    TOO_MANY = "too_many"  # the person has the maximum number of pictures on the way
    UNAVAILABLE = "unavailable"  # the queue cannot be reached


def counts_toward_cap(job: Job) -> bool:
    """Pictures count toward a person's cap; a leaderboard is quick and draws nothing."""
    return not isinstance(job, LeaderboardJob)


class JobBoard(ABC):
    """Jobs on the way: deduplication, the per-person cap and cancellation."""

    def __init__(self, max_per_user: int) -> None:
        self.max_per_user = max_per_user

    @abstractmethod
    def admit(self, job: Job) -> Admission:
        """Atomically: refuse a duplicate key or a person over the cap, else take the job."""

    @abstractmethod
    def cancel(self, key: str, user_id: str) -> bool:
        """Cancel `user_id`'s unfinished job; False when it is not theirs or already done."""

    @abstractmethod
    def cancelled(self, key: str) -> bool: ...

    @abstractmethod
    def once(self, key: str, seconds: float) -> bool:
        """True the first time `key` is offered within `seconds`, False for a repeat: a button
        click delivered twice, or clicked twice, acts once."""

    @abstractmethod
    def finish(self, job: Job) -> None:
        """The job is over (any outcome): it no longer counts toward its person's cap."""

    def finish_soon(self, job: Job) -> None:
        """`finish`, where nobody waits for it (a job that just ended): a board on another
        server takes a burst's entries off together, moments later (`flush` at a stop)."""
        self.finish(job)

    def flush(self) -> None:  # noqa: B027 (nothing held back by default)
        """At a stop: take off the entries `finish_soon` still holds."""

    @abstractmethod
    def active(self) -> int:
        """Jobs admitted and not finished (the queue depth, waiting and running)."""


class LocalJobBoard(JobBoard):
    """The board of one process (the embedded runner)."""

    def __init__(self, max_per_user: int, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(max_per_user)
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, float] = OrderedDict()  # key -> when admitted
        self._owners: dict[str, str] = {}  # unfinished key -> user
        self._per_user: dict[str, set[str]] = {}
        self._cancelled: set[str] = set()
        self._once: dict[str, float] = {}  # key -> until when a repeat is refused

    def admit(self, job: Job) -> Admission:
        now = self._clock()
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now - DEDUP_SECONDS:
                self._seen.popitem(last=False)
            if job.key in self._seen:
                return Admission.DUPLICATE
            mine = self._per_user.setdefault(job.user_id, set())
            if counts_toward_cap(job) and len(mine) >= self.max_per_user:
                return Admission.TOO_MANY
            self._seen[job.key] = now
            self._owners[job.key] = job.user_id
            if counts_toward_cap(job):
                mine.add(job.key)
            return Admission.ACCEPTED

    def cancel(self, key: str, user_id: str) -> bool:
        with self._lock:
            if self._owners.get(key) != user_id or key in self._cancelled:
                return False
            self._cancelled.add(key)
            self._per_user.get(user_id, set()).discard(key)
            return True

    def cancelled(self, key: str) -> bool:
        with self._lock:
            return key in self._cancelled

    def once(self, key: str, seconds: float) -> bool:
        now = self._clock()
        with self._lock:
            for old in [k for k, until in self._once.items() if until <= now]:
                del self._once[old]
            if key in self._once:
                return False
            self._once[key] = now + seconds
            return True

    def finish(self, job: Job) -> None:
        with self._lock:
            self._owners.pop(job.key, None)
            self._cancelled.discard(job.key)
            mine = self._per_user.get(job.user_id)
            if mine is not None:
                mine.discard(job.key)
                if not mine:
                    del self._per_user[job.user_id]

    def active(self) -> int:
        with self._lock:
            return len(self._owners)


class DatabaseJobBoard(JobBoard):
    """The board of several web processes that share a database and no Redis
    (`WEB_CONCURRENCY` > 1 with the embedded runner): a command retried into another process
    is still drawn once, the cap counts every process's jobs, and Cancel works wherever the
    click lands. Each job still runs in the process that admitted it."""

    def __init__(
        self,
        store: VoteStore,
        max_per_user: int,
        stale: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(max_per_user)
        self.store = store
        self.stale = stale  # seconds after which a job on the way is a dead process's
        self._clock = clock

    def admit(self, job: Job) -> Admission:
        answer = self.store.board_admit(
            job.key,
            job.user_id,
            counts=counts_toward_cap(job),
            max_per_user=self.max_per_user,
            now=self._clock(),
            remember=DEDUP_SECONDS,
            stale=self.stale,
        )
        return Admission(answer)

    def cancel(self, key: str, user_id: str) -> bool:
        return self.store.board_cancel(key, user_id)

    def cancelled(self, key: str) -> bool:
        return self.store.board_cancelled(key)

    def once(self, key: str, seconds: float) -> bool:
        return self.store.board_once(key, now=self._clock(), seconds=seconds)

    def finish(self, job: Job) -> None:
        self.store.board_finish(job.key)

    def active(self) -> int:
        return self.store.board_on_the_way(now=self._clock(), stale=self.stale)


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Submitted:
    admission: Admission
    start: Callable[[], object] = _nothing  # call it once the command is acknowledged


class Runner(ABC):
    """Takes accepted jobs to the workflows. `submit` is on the acknowledgement path: fast."""

    name: str

    def __init__(self, board: JobBoard, disown: Callable[[Job], object] | None = None) -> None:
        """`disown`: records in the delivery ledger that a job's person was told it was not
        taken, for a runner whose failed hand-over may have stored the job anyway."""
        self.board = board
        # the front end's acknowledgements pass here; jobs of this process start after them
        self.gate = AcknowledgementsFirst()
        # a failed submission, which may yet reach Redis, undone (bot/core/withdrawals.py)
        self.withdrawals = Withdrawals(board.finish, disown=disown)

    def submit(self, job: Job) -> Submitted:
        """Admit and hand over the job; UNAVAILABLE (never an exception) when the queue
        cannot be reached, so the acknowledgement can say so. Call `start()` of the answer
        after acknowledging: a job that runs in this process begins only then, so that it does
        not compete with the acknowledgement for the CPU."""
        try:
            admission = self.board.admit(job)
        except Exception as err:
            log.error("could not admit request_id=%s: %s", job.request_id, type(err).__name__)
            self.withdrawals.add(job)  # a board that stopped answering may still run it
            return Submitted(Admission.UNAVAILABLE)
        if admission is not Admission.ACCEPTED:
            return Submitted(admission)
        try:
            start = self._dispatch(job)
        except Exception as err:
            log.error("could not hand over request_id=%s: %s", job.request_id, type(err).__name__)
            self.withdrawals.add(job, maybe_stored=True)  # not on this path
            return Submitted(Admission.UNAVAILABLE)
        return Submitted(admission, start)

    def cancel(self, key: str, user_id: str) -> bool:
        return self.board.cancel(key, user_id)

    @abstractmethod
    def _dispatch(self, job: Job) -> Callable[[], object]:
        """Hand the job over (a queue: now, durably); return what starts it, if anything."""

    def drain(self, deadline: float | None = None) -> None:  # noqa: B027 (nothing of its own)
        """Stop taking jobs; finish the ones accepted in this process, by `deadline` (a
        `time.monotonic()` value) when given."""


INTERRUPTED = ":warning: Your picture of “{prompt}” was interrupted by a restart; please try again."
INTERRUPTED_PLAIN = ":warning: Your request was interrupted by a restart; please try again."
TELL_WAIT = 4.0  # seconds the interrupted get to be told, all at once, before the process ends


def interrupted_text(job: Job) -> str:
    request = getattr(job, "request", None)
    if request is None:
        return INTERRUPTED_PLAIN
    prompt = request.prompt if len(request.prompt) <= 80 else request.prompt[:79] + "…"
    return INTERRUPTED.format(prompt=prompt)


class ThreadRunner(Runner):
    """The embedded default: jobs run on threads of the process that acknowledged them.

    Provider calls take 5-60 s and mostly wait, so threads are cheap. A stop (SIGTERM) drains
    them for as long as the platform allows, then tells each person whose picture will not
    arrive that it was interrupted (`tell`). A crash loses them: use the queue (REDIS_URL)
    when that matters.
    """

    name = "threads"

    def __init__(
        self,
        board: JobBoard,
        run: Callable[[Job], object],
        workers: int,
        tell: Callable[[Job, str], object] | None = None,
    ) -> None:
        super().__init__(board)
        self._run = run
        self._tell = tell
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="job")
        # re-entrant: a job that ends before `_start` adds its callback runs `_finished` on
        # `_start`'s own thread, inside its lock
        self._lock = threading.RLock()
        self._unfinished: dict[Future, Job] = {}
        self._stopping = False

    def _dispatch(self, job: Job) -> Callable[[], object]:
        return lambda: self.gate.after(lambda: self._start(job))

    def _start(self, job: Job) -> None:
        with self._lock:
            if not self._stopping:
                future = self._pool.submit(self._run, job)
                self._unfinished[future] = job
                future.add_done_callback(self._finished)
                return
        self._interrupt([job])  # acknowledged in the instant the stop began

    def _finished(self, future: Future) -> None:
        with self._lock:
            self._unfinished.pop(future, None)

    def drain(self, deadline: float | None = None) -> None:
        """Take no more jobs; wait for the accepted ones until `deadline`, then tell each
        person whose job has not finished that it was interrupted. A job still running may
        then post nothing more: the board calls it cancelled, and the process ends."""
        self.gate.close()  # jobs held for acknowledgements in flight are accepted ones
        with self._lock:
            self._stopping = True
            running = list(self._unfinished)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        _, not_done = wait(running, timeout)
        with self._lock:
            late = {f: self._unfinished[f] for f in not_done if f in self._unfinished}
        self._pool.shutdown(wait=False, cancel_futures=True)  # those not started never will
        left = [job for f, job in late.items() if f.cancelled() or not f.done()]
        if left:
            log.warning("stopping: %d jobs did not finish in time; telling their people", len(left))
            self._interrupt(left)

    def _interrupt(self, jobs: list[Job]) -> None:
        for job in jobs:
            try:
                self.board.cancel(job.key, job.user_id)  # a waiting turn is not taken
            except Exception as err:  # the person is told below either way
                log.warning(
                    "could not cancel an interrupted job request_id=%s: %s",
                    job.request_id,
                    type(err).__name__,
                )
        if self._tell is None:
            return
        pool = ThreadPoolExecutor(min(len(jobs), 16), thread_name_prefix="interrupted")
        told = [pool.submit(self._tell, job, interrupted_text(job)) for job in jobs]
        pool.shutdown(wait=False)
        _, late = wait(told, TELL_WAIT)
        if late:
            log.warning("stopping: %d people could not be told in time", len(late))
