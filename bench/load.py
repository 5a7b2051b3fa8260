"""Load test: N concurrent signed `/imagine` commands against the running app.

Starts the fake Slack and the fake OpenAI images API on 127.0.0.1, starts the app as a real
process in HTTP mode (exactly as the end-to-end tests do), fires N commands at once, and
prints the acknowledgement latency and the end-to-end overhead beyond the provider's own time.

    python -m bench.load --commands 50 --latency 2
    python -m bench.load --commands 200 --latency 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from tests.fakes.openai_images import FakeOpenAIImages
from tests.fakes.slack import FakeSlack
from tests.slack_harness import AppProcess, slack_env


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def run(commands: int, latency: float, timeout: float) -> dict[str, float]:
    with FakeSlack() as slack, FakeOpenAIImages() as openai:
        openai.generation_delay = latency
        env = slack_env(
            slack,
            OPENAI_API_KEY=openai.openai_api_key,
            OPENAI_BASE_URL=openai.url + "/v1",
            LOG_LEVEL="WARNING",
        )
        with AppProcess(env) as app:
            app.post_command("help")  # warm up: imports, first connections
            sent: dict[str, float] = {}
            prompts = [f"bench picture {i}" for i in range(commands)]

            def fire(prompt: str) -> float:
                sent[prompt] = time.monotonic()
                status, _, elapsed = app.post_command(f"dalle3 {prompt}")
                if status != 200:
                    raise RuntimeError(f"ack status {status}")
                return elapsed

            with ThreadPoolExecutor(min(commands, 256)) as pool:
                acks = list(pool.map(fire, prompts))
            slack.wait_for(lambda: len(slack.uploaded_files) >= commands, timeout=timeout)
            done = {
                call.form().get("initial_comment", "").split("*")[1]: call.at
                for call in slack.calls("/api/files.completeUploadExternal")
            }
    overhead = [done[p] - sent[p] - latency for p in prompts]
    return {
        "ack_p50_ms": percentile(acks, 50) * 1000,
        "ack_p99_ms": percentile(acks, 99) * 1000,
        "ack_max_ms": max(acks) * 1000,
        "overhead_p50_s": percentile(overhead, 50),
        "overhead_p99_s": percentile(overhead, 99),
        "wall_s": max(done.values()) - min(sent.values()),
        "mean_ack_ms": statistics.fmean(acks) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", "-n", type=int, default=50)
    parser.add_argument("--latency", type=float, default=2.0, help="provider seconds per call")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    figures = run(args.commands, args.latency, args.timeout)
    print(
        f"{args.commands} concurrent commands, provider latency {args.latency:g} s: "
        f"ack p50 {figures['ack_p50_ms']:.0f} ms, p99 {figures['ack_p99_ms']:.0f} ms, "
        f"max {figures['ack_max_ms']:.0f} ms; end-to-end overhead beyond the provider "
        f"p50 {figures['overhead_p50_s']:.2f} s, p99 {figures['overhead_p99_s']:.2f} s; "
        f"all done in {figures['wall_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
