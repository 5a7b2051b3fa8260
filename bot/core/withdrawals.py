"""Taking a job off the board after its submission failed, once the board answers again.

A submission that failed on a board that stopped answering (Redis paused, or behind a network
that drops packets) may still have reached it: Redis runs the commands it had received once
it answers again. The person was told the picture could not be taken, so its entry must go,
or it would count toward their cap until it expires (the job's deadline, and more). It is
taken off in the background, never on the acknowledgement's path, with growing pauses until
the board answers; an entry still there after the last one expires by itself.
"""

from __future__ import annotations

import logging
import threading
import time

from bot.core.jobs import Job

log = logging.getLogger("imagine.jobs")

PAUSES = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)  # seconds before each try


class Withdrawals:
    def __init__(self, finish, pauses: tuple[float, ...] = PAUSES) -> None:
        self._finish = finish  # the board's: takes a job's entry off
        self.pauses = pauses
        self._lock = threading.Lock()
        self._pending: list[Job] = []
        self._thread: threading.Thread | None = None  # started on first use (after a fork)

    @property
    def working(self) -> bool:
        """Whether entries are still waiting to be taken off."""
        with self._lock:
            return self._thread is not None

    def add(self, job: Job) -> None:
        with self._lock:
            self._pending.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="withdrawals", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        for pause in self.pauses:
            time.sleep(pause)
            with self._lock:
                pending, self._pending = self._pending, []
            left = [job for job in pending if not self._taken_off(job)]
            with self._lock:
                self._pending.extend(left)
                if not self._pending:
                    self._thread = None
                    return
        with self._lock:
            given_up, self._pending, self._thread = self._pending, [], None
        log.warning("board entries not taken off: %d (they expire by themselves)", len(given_up))

    def _taken_off(self, job: Job) -> bool:
        try:
            self._finish(job)
            return True
        except Exception:
            return False
