"""One JSON line per event, so logs can be searched by request id, user or outcome.

Callers pass only safe fields: ids, names, timings, outcomes — never tokens, keys or image
URLs (signed URLs carry signatures).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any


def log_event(logger: logging.Logger, event: str, **fields: Any) -> None:
    logger.info(json.dumps({"event": event, **fields}, default=str, ensure_ascii=False))


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
