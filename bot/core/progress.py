"""The requester's private progress note while a job waits for providers' quotas.

The pacer reports each call's place in line; this turns those reports into a few note updates:
the first wait, a change now and then, and "drawing now" when the last wait ends. Slack takes
five posts per response_url, so the note spends at most three of them and leaves the rest for
the outcome.

The notes are sent from a small pool of their own, in order per job: the pacer calls back from
the waiting thread, and a slow Slack must not keep that thread from taking its turn.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from bot.core.jobs import Job
from bot.core.ports import Publisher, Waiting

MAX_NOTES = 3  # of Slack's five response_url posts; the outcome needs the others
MIN_UPDATE_GAP = 10.0  # seconds between two "N ahead of you" updates
_SENDERS = ThreadPoolExecutor(8, thread_name_prefix="progress-note")


class JobProgress:
    """Receives the pacer's on_wait/on_start callbacks for one job run (thread-safe)."""

    def __init__(
        self, publisher: Publisher, job: Job, clock=time.monotonic, senders=_SENDERS
    ) -> None:
        self.publisher = publisher
        self.job = job
        self.clock = clock
        self._senders = senders
        self._sent: Future | None = None  # the last note handed to the senders
        self._lock = threading.Lock()
        self._ahead: dict[str, int] = {}
        self._shown: dict[str, int] | None = None  # what the note says now
        self._notes = 0
        self._last = 0.0
        self.waited = False  # a call had to wait: the requester may have pressed Cancel

    def waiting(self, provider: str, ahead: int) -> None:
        self.waited = True
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
            self._send(Waiting(dict(self._shown), update=not first))

    def started(self, provider: str) -> None:
        with self._lock:
            self._ahead.pop(provider, None)
            if self._ahead or self._shown is None or self._notes >= MAX_NOTES:
                return
            self._shown = {}
            self._notes += 1
            self._send(None)

    def _send(self, waiting: Waiting | None) -> None:
        """Hand the note to the senders, after this job's previous note (called locked)."""
        self._sent = self._senders.submit(self._post, self._sent, waiting)

    def _post(self, previous: Future | None, waiting: Waiting | None) -> None:
        if previous is not None:  # submitted earlier, so already running or done: no deadlock
            previous.result()
        self.publisher.progress(self.job, waiting)

    def wait_sent(self, timeout: float = 10.0) -> None:
        """Until the notes handed over so far are sent (tests; the end of a job)."""
        sent = self._sent
        if sent is not None:
            try:
                sent.result(timeout)
            except Exception:  # a late or failed note must not fail the picture
                pass
