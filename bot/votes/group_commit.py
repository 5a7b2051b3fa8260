"""Group commit: writes made together when they come together.

A transaction (or a round trip) costs far more than a row, and when a burst of pictures comes
back from the providers at once, each one's writes would otherwise queue for their own. Two
shapes:
- `GroupCommit`, for writes the caller waits for (a claim before posting): the first caller
  writes what is waiting while the others wait; whoever arrives during that write is in the
  next one, written by the first of them. A lone caller writes at once: nothing lingers.
- `Batches`, for writes nobody waits for (the history, the job board's finished entries): a
  thread lets a burst's items gather for `linger` seconds, then writes them all at once.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Entry(Generic[T, R]):
    __slots__ = ("item", "answer", "error", "ready", "leads")

    def __init__(self, item: T) -> None:
        self.item = item
        self.answer: R | None = None
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.leads = False  # woken to write the next batch, not with its answer

    def outcome(self) -> R:
        if self.error is not None:
            raise self.error
        return self.answer  # type: ignore[return-value]


class GroupCommit(Generic[T, R]):
    """`write(items)` answers each item, in order, in one transaction; `submit(item)` waits
    for its item's answer (or raises what the write raised). Safe from many threads."""

    def __init__(self, write: Callable[[list[T]], Sequence[R]], max_batch: int = 200) -> None:
        self._write = write
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Entry[T, R]] = []
        self._writing = False

    def submit(self, item: T) -> R:
        entry: _Entry[T, R] = _Entry(item)
        with self._lock:
            self._waiting.append(entry)
            leads = not self._writing
            self._writing = True
        if not leads:
            entry.ready.wait()
            if not entry.leads:
                return entry.outcome()
        self._write_next(entry)  # its own entry is the first waiting: it is in this batch
        return entry.outcome()

    def _write_next(self, writer: _Entry[T, R]) -> None:
        with self._lock:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
        try:
            answers = self._write([entry.item for entry in batch])
            for entry, answer in zip(batch, answers, strict=True):
                entry.answer = answer
        except BaseException as err:  # every caller of the batch learns it failed
            for entry in batch:
                entry.error = err if entry is writer else for_another_caller(err)
        with self._lock:
            following = self._waiting[0] if self._waiting else None
            if following is None:
                self._writing = False
            else:
                following.leads = True
        for entry in batch:
            entry.ready.set()
        if following is not None:
            following.ready.set()


def for_another_caller(err: BaseException) -> BaseException:
    """The writer's exception as one more caller raises it: a copy (same type and
    arguments) caused by the original. Raised in several threads at once, the one object
    would gather every thread's frames in one traceback, and their logs would run together."""
    try:
        own = copy.copy(err)
    except Exception:  # an exception that cannot be copied: say what it was
        own = RuntimeError(f"the batch's write failed: {err!r}")
    own.__traceback__ = None
    own.__cause__ = err
    return own


class Batches(Generic[T]):
    """`add(item)` returns at once; a thread started on first use (after a fork) hands what
    came within `linger` of an item, up to `max_batch`, to `write` in one call. A failed write
    is logged (`what` names the items), never raised: the writes are best effort. `flush()`
    writes what is queued without lingering, and waits for it."""

    def __init__(
        self,
        write: Callable[[list[T]], object],
        *,
        what: str,
        linger: float,
        log: logging.Logger,
        max_batch: int = 500,
    ) -> None:
        self._write = write
        self.what = what
        self.linger = linger
        self._log = log
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[T | threading.Event] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, item: T) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self.what, daemon=True)
                    self._thread.start()
        self._queue.put(item)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything added so far is written; False on timeout."""
        if self._thread is None:
            return True
        written = threading.Event()
        self._queue.put(written)
        return written.wait(timeout)

    def _run(self) -> None:
        while True:
            items: list[T] = []
            waiting: list[threading.Event] = []
            item = self._queue.get()
            # A burst's items trickle in: let them gather, then take them all at once
            # (waiting on the queue for each would wake this thread once per item).
            if not isinstance(item, threading.Event):  # a flush does not wait
                time.sleep(self.linger)
            while True:
                if isinstance(item, threading.Event):
                    waiting.append(item)
                else:
                    items.append(item)
                if len(items) >= self._max_batch or waiting:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if items:
                try:
                    self._write(items)
                except Exception:
                    self._log.exception("could not write %d %s", len(items), self.what)
            for event in waiting:
                event.set()
