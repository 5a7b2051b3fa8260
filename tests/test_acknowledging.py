"""Acknowledgements first (`bot.core.acknowledging`): a job of this process starts once no
request is being acknowledged, held `hold` seconds at most, and never left behind."""

from __future__ import annotations

import threading
import time

from bot.core.acknowledging import AcknowledgementsFirst
from bot.core.runner import LocalJobBoard, ThreadRunner
from tests.test_stop import make_job


def recording_runner(hold: float = 5.0) -> tuple[ThreadRunner, dict[str, float]]:
    started: dict[str, float] = {}

    def run(job) -> None:
        started[job.key] = time.monotonic()

    runner = ThreadRunner(LocalJobBoard(5), run, workers=4)
    runner.gate.hold = hold
    return runner, started


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_job_accepted_while_requests_are_answered_starts_when_the_last_is_sent():
    runner, started = recording_runner()
    with runner.gate.acknowledging():
        with runner.gate.acknowledging():
            runner.submit(make_job(1, 0)).start()
            time.sleep(0.2)
            assert not started and runner.gate.held == 1
        time.sleep(0.1)  # one acknowledgement is still in flight
        assert not started
        sent = time.monotonic()
    wait_for(lambda: "k1" in started)
    assert started["k1"] >= sent and runner.gate.held == 0


def test_with_nothing_being_acknowledged_a_job_starts_at_once():
    runner, started = recording_runner()
    runner.submit(make_job(1, 0)).start()  # no request in flight
    wait_for(lambda: "k1" in started, timeout=1.0)
    with runner.gate.acknowledging():
        runner.submit(make_job(2, 0)).start()
    runner.submit(make_job(3, 0)).start()  # that acknowledgement is over
    wait_for(lambda: {"k2", "k3"} <= started.keys(), timeout=1.0)


def test_a_request_that_never_ends_holds_a_job_no_longer_than_the_hold():
    runner, started = recording_runner(hold=0.3)
    with runner.gate.acknowledging():
        accepted = time.monotonic()
        runner.submit(make_job(1, 0)).start()
        runner.submit(make_job(2, 0)).start()
        wait_for(lambda: len(started) == 2)
        assert all(0.25 <= at - accepted < 2.0 for at in started.values())


def test_a_stop_starts_the_held_jobs_and_waits_for_them():
    done: list[str] = []
    told = threading.Event()
    runner = ThreadRunner(
        LocalJobBoard(5), lambda job: done.append(job.key), workers=2, tell=lambda j, t: told.set()
    )
    runner.gate.hold = 60.0
    with runner.gate.acknowledging():  # a request in flight as the stop begins
        runner.submit(make_job(1, 0)).start()
        assert runner.gate.held == 1
        runner.drain(time.monotonic() + 5)
        assert done == ["k1"]
        # accepted during the stop: not held for the event loop to start, but started (and
        # told it was interrupted) at once, by the thread that accepted it
        runner.submit(make_job(2, 0)).start()
        assert runner.gate.held == 0 and told.is_set()


def test_a_start_that_fails_does_not_keep_the_others_held():
    gate = AcknowledgementsFirst()
    started = threading.Event()

    def broken() -> None:
        raise RuntimeError("boom")

    with gate.acknowledging():
        gate.after(broken)
        gate.after(started.set)
    assert started.is_set() and gate.held == 0


def test_jobs_that_end_before_their_start_returns_do_not_deadlock_the_runner():
    """A job can finish before `_start` adds its done-callback; the callback then runs on
    `_start`'s thread, inside the runner's lock (this hung with a plain Lock)."""
    runner, started = recording_runner()

    def submit_all() -> None:
        for i in range(50):
            runner.submit(make_job(i, 0)).start()

    submitting = threading.Thread(target=submit_all, daemon=True)
    submitting.start()
    submitting.join(5.0)
    assert not submitting.is_alive(), "the runner deadlocked"
    wait_for(lambda: len(started) == 50)
