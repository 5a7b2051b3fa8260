"""Withdrawals: a failed submission's board entry is taken off once the board answers."""

from __future__ import annotations

import logging
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
    assert "board entries not taken off: 1" in caplog.text
