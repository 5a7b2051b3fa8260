"""The load benchmark's bookkeeping (`bench.load`): rounds rotate the modes, and the targets'
figures are read as ratios to the baseline of the same round."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from bench.load import against, describe, idle_cpu, percentile, post_lag, rounds, usage_after
from bench.procs import usage
from bench.threads import NOT_SEEN, group, measure


def test_each_round_runs_every_mode_once_in_a_rotated_order():
    assert rounds(["baseline", "embedded", "redis"], 4) == [
        ["baseline", "embedded", "redis"],
        ["embedded", "redis", "baseline"],
        ["redis", "baseline", "embedded"],
        ["baseline", "embedded", "redis"],
    ]


def test_ratios_are_taken_round_by_round_then_their_median_and_range():
    def figures(ack: float, posted: float, cpu: float) -> dict[str, float]:
        return {"ack_p99_ms": ack, "all_posted_s": posted, "cpu_ms_per_command": cpu}

    # the machine slows down in round 2: each round's ratio sees it in both modes
    baseline = [figures(100, 2.0, 5.0), figures(200, 4.0, 10.0), figures(100, 2.0, 5.0)]
    app = [figures(50, 2.2, 6.0), figures(100, 4.4, 12.0), figures(90, 2.0, 4.0)]
    assert against(app, baseline) == (
        "ack p99 0.50× (0.50–0.90), all posted 1.10× (1.00–1.10), CPU per command 1.20× (0.80–1.20)"
    )
    assert against(app[:1], baseline[:1]) == (
        "ack p99 0.50×, all posted 1.10×, CPU per command 1.20×"
    )


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0


def test_idle_cpu_counts_what_the_processes_spend_while_waiting():
    """Measured on this very process: quiet, then with a thread spinning through the wait."""
    import threading

    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass  # the measuring thread only sleeps meanwhile, and gets the lock back after

    spinner = threading.Thread(target=spin, daemon=True)
    quiet = idle_cpu([os.getpid()], 0.5, settle=0)
    spinner.start()
    try:
        busy = idle_cpu([os.getpid()], 0.5, settle=0)
    finally:
        stop.set()
        spinner.join()
    assert quiet < 100 and busy > 300  # ms of CPU a second: nearly none, and most of one core


def test_the_cpu_is_read_after_the_work_that_follows_the_last_post():
    """A process still working when the last picture is posted (the app's history) has that
    work counted: a child that starts burning 0.15 s of CPU just before the reading."""
    burn = "import time\nend = time.process_time() + 0.15\nwhile time.process_time() < end: pass"
    burner = subprocess.Popen([sys.executable, "-c", burn])
    try:
        before = usage([burner.pid])
        after = usage_after([burner.pid], 1.0)
    finally:
        burner.wait(5)
    assert after.cpu_seconds - before.cpu_seconds >= 0.1


def test_an_idle_figure_is_printed_when_measured():
    figures = {
        "ack_p50_ms": 40.0,
        "ack_p99_ms": 60.0,
        "all_posted_s": 2.2,
        "cpu_ms_per_command": 5.0,
        "peak_rss_mb": 120.0,
        "total_peak_rss_mb": 400.0,
        "delivered": 50,
        "idle_cpu_ms_per_s": 2.0,
    }
    line = describe("redis", figures, SimpleNamespace(commands=50))
    assert line.endswith("; idle 2.0 ms CPU a second")


def test_the_posting_phase_is_read_from_the_last_answer_and_the_first_answer_on():
    # answers due at 2.0-2.4 s; the last post 0.3 s after the last answer
    assert post_lag([2.0, 2.4, 2.2], [2.1, 2.7, 2.5]) == pytest.approx(0.3)
    figures = {
        "ack_p50_ms": 40.0,
        "ack_p99_ms": 60.0,
        "all_posted_s": 2.7,
        "cpu_ms_per_command": 5.0,
        "peak_rss_mb": 120.0,
        "total_peak_rss_mb": 400.0,
        "delivered": 50,
        "post_lag_ms": 300.0,
        "cpu_after_answers_ms_per_command": 3.25,
    }
    line = describe("embedded", figures, SimpleNamespace(commands=50))
    assert line.endswith(
        "; posting: the last 300 ms after the last answer, CPU 3.2 ms/command from the first "
        "answer on"
    )
    del figures["post_lag_ms"]  # a quota run has no answer times to read
    assert "posting" not in describe("embedded", figures, SimpleNamespace(commands=50))


def test_the_cpu_is_read_finer_than_a_tick_and_counts_ended_threads():
    """A child spends CPU in a thread that then ends, and says how much its process spent;
    the reading agrees to 2 ms (/proc's user and system times count in 10 ms ticks)."""
    spend = (
        "import threading, time\n"
        "def spin():\n"
        "    end = time.thread_time() + 0.137\n"
        "    while time.thread_time() < end: pass\n"
        "worker = threading.Thread(target=spin); worker.start(); worker.join()\n"
        "print(time.process_time(), flush=True)\n"
        "time.sleep(10)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", spend], stdout=subprocess.PIPE, text=True)
    try:
        theirs = float(child.stdout.readline())
        ours = usage([child.pid]).cpu_seconds
    finally:
        child.kill()
        child.wait(5)
    assert theirs <= ours < theirs + 0.002


def test_threads_are_grouped_by_their_name_without_their_pools_number():
    assert group("job_12#140") == "job" and group("http_0#7") == "http"
    assert group("finished jobs#9") == "finished jobs" and group("MainThread#1") == "MainThread"
    assert group("Thread-132 (process_messages)#5") == "Thread"
    assert group("ThreadPoolExecutor-2_7#3") == "ThreadPoolExecutor-2"  # the pools stay apart


def test_the_thread_readings_account_for_the_app_process_cpu():
    """`bench.threads` on the running app: a small burst's CPU shows in the job threads, the
    acknowledging threads and the event loop, and the threads read add up to the process's
    own clock (what ended meanwhile aside: nothing does here)."""
    [(role, (total, groups))] = measure("embedded", 3, 1, 0.1, redis_url="").items()
    assert role == "web" and total > 0.5  # ms of CPU per command
    assert groups["job"] > 0.1 and groups["http"] > 0.01 and groups["MainThread"] > 0.01
    assert abs(groups[NOT_SEEN]) < 0.1 * total
