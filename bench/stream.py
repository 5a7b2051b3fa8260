"""Streaming previews: time to the first preview and to the finished picture in the channel.

Starts the fake Slack, the fake Azure OpenAI (a gpt-image-2 deployment whose every picture
takes `--latency` seconds, its `--previews` previews streamed evenly over that time), the GCS
emulator (previews are linked from the bucket) and `python -m bot serve`, exactly as the
end-to-end tests do; then sends `--repeat` signed `/imagine dalle3 ...` commands one after
another and reads, from what the fake Slack received, when the first preview was posted
(`chat.postMessage`) and when the finished picture replaced it (`chat.update`), counted from
the moment the command was sent. The same run with `OPENAI_PARTIAL_IMAGES=0` (a plain call)
gives the time to the picture without previews.

    python -m bench.stream --latency 3 --previews 2 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import ExitStack

from bench.load import app_env, fakes
from tests.fakes.gcs import GcsFront, start_gcs_emulator
from tests.fakes.service_account import ServiceAccount
from tests.fakes.slack import FakeSlack
from tests.slack_harness import AppProcess

RATE_HINT = "to rate this model"


def carrying(slack: FakeSlack, method: str, prompt: str, final: bool) -> list[float]:
    """When the fake Slack received `method` calls about `prompt` (final picture or preview)."""
    found = []
    for request in slack.calls(f"/api/{method}"):
        text = json.dumps(request.form() if b"=" in request.body[:40] else request.json())
        if prompt in text and (RATE_HINT in text) == final:
            found.append(request.at)
    return found


def measure(previews: int, latency: float, repeat: int) -> list[tuple[float | None, float]]:
    """(first preview, finished picture) seconds after sending, per command."""
    server, emulator_url = start_gcs_emulator("imgs")
    try:
        with ExitStack() as stack:
            slack, openai = fakes(stack, latency)
            gcs = stack.enter_context(GcsFront(emulator_url))
            account = ServiceAccount()  # signs the pictures' URLs
            env = app_env(slack, openai) | {
                "OPENAI_PARTIAL_IMAGES": str(previews),
                "GCS_BUCKET": "imgs",
                "STORAGE_EMULATOR_HOST": gcs.url,
                "GOOGLE_CLOUD_PROJECT": account.project_id,
                "GOOGLE_SERVICE_ACCOUNT_JSON": account.json,
            }
            web = stack.enter_context(AppProcess(env))
            figures = []
            for i in range(repeat + 1):  # the first one warms up (imports, connections)
                prompt = f"bench stream {i}"
                sent = time.monotonic()
                status, _, _ = web.post_command(
                    f"dalle3 {prompt}", response_url=slack.response_url()
                )
                if status != 200:
                    raise RuntimeError(f"ack status {status}")
                method = "chat.update" if previews else "chat.postMessage"
                done = slack.wait_for(
                    lambda m=method, p=prompt: carrying(slack, m, p, True), timeout=60
                )
                first = carrying(slack, "chat.postMessage", prompt, False)
                if i:
                    figures.append((first[0] - sent if first else None, done[0] - sent))
            return figures
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=3.0, help="provider seconds per picture")
    parser.add_argument("--previews", type=int, default=2, help="OPENAI_PARTIAL_IMAGES, 1-3")
    parser.add_argument("--repeat", type=int, default=5, help="commands measured; medians")
    args = parser.parse_args()
    print(
        f"a {args.latency:g} s provider, {args.previews} previews, {args.repeat} commands",
        flush=True,
    )
    streamed = measure(args.previews, args.latency, args.repeat)
    plain = measure(0, args.latency, args.repeat)
    firsts = [f for f, _ in streamed if f is not None]
    if len(firsts) < len(streamed):
        print(f"  NO PREVIEW for {len(streamed) - len(firsts)} of {len(streamed)} commands")
    if firsts:
        print(
            f"  first preview in the channel: p50 {statistics.median(firsts):.2f} s "
            f"(min {min(firsts):.2f}, max {max(firsts):.2f})"
        )
    finals = [d for _, d in streamed]
    print(
        f"  finished picture in its place: p50 {statistics.median(finals):.2f} s "
        f"(min {min(finals):.2f}, max {max(finals):.2f})"
    )
    without = [d for _, d in plain]
    print(
        f"  without previews (OPENAI_PARTIAL_IMAGES=0), the picture: p50 "
        f"{statistics.median(without):.2f} s (min {min(without):.2f}, max {max(without):.2f})"
    )


if __name__ == "__main__":
    sys.exit(main())
