"""Undoing a failed submission in the background, once the services answer again.

A submission that failed on a Redis that stopped answering (paused, slow, or behind a
network that drops packets) may still have reached it: Redis runs the commands it had
received once it answers again, and an answer lost on the way back looks the same to the
client. The person was told the picture could not be taken, so:
- its entry on the board must go, or it would count toward their cap until it expires (the
  job's deadline, and more): taken off after a first pause, so that the commands Redis still
  holds have run, and then with growing pauses until the board answers;
- when the job itself may have been stored (the hand-over to the queue failed), it is
  disowned at once: the delivery ledger, in the database, records that the person was told,
  so that a worker that runs the job later finds the claim and posts nothing.
None of this is on the acknowledgement's path. Steps that never succeed are given up on,
counted in one line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from bot.core.jobs import Job

log = logging.getLogger("imagine.jobs")

PAUSES = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)  # seconds before each try
UNFINISHED = "board entries not taken off, they expire by themselves"
UNDISOWNED = "jobs not disowned, a worker may yet post them"


@dataclass
class _Step:
    job: Job
    act: Callable[[Job], object]
    what: str  # for the line that counts the steps given up on
    due: float  # time.monotonic() of its next try
    urgent: bool = False  # tried before every other step that is due
    tries: int = 0


class Withdrawals:
    def __init__(
        self,
        finish: Callable[[Job], object],
        pauses: tuple[float, ...] = PAUSES,
        disown: Callable[[Job], object] | None = None,
    ) -> None:
        """`finish`: the board's, takes a job's entry off. `disown`: records that the person
        was told, for a job that may have been stored anyway."""
        self._finish = finish
        self._disown = disown
        self.pauses = pauses
        self._wake = threading.Condition()
        self._steps: list[_Step] = []
        self._thread: threading.Thread | None = None  # started on first use (after a fork)

    @property
    def working(self) -> bool:
        """Whether steps are still waiting to succeed."""
        with self._wake:
            return self._thread is not None

    def add(self, job: Job, *, maybe_stored: bool = False) -> None:
        """Undo the failed submission of `job`; `maybe_stored`: its hand-over to the queue
        failed, so a worker may yet run it."""
        now = time.monotonic()
        steps = [_Step(job, self._finish, UNFINISHED, now + self.pauses[0])]
        if maybe_stored and self._disown is not None:
            steps.append(_Step(job, self._disown, UNDISOWNED, now, urgent=True))
        with self._wake:
            self._steps.extend(steps)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="withdrawals", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        """One step at a time, urgent ones first, then the earliest due: a job disowned while
        a try on a hung board waits out its timeout is next, not behind every entry."""
        given_up: Counter[str] = Counter()
        while True:
            with self._wake:
                if not self._steps:
                    self._thread = None
                    break
                now = time.monotonic()
                step = min(self._steps, key=lambda s: (s.due > now, not s.urgent, s.due))
                wait = step.due - now
                if wait > 0:
                    self._wake.wait(wait)
                    continue
            if not self._try(step):
                given_up[step.what] += 1
        for what, count in given_up.items():
            log.warning("%s: %d", what, count)

    def _try(self, step: _Step) -> bool:
        """One try; False when it failed for the last time."""
        try:
            step.act(step.job)
            succeeded = True
        except Exception:
            succeeded = False
            step.tries += 1
            if step.tries < len(self.pauses):
                step.due = time.monotonic() + self.pauses[step.tries]
                return True
        with self._wake:
            self._steps.remove(step)
        return succeeded
