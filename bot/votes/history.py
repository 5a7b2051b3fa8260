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
import threading
import weakref

from bot.votes.db import DeliveryOutcome, HistoryEntry, UsageRecord, VoteStore
from bot.votes.group_commit import Batches

log = logging.getLogger("imagine.history")

MAX_BATCH = 500
LINGER = 0.05  # seconds an entry waits for others to share its transaction
Record = HistoryEntry | DeliveryOutcome | UsageRecord


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
        self._batches: Batches[Record] = Batches(
            self._write, what="history", linger=LINGER, log=log, max_batch=MAX_BATCH
        )

    def add(self, entry: Record) -> None:
        self._batches.add(entry)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything added so far is written; False on timeout."""
        return self._batches.flush(timeout)

    def _write(self, records: list[Record]) -> None:
        entries = [r for r in records if isinstance(r, HistoryEntry)]
        outcomes = [r for r in records if isinstance(r, DeliveryOutcome)]
        usage = [r for r in records if isinstance(r, UsageRecord)]
        try:
            self.store.write_history(entries, outcomes, usage)
        except Exception:
            log.exception(
                "could not record %d history entries, %d outcomes, %d usage rows",
                len(entries),
                len(outcomes),
                len(usage),
            )
