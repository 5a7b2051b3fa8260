"""Secrets never reach the log, even at DEBUG where libraries log request headers and URLs."""

import logging
import subprocess
import sys

import pytest

from bot.logs import redact

SECRETS = [
    ("Authorization: Bearer ya29.a0AfB_byC-secret-token", "ya29.a0AfB_byC-secret-token"),
    ("headers: {'Authorization': 'Bearer xoxb-1-2-secret'}", "xoxb-1-2-secret"),
    ("token=xapp-1-A1-secret", "xapp-1-A1-secret"),
    ("GET /img.png?se=2026-11-28&sp=r&sig=abc%2Fdef%3D HTTP/1.1", "abc%2Fdef%3D"),
    ("https://gcs/x.png?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=deadbeef", "deadbeef"),
    ("{'api-key': 'azure-key-123'}", "azure-key-123"),
    ("Authorization: Basic aW1hZ2luZTpzZWNyZXQ=", "aW1hZ2luZTpzZWNyZXQ="),
    ("key sk-proj-abcdefghijkl in text", "sk-proj-abcdefghijkl"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----", "MIIEvQIBADANBg"),
]


@pytest.mark.parametrize(("line", "secret"), SECRETS)
def test_redact(line, secret):
    assert secret not in redact(line)


def test_ordinary_text_is_left_alone():
    line = '{"event": "generation", "provider": "imagen", "latency_s": 1.2, "outcome": "ok"}'
    assert redact(line) == line


def test_debug_logging_redacts_library_output():
    script = (
        "import logging; from bot.logs import configure_logging; configure_logging('DEBUG');"
        "logging.getLogger('slack_sdk.web.base_client').debug("
        "\"Sending a request - headers: {'Authorization': 'Bearer xoxb-9-9-leak'}\");"
        "logging.getLogger('urllib3').debug('GET /a.png?sig=leaky-signature HTTP/1.1')"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "Sending a request" in run.stderr and "GET /a.png" in run.stderr
    assert "xoxb-9-9-leak" not in run.stderr and "leaky-signature" not in run.stderr
    assert logging.getLogger().level != logging.DEBUG  # nothing leaked into this process


@pytest.mark.parametrize(("level", "debug_lines"), [("INFO", False), ("DEBUG", True)])
def test_slack_sdk_formats_its_debug_lines_only_when_debug_is_on(level, debug_lines):
    """slack_sdk builds a debug line for every call when its logger's own level is unset;
    below DEBUG it must not, at DEBUG it must (and they are redacted, above)."""
    script = (
        "import logging; from bot.logs import configure_logging;"
        f"configure_logging('{level}'); from slack_sdk import WebClient;"
        "print(WebClient()._logger.level <= logging.DEBUG)"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.stdout.strip() == str(debug_lines), run.stderr
