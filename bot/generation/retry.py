"""Bounded retry waits shared by providers that do their own HTTP (the openai SDK has its own)."""

from __future__ import annotations

import random
from collections.abc import Mapping

from bot.config import RetryConfig


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The server's requested wait, from `retry-after-ms` or `retry-after` (seconds)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue  # an HTTP date: fall back to our own backoff
    return None


def next_wait(attempt: int, retry_after: float | None, config: RetryConfig) -> float | None:
    """Seconds to wait before retry number `attempt` (0-based), or None to give up.

    We honour the server's `retry-after` when it gives one; otherwise back off exponentially
    with jitter. A wait longer than `config.max_wait` is not worth holding a Slack request
    for, so we give up and tell the person when to try again instead.
    """
    if attempt >= config.max_retries:
        return None
    if retry_after is not None:
        wait = retry_after
    else:
        wait = config.backoff * (2**attempt) * (0.5 + random.random() / 2)
    return wait if wait <= config.max_wait else None
