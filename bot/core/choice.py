"""Which providers draw a request: one rule for every front end (Slack, the command line)."""

from __future__ import annotations

from bot.generation.providers import resolve_provider_name
from bot.generation.service import GenerationService
from bot.generation.types import ConfigurationError

COMPARE = "compare"


class ProviderChoice:
    """`IMAGINE_DEFAULT_PROVIDER` and the configured providers -> the providers to run.

    Named provider: that one. `compare`: every configured provider (two at least). Nothing
    named: the default provider; without one, a comparison when two are configured, else the
    only configured one.
    """

    def __init__(self, service: GenerationService, default_provider: str | None) -> None:
        self.service = service
        self.default = (default_provider or "").strip().lower() or None

    def default_name(self) -> str | None:
        """What a bare prompt does: a provider name, "compare", or None (nothing configured)."""
        if self.default:
            return COMPARE if self.default == COMPARE else resolve_provider_name(self.default)
        configured = self.service.configured_providers()
        return COMPARE if len(configured) > 1 else next(iter(configured), None)

    def choose(self, named: str | None = None, *, compare: bool = False) -> tuple[str, ...]:
        """The providers for one request; ConfigurationError says what to set up when none fit."""
        if not compare and named is None:
            if self.default:  # an unknown name is reported by `service.provider` below
                compare, named = self.default == COMPARE, self.default
            else:
                default = self.default_name()
                if default is None:
                    raise ConfigurationError(
                        "No image provider is configured yet: an admin can run "
                        "`python -m bot check`."
                    )
                compare, named = default == COMPARE, default
        if compare:
            configured = self.service.configured_providers()
            if len(configured) < 2:
                here = f"only {configured[0]} is" if configured else "none is"
                raise ConfigurationError(
                    f"Comparing needs two configured providers; {here} set up here "
                    "(see `/imagine help`)."
                )
            return tuple(configured)
        return (self.service.provider(named or "").name,)
