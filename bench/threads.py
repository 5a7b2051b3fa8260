"""Where the app's CPU goes, thread by thread: bursts of commands against the fakes, as
`bench.load` fires them, with every thread of every process read before the first burst and
after the last (`bench/threadcpu/sitecustomize.py`), summed by group: a pool's threads share
their name but for a number.

    python -m bench.threads --mode embedded --commands 50 --bursts 6
    python -m bench.threads --mode redis --commands 50 --bursts 6
    python -m bench.threads --mode baseline --commands 50 --bursts 6

Each line is CPU milliseconds per command. "(ended, or not seen)" is what a process spent in
threads that ended between the two readings, beside the ones read. Thread clocks count only
what runs in Python's threads; a process's own clock counts it all, so the two agree.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from bench.load import MODES, TRAILING, app_env, fakes, start, wait_for_uploads
from bench.procs import tree

HOOK = Path(__file__).parent / "threadcpu"
REPO_ROOT = Path(__file__).parent.parent
SNAPSHOT = signal.SIGRTMIN + 1
NOT_SEEN = "(ended, or not seen)"


def group(name: str) -> str:
    """A thread's group: its name without the number its pool gave it ("job_12" is "job";
    the baseline's pools keep theirs apart: "ThreadPoolExecutor-2_7" is
    "ThreadPoolExecutor-2")."""
    name = re.sub(r"\s*\(.*\)$", "", name.rsplit("#", 1)[0])
    pool = re.match(r"^(ThreadPoolExecutor-\d+)_\d+$", name)
    return pool.group(1) if pool else re.sub(r"[-_]\d+$", "", name)


def snapshot(pids: list[int], prefix: str, count: int, timeout: float = 10.0) -> None:
    """Every process writes its `count`-th reading (one that has ended is skipped)."""
    for pid in pids:
        try:
            os.kill(pid, SNAPSHOT)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout
    for pid in pids:
        path = Path(f"{prefix}.{pid}")
        while time.monotonic() < deadline:
            if path.exists() and len(path.read_text().splitlines()) >= count:
                break
            time.sleep(0.02)


def spent(prefix: str, pids: list[int]) -> tuple[float, Counter[str]]:
    """Nanoseconds between each process's first and last reading: in all, and by group."""
    total, groups = 0.0, Counter()
    for pid in pids:
        path = Path(f"{prefix}.{pid}")
        if not path.exists():
            continue
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        first, last = lines[0], lines[-1]
        total += last["process"] - first["process"]
        seen = 0
        for thread, ns in last["threads"].items():
            used = ns - first["threads"].get(thread, 0)
            groups[group(thread)] += used
            seen += used
        groups[NOT_SEEN] += last["process"] - first["process"] - seen
    return total, groups


def measure(
    mode: str, commands: int, bursts: int, latency: float, redis_url: str, timeout: float = 300
) -> dict[str, tuple[float, dict[str, float]]]:
    """Per process role ("web", "worker 1", ...; the baseline's is "baseline"): its CPU
    milliseconds per command, in all and by thread group."""
    prefix = tempfile.mkdtemp(prefix="imagine-threads-") + "/cpu"
    with ExitStack() as stack:
        slack, openai = fakes(stack, latency)
        env = app_env(slack, openai, mode, redis_url)
        env["PYTHONPATH"] = f"{HOOK}{os.pathsep}{REPO_ROOT}"
        env["IMAGINE_BENCH_THREAD_CPU"] = prefix
        web, roots = start(stack, mode, env)
        web.post_command("dalle3 warm up", user_id="UWARM")
        slack.wait_for(lambda: slack.uploaded_files, timeout=timeout)
        roles = ["baseline"] if mode == "baseline" else ["web", "worker 1", "worker 2"]
        processes = {role: tree(root) for role, root in zip(roles, roots, strict=False)}
        everyone = [pid for pids in processes.values() for pid in pids]
        snapshot(everyone, prefix, 1)
        with ThreadPoolExecutor(min(commands, 256)) as pool:
            for burst in range(bursts):
                list(
                    pool.map(
                        lambda i, burst=burst: web.post_command(
                            f"dalle3 burst {burst} picture {i}",
                            user_id=f"U{burst:03d}{i:05d}",
                            response_url=slack.response_url(),
                        ),
                        range(commands),
                    )
                )
                wait_for_uploads(slack, 1 + (burst + 1) * commands, timeout)
        time.sleep(TRAILING)
        snapshot(everyone, prefix, 2)
    per_command = 1e6 * commands * bursts
    figures = {}
    for role, pids in processes.items():
        total, groups = spent(prefix, pids)
        figures[role] = (
            total / per_command,
            {name: ns / per_command for name, ns in groups.most_common()},
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="embedded")
    parser.add_argument("--commands", "-n", type=int, default=50)
    parser.add_argument("--bursts", type=int, default=6)
    parser.add_argument("--latency", type=float, default=2.0, help="provider seconds per call")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()
    figures = measure(args.mode, args.commands, args.bursts, args.latency, args.redis_url)
    total = sum(cpu for cpu, _ in figures.values())
    print(
        f"{args.mode}, {args.bursts} bursts of {args.commands} commands: "
        f"{total:.2f} ms of CPU per command"
    )
    for role, (cpu, groups) in figures.items():
        print(f"  {role}: {cpu:.2f}")
        for name, ms in groups.items():
            print(f"    {ms:6.3f}  {name}")


if __name__ == "__main__":
    sys.exit(main())
