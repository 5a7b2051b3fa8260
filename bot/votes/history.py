"""The history (and how each delivered job ended), written off the jobs' path: one thread
writes many entries per transaction.

A transaction costs SQLite (its write lock, a WAL commit) and PostgreSQL (round trips) far
more than a row does, and a picture's post must not wait for its history line. Entries are
best effort, like the history itself: a failed write is logged, never shown to anyone.
`flush()` at a stop writes what is queued.
"""

from __future__ import annotations

import logging
import queue
import threading

from bot.votes.db import DeliveryOutcome, HistoryEntry, VoteStore

log = logging.getLogger("imagine.history")

MAX_BATCH = 500
Item = HistoryEntry | DeliveryOutcome | threading.Event


class HistoryWriter:
    def __init__(self, store: VoteStore) -> None:
        self.store = store
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, entry: HistoryEntry | DeliveryOutcome) -> None:
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
            waiting: list[threading.Event] = []
            item = self._queue.get()
            while True:
                if isinstance(item, threading.Event):
                    waiting.append(item)
                elif isinstance(item, DeliveryOutcome):
                    outcomes.append(item)
                else:
                    batch.append(item)
                if len(batch) + len(outcomes) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            try:
                self.store.write_history(batch, outcomes)
            except Exception:
                log.exception(
                    "could not record %d history entries, %d outcomes", len(batch), len(outcomes)
                )
            for event in waiting:
                event.set()
