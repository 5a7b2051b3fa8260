"""Group commit: the claims of a burst share transactions; a lone one is written at once."""

from __future__ import annotations

import threading
import time
import traceback

import pytest

from bot.votes.group_commit import GroupCommit, for_another_caller


class Recorder:
    """A write that records its batches and, while `hold` is clear, waits inside the first."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.hold = threading.Event()
        self.inside = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        self.inside.set()
        self.hold.wait(5)
        if self.fail_on in items:
            raise RuntimeError("the database is gone")
        return [item.upper() for item in items]


def submit_all(group: GroupCommit, items: list[str]) -> tuple[dict, list[threading.Thread]]:
    answers: dict = {}

    def one(item: str) -> None:
        try:
            answers[item] = group.submit(item)
        except RuntimeError as err:
            answers[item] = err

    threads = [threading.Thread(target=one, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    return answers, threads


def test_a_lone_write_is_made_at_once():
    write = Recorder()
    write.hold.set()
    assert GroupCommit(write).submit("a") == "A"
    assert write.batches == [["a"]]


def during_a_write(group: GroupCommit, write: Recorder, items: list[str]) -> tuple[dict, dict]:
    """`items` submitted while a first write is under way; every answer once it is over."""
    first, threads = submit_all(group, ["first"])
    assert write.inside.wait(5)
    answers, more = submit_all(group, items)
    time.sleep(0.2)  # all of them wait for the write under way
    write.hold.set()
    for thread in threads + more:
        thread.join(5)
    return first, answers


def test_what_arrives_during_a_write_is_written_together_next():
    write = Recorder()
    later = [f"w{i}" for i in range(10)]
    first, answers = during_a_write(GroupCommit(write), write, later)
    assert write.batches[0] == ["first"] and sorted(write.batches[1]) == sorted(later)
    assert len(write.batches) == 2
    assert first == {"first": "FIRST"} and answers == {item: item.upper() for item in later}


def test_a_batch_holds_at_most_max_batch():
    write = Recorder()
    _, answers = during_a_write(
        GroupCommit(write, max_batch=4), write, [f"w{i}" for i in range(10)]
    )
    assert [len(batch) for batch in write.batches] == [1, 4, 4, 2]
    assert len(answers) == 10 and all(a == k.upper() for k, a in answers.items())


def test_a_failed_write_fails_its_batch_only():
    write = Recorder(fail_on="w3")
    group = GroupCommit(write)
    _, answers = during_a_write(group, write, [f"w{i}" for i in range(5)])
    assert all(isinstance(answer, RuntimeError) for answer in answers.values())
    assert group.submit("after") == "AFTER"  # the next caller writes again
    with pytest.raises(RuntimeError):
        group.submit("w3")


def test_each_caller_of_a_failed_batch_raises_an_exception_of_its_own():
    """One exception object raised in many threads would carry all their frames in one
    traceback: each caller gets a copy, caused by the writer's exception."""
    write = Recorder(fail_on="w0")
    first, answers = during_a_write(GroupCommit(write), write, ["w0", "w1", "w2"])
    assert first == {"first": "FIRST"}
    errors = list(answers.values())
    assert all(type(e) is RuntimeError and e.args == ("the database is gone",) for e in errors)
    assert len({id(e) for e in errors}) == 3
    writers = [e for e in errors if e.__cause__ is None]
    assert len(writers) == 1  # the caller that wrote the batch raises the original
    assert all(e.__cause__ is writers[0] for e in errors if e is not writers[0])
    traces = [traceback.extract_tb(e.__traceback__) for e in errors]
    assert all(sum(f.name == "submit" for f in trace) == 1 for trace in traces)


def test_an_exception_that_cannot_be_copied_is_named_in_its_stead():
    class Stubborn(Exception):
        def __reduce_ex__(self, protocol):
            raise TypeError("no copies")

    own = for_another_caller(Stubborn("locked"))
    assert isinstance(own, RuntimeError) and "Stubborn('locked')" in str(own)
    assert isinstance(own.__cause__, Stubborn)
