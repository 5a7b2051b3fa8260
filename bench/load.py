"""Load test: N concurrent signed `/imagine` commands against the running app, beside a baseline.

Starts the fake Slack and the fake Azure OpenAI images API on 127.0.0.1 (each generation
takes `--latency` seconds), then, for each mode, starts the app as real processes exactly as
the end-to-end tests do, fires N commands at once from N people, and waits until every picture
is uploaded. Modes:
- `baseline`: bench/baseline.py, the plainest Bolt app that acknowledges and then draws on a
  256-thread pool;
- `embedded`: `python -m bot serve`, jobs on threads in the web process;
- `redis`: `python -m bot serve` + two `python -m bot worker` on Redis (`--redis-url`).

It prints, per mode: acknowledgement p50/p99, the time until all are posted, the app's CPU
milliseconds per command (user+system of all its processes from the burst until 0.25 s after its
last post: the work that follows a post, the history, is counted) and peak RSS,
and where the posting phase's time goes: how long after the last provider answer the last
picture was posted, and the CPU per command spent from the first answer on;
with `--repeat N`, the medians of N rounds, each running every mode once (the order rotated),
and each mode's figures as ratios to the baseline's of the same round (their median, and
their range over the rounds).
With `--idle S` it first measures the app's CPU while it waits for S seconds with nothing to
do (warm, after one picture), in milliseconds a second: what an idle deployment costs.
With `--quota RPM` the fake enforces that quota over 10-second windows (as Azure does) and the
app paces to it (OPENAI_REQUESTS_PER_MINUTE); the figures then include refused calls and the
time to the last picture against the quota's floor.

    python -m bench.load --commands 50 --latency 2 --repeat 3
    python -m bench.load --commands 200 --latency 2 --repeat 3
    python -m bench.load --commands 60 --latency 2 --quota 60 --modes redis,embedded
    python -m bench.load --commands 50 --idle 10 --modes redis
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from bench.procs import Usage, usage
from tests.fakes._http import WindowQuota
from tests.fakes.openai_images import FakeOpenAIImages
from tests.fakes.slack import FakeSlack
from tests.slack_harness import AppProcess, WorkerProcess, slack_env

MODES = ("baseline", "embedded", "redis")
# seconds after the last post before the CPU is read: what the app does after it (the history,
# which waits 50 ms to share a transaction) is its work too
TRAILING = 0.25


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least `p` % of the values at or below it."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


def start(stack: ExitStack, mode: str, env: dict[str, str]) -> tuple[AppProcess, list[int]]:
    """The app's processes for `mode`; returns the one taking commands and every root pid."""
    if mode == "baseline":
        web = stack.enter_context(AppProcess(env, args=("-m", "bench.baseline")))
        return web, [web.process.pid]
    web = stack.enter_context(AppProcess(env))
    roots = [web.process.pid]
    if mode == "redis":
        for _ in range(2):
            worker = stack.enter_context(WorkerProcess(env))
            roots.append(worker.process.pid)
    return web, roots


def usage_after(roots: list[int], trailing: float) -> Usage:
    """The processes' usage `trailing` seconds from now, their work after the last post in."""
    time.sleep(trailing)
    return usage(roots)


def post_lag(answered: list[float], posted: list[float]) -> float:
    """How long after the last provider answer the last picture was posted: what is still
    to do once every answer is in (near zero while the posting keeps up with the answers)."""
    return max(posted) - max(answered)


def idle_cpu(roots: list[int], seconds: float, settle: float = 2.0) -> float:
    """The app's CPU milliseconds per second over `seconds` with nothing to do, once the
    warm-up picture's trailing work (its history row) has had `settle` seconds."""
    time.sleep(settle)
    before = usage(roots)
    time.sleep(seconds)
    return (usage(roots).cpu_seconds - before.cpu_seconds) * 1000 / seconds


def wait_for_uploads(slack: FakeSlack, expected: int, timeout: float, idle: float = 30.0) -> None:
    """Until `expected` uploads arrived, or none for `idle` seconds (pictures that never
    come: the baseline drops what the provider refuses), or `timeout`."""
    started = last_change = time.monotonic()
    seen = 0
    while time.monotonic() - started < timeout:
        count = len(slack.uploaded_files)
        if count >= expected:
            return
        if count != seen:
            seen, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > idle:
            return
        time.sleep(0.05)


