"""Shared fixtures: the Slack harness's `fake_slack` and `start_app`."""

from tests.slack_harness import fake_slack, start_app  # noqa: F401  (pytest fixtures)
