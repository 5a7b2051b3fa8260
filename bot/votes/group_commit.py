"""Group commit: writes that callers wait for, made together when they come together.

A transaction costs far more than a row (SQLite's write lock and WAL commit, PostgreSQL's
round trips and a pooled connection), and when a burst of pictures comes back from the
providers at once, each one's claim before posting would otherwise queue for its own
transaction. Here the first caller writes what is waiting, in one transaction, while the
others wait; whoever arrives during that write is in the next one, written by the first of
them. A lone caller writes at once, as it would alone: nothing lingers.
"""

from __future__ import annotations

import copy
import threading
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