def fakes(stack: ExitStack, latency: float) -> tuple[FakeSlack, FakeOpenAIImages]:
    """The fake Slack and the fake Azure OpenAI images API, each generation `latency` s."""
    slack = stack.enter_context(FakeSlack())
    openai = stack.enter_context(FakeOpenAIImages(deployments={"img": "gpt-image-2"}))
    openai.generation_delay = latency
    return slack, openai


def app_env(
    slack: FakeSlack,
    openai: FakeOpenAIImages,
    mode: str = "embedded",
    redis_url: str = "",
    database_url: str | None = None,
) -> dict[str, str]:
    """The app's settings against the fakes; in the redis mode, an emptied Redis database."""
    env = slack_env(
        slack,
        AZURE_OPENAI_ENDPOINT=openai.url,
        AZURE_OPENAI_API_KEY=openai.azure_api_key,
        AZURE_OPENAI_IMAGE_DEPLOYMENT="img",
        OPENAI_IMAGE_MODEL="gpt-image-2",
        LOG_LEVEL="WARNING",
        DATABASE_URL=database_url
        or f"sqlite:///{tempfile.mkdtemp(prefix='imagine-bench-')}/imagine.db",
    )
    if mode == "redis":
        import redis

        redis.Redis.from_url(redis_url).flushdb()
        env["REDIS_URL"] = redis_url
    return env


def run(mode: str, commands: int, latency: float, timeout: float, args) -> dict[str, float]:
    with ExitStack() as stack:
        slack, openai = fakes(stack, latency)
        quota = None
        env = app_env(slack, openai, mode, args.redis_url, args.database_url)
        if args.quota:
            quota = openai.quota = WindowQuota.per_minute(args.quota)
            env["OPENAI_REQUESTS_PER_MINUTE"] = str(args.quota)
        web, roots = start(stack, mode, env)
        web.post_command("dalle3 warm up", user_id="UWARM")  # imports, first connections
        slack.wait_for(lambda: slack.uploaded_files, timeout=timeout)
        idle = idle_cpu(roots, args.idle) if args.idle else None
        before = usage(roots)
        sent: dict[str, float] = {}
        prompts = [f"bench picture {i}" for i in range(commands)]

        def fire(i: int) -> float:
            prompt = prompts[i]
            sent[prompt] = time.monotonic()
            status, _, elapsed = web.post_command(
                f"dalle3 {prompt}", user_id=f"U{i:05d}", response_url=slack.response_url()
            )
            if status != 200:
                raise RuntimeError(f"ack status {status}")
            return elapsed

        answers_due: dict[str, Usage] = {}  # the app's usage when the first answer is due
        due = threading.Timer(latency, lambda: answers_due.setdefault("usage", usage(roots)))
        due.start()
        with ThreadPoolExecutor(min(commands, 256)) as pool:
            acks = list(pool.map(fire, range(commands)))
        wait_for_uploads(slack, commands + 1, timeout)
        due.join()
        after = usage_after(roots, TRAILING)
        answered = [
            call.at + latency for call in openai.calls("/images/") if call.at >= min(sent.values())
        ]
        done = {f.title: f for f in slack.uploaded_files if f.title != "warm up"}
        finished = {
            shared["title"]: call.at
            for call in slack.calls("/api/files.completeUploadExternal")
            if call.at >= min(sent.values())
            for shared in json.loads(call.form().get("files", "[]"))
        }
    figures = {
        "delivered": len(set(prompts) & set(done)),
        "ack_p50_ms": percentile(acks, 50) * 1000,
        "ack_p99_ms": percentile(acks, 99) * 1000,
        "ack_max_ms": max(acks) * 1000,
        "all_posted_s": max(finished.values()) - min(sent.values()),
        "cpu_ms_per_command": (after.cpu_seconds - before.cpu_seconds) * 1000 / commands,
        "peak_rss_mb": after.peak_rss_mb,
        "total_peak_rss_mb": after.total_peak_rss_mb,
        "mean_ack_ms": statistics.fmean(acks) * 1000,
    }
    if quota is None:  # with a quota, refused calls answer at once: no answer time to read
        figures["post_lag_ms"] = post_lag(answered, list(finished.values())) * 1000
        spent = after.cpu_seconds - answers_due["usage"].cpu_seconds
        figures["cpu_after_answers_ms_per_command"] = spent * 1000 / commands
    if idle is not None:
        figures["idle_cpu_ms_per_s"] = idle
    if quota is not None:
        figures["refused_calls"] = quota.refused
        figures["floor_s"] = (commands - 1) * 60 / args.quota + latency
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", "-n", type=int, default=50)
    parser.add_argument("--latency", type=float, default=2.0, help="provider seconds per call")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES)
    )
    parser.add_argument("--quota", type=float, help="the provider's requests per minute")
    parser.add_argument("--idle", type=float, help="first measure S idle seconds' CPU")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; medians printed")
    args = parser.parse_args()
    quota = f", quota {args.quota:g}/min" if args.quota else ""
    print(f"{args.commands} concurrent commands, provider latency {args.latency:g} s{quota}")
    modes = args.modes.split(",")
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for number, order in enumerate(rounds(modes, args.repeat), 1):
        for mode in order:
            figures = run(mode, args.commands, args.latency, args.timeout, args)
            runs[mode].append(figures)
            if args.repeat > 1:
                print(f"  round {number}: {describe(mode, figures, args)}", flush=True)
    if args.repeat > 1:
        print(f"medians of {args.repeat} rounds:")
    for mode in modes:
        f = {key: statistics.median(r[key] for r in runs[mode]) for key in runs[mode][0]}
        print(describe(mode, f, args), flush=True)
    if "baseline" in runs and len(modes) > 1:
        print("against the baseline of the same round (median of the ratios):")
        for mode in modes:
            if mode != "baseline":
                print(f"{mode:>9}: {against(runs[mode], runs['baseline'])}", flush=True)


