"""Loaded into the app's processes by `python -m bench.threads`, which puts this directory on
their PYTHONPATH: at signal SIGRTMIN+1, a process appends the CPU time of each of its live
threads (their CPU-time clocks, in nanoseconds) and its own to `$IMAGINE_BENCH_THREAD_CPU.<pid>`,
one JSON line a signal. A forked process (gunicorn's worker) inherits the handler.

Nothing here runs unless that variable is set; the app itself never loads this file."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

SNAPSHOT = signal.SIGRTMIN + 1
PREFIX = os.environ.get("IMAGINE_BENCH_THREAD_CPU")


def snapshot(signum: int, frame: object) -> None:
    threads = {}
    for thread in threading.enumerate():
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            threads[f"{thread.name}#{thread.ident}"] = time.clock_gettime_ns(clock)
        except (OSError, TypeError):  # ended meanwhile, or not started
            continue
    line = {"process": time.clock_gettime_ns(time.CLOCK_PROCESS_CPUTIME_ID), "threads": threads}
    with open(f"{PREFIX}.{os.getpid()}", "a") as out:
        out.write(json.dumps(line) + "\n")


if PREFIX:
    signal.signal(SNAPSHOT, snapshot)
