"""Which providers draw a request: one rule for every front end (Slack, the command line).

A plain prompt (no provider named) follows, in order: the person's own default (chosen in App
Home), else `IMAGINE_DEFAULT_PROVIDER`, else `auto` when two providers are configured. `auto`
lets the votes decide: a blind comparison until the leaderboard has a clear leader, then the
leader alone, with the reason shown on the post.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.generation.providers import resolve_provider_name
from bot.generation.service import GenerationService
from bot.generation.types import ConfigurationError, ImagineError
from bot.votes.db import VoteStore
from bot.votes.leaderboard import Leaderboard
from bot.votes.ratings import DEFAULT_MIN_VOTES, ModelStats

log = logging.getLogger("imagine.choice")

COMPARE = "compare"
AUTO = "auto"


@dataclass(frozen=True)
class Choice:
    """The providers for one request, and why when it is not what the person named."""

    providers: tuple[str, ...]
    why: str | None = None


class TeamFavourite:
    """The votes' verdict on the configured models, kept `refresh` seconds: a plain prompt is
    chosen before Slack is answered, so the fit must not run for every command. Thread-safe."""

    def __init__(
        self,
        leaderboard: Leaderboard,
        min_votes: int = DEFAULT_MIN_VOTES,
        refresh: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leaderboard = leaderboard
        self.min_votes = min_votes
        self.refresh = refresh
        self.clock = clock
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, ...], tuple[float, tuple[ModelStats, ...]]] = {}

    def __call__(self, models: list[str]) -> tuple[ModelStats, ...]:
        """(leader, runner-up) when one is clear, else (); () when the votes can't be read."""
        key = tuple(sorted(models))
        now = self.clock()
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and now - kept[0] < self.refresh:
            return kept[1]
        try:
            verdict = self.leaderboard.favourite(list(key), self.min_votes)
        except Exception as err:  # no votes to go by: a comparison, which collects some
            log.warning("could not read the votes for auto (%s)", type(err).__name__)
            return ()
        with self._lock:
            self._kept[key] = (now, verdict)
        return verdict


class ProviderChoice:
    """`IMAGINE_DEFAULT_PROVIDER`, each person's default and the configured providers -> the
    providers to run.

    Named provider: that one. `compare`: every configured provider (two at least). Nothing
    named: see the module's docstring. Without a vote store (`store=None`) nobody has a
    default of their own and `auto` compares.
    """

    def __init__(
        self,
        service: GenerationService,
        default_provider: str | None,
        *,
        store: VoteStore | None = None,
        favourite: TeamFavourite | None = None,
    ) -> None:
        self.service = service
        self.default = (default_provider or "").strip().lower() or None
        self.store = store
        self.favourite = favourite
        if favourite is None and store is not None:
            self.favourite = TeamFavourite(Leaderboard(store))

    def default_name(self) -> str | None:
        """The team's default for a bare prompt: a provider name, "compare", "auto", or None
        (nothing configured)."""
        if self.default:
            if self.default in (COMPARE, AUTO):
                return self.default
            return resolve_provider_name(self.default)
        configured = self.service.configured_providers()
        return AUTO if len(configured) > 1 else next(iter(configured), None)

    def own_default(self, user_id: str | None) -> str | None:
        """The person's saved default; None when they have none or it cannot be read."""
        if self.store is None or not user_id:
            return None
        try:
            return self.store.preference(user_id)
        except Exception as err:  # the team's default then: a picture beats a refusal
            log.warning("could not read the default of %s (%s)", user_id, type(err).__name__)
            return None

    def for_prompt(self, user_id: str | None = None) -> Choice:
        """The providers for a prompt that names none. ConfigurationError when none fit."""
        own = self.own_default(user_id)
        configured = self.service.configured_providers()
        if own is not None and (own in (COMPARE, AUTO) or own in configured):
            try:
                return self._resolve(own, own=True)
            except ImagineError:  # compare with one provider left: the team's default
                pass
        if self.default and self.default not in (COMPARE, AUTO):
            return Choice(self.choose(self.default))  # an unknown name is reported there
        default = self.default_name()
        if default is None:
            raise ConfigurationError(
                "No image provider is configured yet: an admin can run `python -m bot check`."
            )
        return self._resolve(default)

    def _resolve(self, name: str, *, own: bool = False) -> Choice:
        if name == COMPARE:
            return Choice(self.choose(compare=True))
        if name != AUTO:
            return Choice(self.choose(name), "your default in App Home" if own else None)
        configured = self.service.configured_providers()
        if len(configured) < 2:
            return Choice(self.choose(configured[0])) if configured else self._resolve(COMPARE)
        models = {self.service.providers[p].model: p for p in configured}
        verdict = self.favourite(list(models)) if self.favourite and len(models) > 1 else ()
        if not verdict:
            return Choice(tuple(configured))
        leader, runner_up = verdict
        return Choice(
            (models[leader.model],),
            f"the team's favourite, {leader.rating:,.0f} vs {runner_up.rating:,.0f}",
        )

    def choose(self, named: str | None = None, *, compare: bool = False) -> tuple[str, ...]:
        """The providers for one request; ConfigurationError says what to set up when none fit."""
        if not compare and named is None:
            return self.for_prompt().providers
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