def rounds(modes: list[str], repeat: int) -> list[list[str]]:
    """Every round runs each mode once, the order rotated: the machine's drift within a
    session, and the place of a run in it, then weigh on every mode alike."""
    return [modes[r % len(modes) :] + modes[: r % len(modes)] for r in range(repeat)]


def describe(mode: str, f: dict[str, float], args) -> str:
    line = (
        f"{mode:>9}: ack p50 {f['ack_p50_ms']:4.0f} ms, p99 {f['ack_p99_ms']:4.0f} ms; "
        f"all posted in {f['all_posted_s']:5.2f} s; "
        f"CPU {f['cpu_ms_per_command']:5.1f} ms/command; "
        f"peak RSS {f['peak_rss_mb']:4.0f} MB (all processes {f['total_peak_rss_mb']:4.0f} MB)"
    )
    if "post_lag_ms" in f:
        line += (
            f"; posting: the last {f['post_lag_ms']:.0f} ms after the last answer, CPU "
            f"{f['cpu_after_answers_ms_per_command']:.1f} ms/command from the first answer on"
        )
    if "idle_cpu_ms_per_s" in f:
        line += f"; idle {f['idle_cpu_ms_per_s']:.1f} ms CPU a second"
    if f["delivered"] < args.commands:
        line += f"; ONLY {f['delivered']:g} of {args.commands} pictures arrived"
    if "refused_calls" in f:
        ratio = f["all_posted_s"] / f["floor_s"]
        line += f"; refused calls {f['refused_calls']:g}; {ratio:.2f}× the quota's floor"
    return line


def against(runs: list[dict[str, float]], baseline: list[dict[str, float]]) -> str:
    """The targets' three figures as ratios to the baseline's, round by round (1.00 or less
    meets the target): their median and, over several rounds, their range, which says how
    much of a difference the machine's noise alone makes."""

    def ratio(key: str) -> str:
        ratios = [r[key] / b[key] for r, b in zip(runs, baseline, strict=True)]
        spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
        return f"{statistics.median(ratios):.2f}×{spread}"

    return (
        f"ack p99 {ratio('ack_p99_ms')}, all posted {ratio('all_posted_s')}, "
        f"CPU per command {ratio('cpu_ms_per_command')}"
    )


if __name__ == "__main__":
    sys.exit(main())
