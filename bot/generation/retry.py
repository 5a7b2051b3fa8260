"""Retry waits shared by the providers: honour the server's Retry-After, else back off with
jitter; a refused call (429) within a job is retried until the job's deadline."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping

from bot.config import RetryConfig
from bot.generation.pacing import current_turn

LAST_TRY = 0.5  # seconds before a job's deadline that its last retry starts


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


def backoff(attempt: int, config: RetryConfig) -> float:
    """Exponential backoff with jitter (Vertex AI sends no Retry-After), at most max_wait."""
    step = min(config.max_wait, config.backoff * (2 ** min(attempt, 16)))
    return step * (0.5 + random.random() / 2)


def next_wait(
    attempt: int, retry_after: float | None, config: RetryConfig, *, throttled: bool = False
) -> float | None:
    """Seconds to wait before retry number `attempt` (0-based), or None to give up.

    `throttled` (a 429): within a job, the call is retried until the job's deadline, because
    a quota frees up within a minute and people would rather wait than type the command
    again; each retry waits its turn at the pacer again. Otherwise (other failures, or no job
    around the call) we retry `max_retries` times and give up on a wait beyond `max_wait`.
    """
    wait = retry_after if retry_after is not None else backoff(attempt, config)
    turn = current_turn.get()
    if throttled and turn is not None:
        remaining = turn.deadline - time.time()
        if retry_after is not None:  # the provider said when: earlier is futile, later too late
            return wait if wait < remaining else None
        # our own backoff: one more try just before the deadline rather than giving up early
        return min(wait, remaining - LAST_TRY) if remaining > LAST_TRY else None
    if attempt >= config.max_retries:
        return None
    return wait if wait <= config.max_wait else None
