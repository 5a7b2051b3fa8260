"""The history (how each delivered job ended, and the usage rows no limit waits on), written
off the jobs' path: one thread writes many entries per transaction.

A transaction costs SQLite (its write lock, a WAL commit) and PostgreSQL (round trips) far
more than a row does, and a picture's post must not wait for its history line: an entry waits
up to `LINGER` for others to share its transaction (a flush does not wait). Entries are
best effort, like the history itself: a failed write is logged, never shown to anyone.
`flush()` at a stop writes what is queued.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref

from bot.votes.db import DeliveryOutcome, HistoryEntry, UsageRecord, VoteStore

log = logging.getLogger("imagine.history")

MAX_BATCH = 500
LINGER = 0.05  # seconds an entry waits for others to share its transaction
Record = HistoryEntry | DeliveryOutcome | UsageRecord
Item = Record | threading.Event


class HistoryWriter:
    _shared: weakref.WeakKeyDictionary[VoteStore, HistoryWriter] = weakref.WeakKeyDictionary()
    _shared_lock = threading.Lock()

    @classmethod
    def of(cls, store: VoteStore) -> HistoryWriter:
        """The store's one writer in this process: the history, the outcomes and the usage
        rows of a burst share its transactions."""
        with cls._shared_lock:
            writer = cls._shared.get(store)
            if writer is None:
                writer = cls._shared[store] = cls(store)
            return writer

    def __init__(self, store: VoteStore) -> None:
        self.store = store
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, entry: Record) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="history", daemon=True)
                    self._thread.start()
        self._queue.put(entry)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything added so far is written; False on timeout."""
        if self._thread is None:
            return True
        written = threading.Event()
        self._queue.put(written)
        return written.wait(timeout)

    def _run(self) -> None:
        while True:
            batch: list[HistoryEntry] = []
            outcomes: list[DeliveryOutcome] = []
            usage: list[UsageRecord] = []
            waiting: list[threading.Event] = []
            item = self._queue.get()
            # A burst's entries trickle in: let them gather, then take them all at once
            # (waiting on the queue for each would wake this thread once per entry).
            if not isinstance(item, threading.Event):  # a flush does not wait
                time.sleep(LINGER)
            while True:
                if isinstance(item, threading.Event):
                    waiting.append(item)
                elif isinstance(item, DeliveryOutcome):
                    outcomes.append(item)
                elif isinstance(item, UsageRecord):
                    usage.append(item)
                else:
                    batch.append(item)
                if len(batch) + len(outcomes) + len(usage) >= MAX_BATCH or waiting:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            try:
                self.store.write_history(batch, outcomes, usage)
            except Exception:
                log.exception(
                    "could not record %d history entries, %d outcomes, %d usage rows",
                    len(batch),
                    len(outcomes),
                    len(usage),
                )
            for event in waiting:
                event.set()
