"""Acknowledgements first: a job of this process starts once no request is being acknowledged.

Slack gives an acknowledgement 3 seconds and a picture a minute. When fifty commands arrive
at once, the jobs that the first ones started would otherwise compete with the rest of the
acknowledgements for the interpreter (a job's first steps, building and sending the provider
request, cost more CPU than an acknowledgement). So a front end that answers requests tells
the gate when each begins and ends, and a job accepted meanwhile is held until none is left
in flight, or for `hold` seconds at most, so that a steady stream of requests, or one that
hangs, delays a job by no more than that.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("imagine.jobs")

HOLD = 0.25  # seconds a job waits at most for the acknowledgements in flight


class AcknowledgementsFirst:
    def __init__(self, hold: float = HOLD) -> None:
        self.hold = hold
        self._lock = threading.Lock()
        self._in_flight = 0
        self._held: list[Callable[[], object]] = []
        self._timer: threading.Timer | None = None
        self._closed = False

    @contextmanager
    def acknowledging(self) -> Iterator[None]:
        """Around the answer to one request, from its arrival until its response is sent."""
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                quiet = not self._in_flight
            if quiet:
                self.release()

    def after(self, start: Callable[[], object]) -> None:
        """Call `start` now when nothing is being acknowledged; else once that is over."""
        with self._lock:
            if self._in_flight and not self._closed:
                self._held.append(start)
                if self._timer is None:
                    self._timer = threading.Timer(self.hold, self.release)
                    self._timer.daemon = True
                    self._timer.start()
                return
        start()

    def release(self) -> None:
        """Start every held job now (the acknowledgements are over, the hold is up, or the
        process is stopping and must not leave one behind)."""
        with self._lock:
            held, self._held = self._held, []
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        for start in held:
            try:
                start()
            except Exception:  # one job's start must not keep the others held
                log.exception("could not start a held job")

    def close(self) -> None:
        """The process is stopping: start what is held, and hold nothing from now on, so that
        a job accepted during the stop is started (and told it was interrupted) by the thread
        that accepted it, never by the event loop's as an acknowledgement ends."""
        with self._lock:
            self._closed = True
        self.release()

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._held)
