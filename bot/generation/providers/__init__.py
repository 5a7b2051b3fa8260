"""The provider registry: one entry per provider family.

Adding a provider is one module with an `ImageProvider` subclass and one line in
`PROVIDER_CLASSES`; the service, the command line and the Slack layer pick it up by name.
"""

from __future__ import annotations

from bot.config import Config
from bot.generation.providers.base import ImageProvider
from bot.generation.providers.google import GoogleImageProvider
from bot.generation.providers.openai import OpenAIImageProvider

PROVIDER_CLASSES: tuple[type[ImageProvider], ...] = (GoogleImageProvider, OpenAIImageProvider)


def build_providers(config: Config) -> dict[str, ImageProvider]:
    """One instance per provider, by canonical name, in registry order."""
    return {cls.name: cls.from_config(config) for cls in PROVIDER_CLASSES}


def resolve_provider_name(word: str) -> str | None:
    """The canonical name for a provider name or alias (case-insensitive), else None."""
    word = word.strip().lower()
    for cls in PROVIDER_CLASSES:
        if word == cls.name or word in cls.aliases:
            return cls.name
    return None


__all__ = ["ImageProvider", "PROVIDER_CLASSES", "build_providers", "resolve_provider_name"]
