"""`.env.example` names every setting there is, so a newcomer's copy cannot fall behind."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from bot import config
from bot.config import Config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / ".env.example"
SECRET_NAME = re.compile(r"(TOKEN|SECRET|KEY|JSON|PASSWORD)$")


class RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers every name the config asks it for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def get(self, name: str, default=None):  # type: ignore[override]
        self.asked.add(name)
        return default

    def __contains__(self, name: object) -> bool:
        self.asked.add(str(name))
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def settings_config_reads() -> set[str]:
    """Every variable `Config.from_env` asks for, plus every setting-like name in config.py
    (a setting read only in some branch still has its name written there; values such as
    "DEBUG" have no underscore)."""
    env = RecordingEnv()
    Config.from_env(env)
    source = ast.parse(Path(config.__file__).read_text())
    written = {
        node.value
        for node in ast.walk(source)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)+", node.value)  # NAME_LIKE_THIS
    }
    return env.asked | written


def example_lines() -> dict[str, str]:
    """Name -> the line naming it, whether it is set (`NAME=`) or shown off (`# NAME=`)."""
    named = {}
    for line in EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            named.setdefault(match[1], line)
    return named


def readme_settings() -> set[str]:
    """The variables in the first column of the README's Settings table."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1]))
    return names


def test_config_reads_the_settings_we_expect_it_to():
    read = settings_config_reads()
    assert {"SLACK_BOT_TOKEN", "AZURE_OPENAI_TOKEN_HEADER", "VOTE_EMOJI_TIE", "PORT"} <= read


def test_env_example_names_every_setting_config_reads():
    missing = sorted(settings_config_reads() - example_lines().keys())
    assert not missing, f".env.example does not mention {', '.join(missing)}"


def test_env_example_names_every_setting_the_readme_documents():
    names = readme_settings()
    assert len(names) > 40  # the table was found
    missing = sorted(names - example_lines().keys())
    assert not missing, f".env.example does not mention {', '.join(missing)}"


def test_env_example_holds_no_secret_values():
    for name, line in example_lines().items():
        if SECRET_NAME.search(name) and not line.startswith("#"):
            assert line == f"{name}=", f"{name} has a value in .env.example"


def test_env_example_loads_as_an_unconfigured_app():
    """Copied as it is, it parses and configures nothing (empty values count as unset)."""
    from dotenv import dotenv_values

    values = {k: v for k, v in dotenv_values(EXAMPLE).items() if v is not None}
    loaded = Config.from_env(values)
    assert loaded == Config.from_env({})
