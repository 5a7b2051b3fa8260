"""CPU time and peak memory of a process tree (Linux).

The load benchmark reads these for every process of the app (gunicorn's master and workers,
queue workers) before and after a burst: CPU per command is the tree's user+system time spent
during the burst divided by the commands; peak RSS is each process's high-water mark (VmHWM).

The CPU is read from each process's CPU-time clock, in nanoseconds, every thread it ever ran
included, rather than from /proc's user and system times, which count in ticks of 10 ms: a
burst of 50 commands costs the app about 200 ms, so a tick is 5 % of the figure, and each
process's two readings could each be a tick off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path


def cpu_clock(pid: int) -> int:
    """The id of process `pid`'s CPU-time clock (what glibc's clock_getcpuclockid returns on
    Linux: the whole process, to the scheduler's nanosecond)."""
    return (~pid << 3) | 2


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float  # user + system, all processes
    peak_rss_mb: float  # the largest single process's high-water mark
    total_peak_rss_mb: float  # the sum of every process's high-water mark (an upper bound)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    children, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def usage(roots: list[int]) -> Usage:
    cpu, peaks = 0.0, []
    for root in roots:
        for pid in tree(root):
            try:
                seconds = time.clock_gettime(cpu_clock(pid))
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue  # it just ended
            cpu += seconds
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
    return Usage(cpu, max(peaks, default=0.0), sum(peaks))
