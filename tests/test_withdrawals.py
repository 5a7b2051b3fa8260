"""Withdrawals: a failed submission's board entry is taken off once the board answers, and a
job whose hand-over failed is disowned at once."""

from __future__ import annotations

import logging
import threading
import time

from bot.core.withdrawals import Withdrawals
from tests.test_jobs import job


class Board:
    """A board that does not answer for its first `failures` calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.finished: list[str] = []

    def finish(self, job) -> None:
        if self.failures:
            self.failures -= 1
            raise TimeoutError("the board did not answer")
        self.finished.append(job.key)


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_entries_are_taken_off_once_the_board_answers():
    board = Board(failures=3)
    withdrawals = Withdrawals(board.finish, pauses=(0.05,) * 5)
    withdrawals.add(job(key="k1"))
    withdrawals.add(job(key="k2"))
    wait_until(lambda: len(board.finished) == 2)
    assert sorted(board.finished) == ["k1", "k2"]
    wait_until(lambda: not withdrawals.working)
    withdrawals.add(job(key="k3"))  # a later failure starts over
    wait_until(lambda: "k3" in board.finished)
    assert board.finished.count("k3") == 1


def test_a_board_that_never_answers_is_given_up_on_with_a_line(caplog):
    board = Board(failures=1_000)
    withdrawals = Withdrawals(board.finish, pauses=(0.01,) * 3)
    with caplog.at_level(logging.WARNING, logger="imagine.jobs"):
        withdrawals.add(job(key="k1"))
        wait_until(lambda: not withdrawals.working)
    assert board.failures == 1_000 - 3  # one try after each pause
    assert "board entries not taken off, they expire by themselves: 1" in caplog.text


class Ledger:
    """A delivery ledger that fails its first `failures` writes."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.disowned: list[tuple[str, float]] = []

    def disown(self, job) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database did not answer")
        self.disowned.append((job.key, time.monotonic()))


def test_a_job_whose_hand_over_failed_is_disowned_at_once_and_its_entry_taken_off():
    board, ledger = Board(failures=0), Ledger()
    withdrawals = Withdrawals(board.finish, pauses=(0.5,) * 3, disown=ledger.disown)
    added = time.monotonic()
    withdrawals.add(job(key="k1"), maybe_stored=True)
    withdrawals.add(job(key="k2"))  # refused at the admission: nothing was stored
    wait_until(lambda: not withdrawals.working)
    [(key, at)] = ledger.disowned
    assert key == "k1" and at - added < 0.25  # not after the first pause
    assert sorted(board.finished) == ["k1", "k2"]


def test_a_disowned_job_does_not_wait_behind_entries_on_a_hung_board():
    """Each try on a hung board waits out its timeout; a job disowned meanwhile is next."""
    hung = threading.Event()

    def finish(job) -> None:
        hung.wait(0.3)  # the client's timeout
        raise TimeoutError("the board did not answer")

    ledger = Ledger(failures=1)
    withdrawals = Withdrawals(finish, pauses=(0.0,) * 3, disown=ledger.disown)
    for i in range(5):
        withdrawals.add(job(key=f"entry{i}"))
    time.sleep(0.1)  # a try on the hung board is under way
    added = time.monotonic()
    withdrawals.add(job(key="stored"), maybe_stored=True)
    wait_until(lambda: ledger.disowned, timeout=10)
    [(key, at)] = ledger.disowned  # after one failed write, retried
    assert key == "stored" and at - added < 1.0  # not behind 5 entries × 3 tries × 0.3 s
    hung.set()
    wait_until(lambda: not withdrawals.working, timeout=10)
