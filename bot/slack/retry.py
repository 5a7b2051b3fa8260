"""Slack's 5xx and 429 answers, retried until the job's deadline.

A picture that was drawn and paid for is worth waiting for: one failing answer from Slack, or
a run of 429s, must not drop it. slack_sdk retries through the `RetryHandler`s attached to a
client (`WebClient`, `WebhookClient`); `SlackRetries` is one: a 5xx after a jittered
exponential backoff, a 429 after its `Retry-After`, as long as the wait ends before the
deadline of the job being posted (`within(job.deadline)` says which, per thread), or, outside
a job, within `budget` seconds of the first attempt. A wait that would end past it is not
started: the caller learns at once and can tell the person.

The bytes POSTed to the upload URL (step 2 of an upload) bypass slack_sdk's retry loop;
`SlackWebClient` runs that step through the client's handlers too. A call that must not be
carried out twice, and has no idempotency key, runs inside `no_blind_retries()`: Slack may
have carried it out before its 5xx, or before the connection was lost, so its caller looks
before it tries again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.error import HTTPError, URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackRequestError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

SERVER_ERRORS = frozenset({500, 502, 503, 504})
DEFAULT_BUDGET = 60.0  # seconds of retrying for a call made outside a job (a listener's)

_deadline: ContextVar[float | None] = ContextVar("slack_deadline", default=None)
_no_blind_retries: ContextVar[bool] = ContextVar("slack_no_blind_retries", default=False)


@contextmanager
def within(deadline: float | None) -> Iterator[None]:
    """Slack calls made in this block (this thread) may be retried until `deadline` (epoch
    seconds); None or 0: the default budget."""
    token = _deadline.set(deadline or None)
    try:
        yield
    finally:
        _deadline.reset(token)


@contextmanager
def no_blind_retries() -> Iterator[None]:
    """Slack's 5xx answers and lost connections, for calls made in this block, are raised at
    once, not retried: the caller finds out whether the call went through before it makes it
    again. (A 429 is retried: Slack did nothing.)"""
    token = _no_blind_retries.set(True)
    try:
        yield
    finally:
        _no_blind_retries.reset(token)


class SlackRetries(RetryHandler):
    """5xx with backoff, 429 after Retry-After, until the deadline. Stateless: one instance
    serves every thread (each request's progress is in its `RetryState`)."""

    def __init__(
        self, backoff: float = 1.0, max_backoff: float = 30.0, budget: float = DEFAULT_BUDGET
    ) -> None:
        super().__init__(max_retry_count=1_000)  # the deadline decides, not a count
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.budget = budget

    def can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None:
            return False
        status = response.status_code
        if status in SERVER_ERRORS and _no_blind_retries.get():
            return False
        values = state.custom_values = state.custom_values or {}
        started = values.setdefault("started", time.time())
        wait = self.wait(status, state.current_attempt, started, _retry_after(response))
        if wait is None:
            return False
        values["wait"] = wait
        return True

    def wait(
        self, status: int, attempt: int, started: float, retry_after: float = 1.0
    ) -> float | None:
        """Seconds to wait before trying again a call first made at `started` (epoch) and
        answered `status` on its try number `attempt` (from 0); None: not to be tried again
        (not a 5xx or 429, or the wait would end past the deadline)."""
        if status == 429:
            wait = retry_after + random.uniform(0, 0.25)
        elif status in SERVER_ERRORS:
            return self.backoff_wait(attempt, started)
        else:
            return None
        return self._before_deadline(wait, started)

    def backoff_wait(self, attempt: int, started: float) -> float | None:
        """The jittered exponential backoff before try number `attempt` + 1 (a 5xx, a lost
        connection); None when it would end past the deadline."""
        step = min(self.max_backoff, self.backoff * 2**attempt)
        return self._before_deadline(step * random.uniform(0.5, 1.0), started)

    def _before_deadline(self, wait: float, started: float) -> float | None:
        deadline = _deadline.get() or started + self.budget
        return None if time.time() + wait >= deadline else wait

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        time.sleep((state.custom_values or {}).get("wait", self.backoff))
        state.increment_current_attempt()


def _retry_after(response: HttpResponse) -> float:
    for name, value in (response.headers or {}).items():
        if name.lower() == "retry-after":
            text = value[0] if isinstance(value, list | tuple) else value
            try:
                return max(0.0, float(text))
            except (TypeError, ValueError):
                break
    return 1.0  # Slack always sends one; just in case


class ConnectionRetries(ConnectionErrorRetryHandler):
    """slack_sdk's retry of a lost connection (once), except inside `no_blind_retries()`."""

    def _can_retry(self, **kwargs: Any) -> bool:
        return not _no_blind_retries.get() and super()._can_retry(**kwargs)


def retry_handlers(backoff: float, max_backoff: float) -> list[RetryHandler]:
    """What a Slack client retries: a lost connection once (slack_sdk's default), Slack's
    5xx and 429 until the deadline."""
    return [ConnectionRetries(), SlackRetries(backoff, max_backoff)]


class SlackWebClient(WebClient):
    """A WebClient whose upload step (the bytes POSTed to the URL that
    files.getUploadURLExternal gave) is retried by the client's handlers like every other
    call (slack_sdk sends it once), and can be called on its own: `files_upload_v2` runs the
    three steps in one call, so its caller learns the file ids only once the file is shared,
    too late for buttons in the same message to name them."""

    @property
    def retries(self) -> SlackRetries:
        """The client's 5xx and 429 policy (a default one when it was built without)."""
        found = (h for h in self.retry_handlers if isinstance(h, SlackRetries))
        return next(found, None) or SlackRetries()

    def upload_bytes(self, url: str, data: bytes) -> None:
        """Step 2 of an upload: `data` POSTed to the `upload_url` of step 1."""
        result = self._upload_file(
            url=url,
            data=data,
            logger=self.logger,
            timeout=self.timeout,
            proxy=self.proxy,
            ssl=self.ssl,
        )
        if result.status != 200:
            raise SlackRequestError(f"Slack did not take the file's bytes (HTTP {result.status})")

    def _upload_file(self, *, url: str, data: bytes, **options: Any) -> Any:
        request = HttpRequest(method="POST", url=url, headers={}, data=data)
        state = RetryState()
        while True:
            state.next_attempt_requested = False
            response: HttpResponse | None = None
            error: Exception | None = None
            try:
                result = super()._upload_file(url=url, data=data, **options)
                if result.status == 200:
                    return result
                response = HttpResponse(status_code=result.status, headers={}, data=b"")
            except HTTPError as err:
                error = err
                headers = {k: [v] for k, v in err.headers.items()} if err.headers else {}
                response = HttpResponse(status_code=err.code, headers=headers, data=b"")
            except (URLError, ConnectionError) as err:
                error = err
            for handler in self.retry_handlers:
                if handler.can_retry(state=state, request=request, response=response, error=error):
                    handler.prepare_for_next_attempt(
                        state=state, request=request, response=response, error=error
                    )
                    break
            if not state.next_attempt_requested:
                if error is not None:
                    raise error
                return result
