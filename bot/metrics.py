"""Prometheus metrics, served at `GET /metrics` by the web process and by every worker.

One registry per process. Under gunicorn with several workers, set PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode) so that /metrics adds up every worker process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

log = logging.getLogger("imagine.metrics")

JOBS = Counter("imagine_jobs", "Jobs finished, by kind and outcome", ["kind", "outcome"])
ACCEPTED = Counter("imagine_jobs_accepted", "Jobs acknowledged and queued, by kind", ["kind"])
REFUSED = Counter("imagine_jobs_refused", "Jobs refused at the door, by reason", ["reason"])
PROVIDER_SECONDS = Histogram(
    "imagine_provider_seconds",
    "Time one provider took to draw a request (including its retries)",
    ["provider", "outcome"],
    buckets=(0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90, 120, 180, 300),
)
THROTTLED = Counter(
    "imagine_provider_throttled_calls",
    "Provider calls refused with 429 (quota or rate limit)",
    ["provider"],
)
QUOTA_WAIT = Histogram(
    "imagine_quota_wait_seconds",
    "Time a call waited for its turn under the provider's quota",
    ["provider"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
QUEUE_DEPTH = Gauge("imagine_queue_depth", "Jobs accepted and not yet finished", ["runner"])
WAITING_CALLS = Gauge(
    "imagine_quota_waiting_calls", "Provider calls waiting for their turn", ["provider"]
)


def watch(gauge: Gauge, labels: Iterable[str], read: Callable[[], float]) -> None:
    """Read a gauge's value when it is scraped (a queue's length, say) instead of tracking it."""

    def safely() -> float:
        try:
            return float(read())
        except Exception:  # a scrape must not fail because Redis blinked
            return float("nan")

    gauge.labels(*labels).set_function(safely)


def registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)
        return combined
    return REGISTRY


def exposition() -> tuple[bytes, str]:
    """The text format body and its content type."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def serve(port: int) -> bool:
    """Serve /metrics on `port` from a background thread; False (logged) when it cannot bind."""
    try:
        start_http_server(port, registry=registry())
    except OSError as err:
        log.warning("metrics: cannot listen on port %s (%s); /metrics is off here", port, err)
        return False
    return True
