"""One JSON line per event, so logs can be searched by request id, user or outcome.

Callers pass only safe fields: ids, names, timings, outcomes; never tokens, keys or image
URLs. As a second line of defence every record passes through `redact`, because libraries
log more than we do at DEBUG (slack_sdk logs request headers, urllib3 logs signed URLs).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

_SECRETS = (
    re.compile(r"\b(xox[abposr]|xapp)-[\w-]+"),  # Slack tokens
    re.compile(r"\bsk-[\w-]{8,}"),  # OpenAI keys
    re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]{8,}"),  # Authorization headers
    re.compile(
        r"(?i)(['\"]?(?:api-key|x-goog-api-key|authorization)['\"]?\s*[:=]\s*['\"]?)[^'\",\s}]+"
    ),
    re.compile(r"(?i)([?&](?:x-goog-signature|signature|sig|token|key|access_token)=)[^&\s'\"]+"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
)


QUIET_AT_INFO = ("httpx", "httpx2", "httpcore", "httpcore2")
SLACK_SDK_CLIENT_LOGGER = "slack_sdk.web.base_client"


def redact(text: str) -> str:
    """Replace anything that looks like a credential or a URL signature with `***`."""
    for pattern in _SECRETS:
        if pattern.groups:
            text = pattern.sub(lambda m: (m.group(1) if m.group(1) else "") + "***", text)
        else:
            text = pattern.sub("***", text)
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def log_event(logger: logging.Logger, event: str, **fields: Any) -> None:
    if logger.isEnabledFor(logging.INFO):  # no JSON built for a line nobody keeps
        logger.info(json.dumps({"event": event, **fields}, default=str, ensure_ascii=False))


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # the HTTP clients log every request at INFO; our own lines already say what happened
        for name in QUIET_AT_INFO:
            logging.getLogger(name).setLevel(logging.WARNING)
    # slack_sdk's WebClient formats every request and response into a debug line whenever its
    # logger's own level is unset (it reads `logger.level`, not the effective level): about 4 %
    # of each call's CPU. Its own level, set, skips that unless LOG_LEVEL=DEBUG.
    logging.getLogger(SLACK_SDK_CLIENT_LOGGER).setLevel(logging.getLogger().getEffectiveLevel())
