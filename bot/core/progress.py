"""The requester's private progress note while a job waits for providers' quotas.

The pacer reports each call's place in line; this turns those reports into a few note updates:
the first wait, a change now and then, and "drawing now" when the last wait ends. Slack takes
five posts per response_url, so the note spends at most three of them and leaves the rest for
the outcome.
"""

from __future__ import annotations

import threading
import time

from bot.core.jobs import Job
from bot.core.ports import Publisher, Waiting

MAX_NOTES = 3  # of Slack's five response_url posts; the outcome needs the others
MIN_UPDATE_GAP = 10.0  # seconds between two "N ahead of you" updates


class JobProgress:
    """Receives the pacer's on_wait/on_start callbacks for one job run (thread-safe)."""

    def __init__(self, publisher: Publisher, job: Job, clock=time.monotonic) -> None:
        self.publisher = publisher
        self.job = job
        self.clock = clock
        self._lock = threading.Lock()
        self._ahead: dict[str, int] = {}
        self._shown: dict[str, int] | None = None  # what the note says now
        self._notes = 0
        self._last = 0.0

    def waiting(self, provider: str, ahead: int) -> None:
        with self._lock:
            self._ahead[provider] = ahead
            first = self._shown is None
            changed = self._shown != self._ahead
            due = self.clock() - self._last >= MIN_UPDATE_GAP
            # keep one note for "drawing now" once a waiting note is up
            if not (first or (changed and due)) or self._notes >= MAX_NOTES - 1:
                return
            self._shown = dict(self._ahead)
            self._notes += 1
            self._last = self.clock()
            shown = Waiting(dict(self._shown))
        self.publisher.progress(self.job, shown)

    def started(self, provider: str) -> None:
        with self._lock:
            self._ahead.pop(provider, None)
            if self._ahead or self._shown is None or self._notes >= MAX_NOTES:
                return
            self._shown = {}
            self._notes += 1
        self.publisher.progress(self.job, None)
