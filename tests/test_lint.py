"""CI runs `ruff check`: so does the suite, on the whole repository, showing ruff's findings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_passes_on_the_repository() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, f"`ruff check .` found problems:\n{report}"
