"""The provider choice for a plain prompt: the person's own default, the team's setting, and
`auto`, where the votes decide (a blind comparison until a clear leader)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.config import Config, SettingError
from bot.core.choice import ProviderChoice, TeamFavourite
from bot.generation.service import GenerationService
from bot.votes.db import ModelRef, VoteStore
from bot.votes.leaderboard import Leaderboard
from bot.wiring import build_choice
from tests.seed import seed_comparison

BOTH = {"GOOGLE_CLOUD_PROJECT": "p", "OPENAI_API_KEY": "sk-test-key-123456"}


@pytest.fixture
def store(tmp_path) -> Iterator[VoteStore]:
    store = VoteStore(f"sqlite:///{tmp_path / 'votes.db'}")
    store.migrate()
    yield store
    store.close()


def choice_for(store: VoteStore, **env: str) -> tuple[ProviderChoice, dict[str, ModelRef]]:
    config = Config.from_env({**BOTH, "IMAGINE_AUTO_REFRESH_SECONDS": "0", **env})
    service = GenerationService.from_config(config)
    refs = {name: ModelRef(name, p.model) for name, p in service.providers.items()}
    return build_choice(config, service, store), refs


def test_auto_is_the_default_with_two_providers_and_compares_without_votes(store):
    choice, _ = choice_for(store)
    assert choice.default_name() == "auto"
    assert choice.for_prompt("U1").providers == ("imagen", "dalle3")
    assert choice.choose() == ("imagen", "dalle3")  # the CLI's and Slack's one rule


def test_auto_goes_to_a_clear_leader_and_says_why(store):
    choice, refs = choice_for(store)
    seed_comparison(store, refs["dalle3"], refs["imagen"], 14, 12)  # close: no verdict
    assert choice.for_prompt("U1").providers == ("imagen", "dalle3")
    seed_comparison(store, refs["dalle3"], refs["imagen"], 40, 4)
    chosen = choice.for_prompt("U1")
    assert chosen.providers == ("dalle3",)
    assert chosen.why is not None and chosen.why.startswith("the team's favourite, 1,")
    rows = {r.model: r for r in Leaderboard(store).compute().rows}
    leader, other = rows[refs["dalle3"].model], rows[refs["imagen"].model]
    assert chosen.why == f"the team's favourite, {leader.rating:,.0f} vs {other.rating:,.0f}"


def test_votes_on_a_model_no_longer_configured_choose_nothing(store):
    choice, refs = choice_for(store)
    seed_comparison(store, ModelRef("dalle3", "dall-e-2"), refs["imagen"], 40, 2)
    assert choice.for_prompt("U1").providers == ("imagen", "dalle3")


def test_a_persons_own_default_wins_over_the_team(store):
    choice, refs = choice_for(store, IMAGINE_DEFAULT_PROVIDER="compare")
    seed_comparison(store, refs["dalle3"], refs["imagen"], 40, 4)
    store.set_preference("U1", "imagen")
    store.set_preference("U2", "auto")
    assert choice.for_prompt("U1").providers == ("imagen",)
    assert choice.for_prompt("U2").providers == ("dalle3",)  # auto: the votes
    assert choice.for_prompt("U3").providers == ("imagen", "dalle3")  # the team's compare
    store.set_preference("U1", None)
    assert choice.for_prompt("U1").providers == ("imagen", "dalle3")


def test_an_own_default_not_configured_here_falls_back_to_the_team(store):
    choice, _ = choice_for(store, OPENAI_API_KEY="", IMAGINE_DEFAULT_PROVIDER="imagen")
    store.set_preference("U1", "dalle3")
    assert choice.for_prompt("U1").providers == ("imagen",)


def test_an_unreadable_store_compares(tmp_path):
    store = VoteStore(f"sqlite:///{tmp_path / 'never-migrated.db'}")  # no tables at all
    try:
        choice, _ = choice_for(store)
        assert choice.for_prompt("U1").providers == ("imagen", "dalle3")
    finally:
        store.close()


def test_the_favourite_is_kept_for_its_refresh_time(store):
    _, refs = choice_for(store)
    now = [0.0]
    favourite = TeamFavourite(Leaderboard(store), refresh=60, clock=lambda: now[0])
    models = [refs["imagen"].model, refs["dalle3"].model]
    assert favourite(models) == ()
    seed_comparison(store, refs["dalle3"], refs["imagen"], 40, 4)
    now[0] = 59.0
    assert favourite(models) == ()  # kept
    now[0] = 61.0
    assert favourite(models)[0].model == refs["dalle3"].model


@pytest.mark.parametrize("value", ["flux", "automatic"])
def test_a_default_naming_nothing_we_run_stops_the_start(store, value):
    with pytest.raises(SettingError, match=f"IMAGINE_DEFAULT_PROVIDER must be .*not '{value}'"):
        choice_for(store, IMAGINE_DEFAULT_PROVIDER=value)


@pytest.mark.parametrize("value", ["dall-e", "Gemini", "compare", "AUTO"])
def test_aliases_compare_and_auto_are_good_defaults(store, value):
    choice_for(store, IMAGINE_DEFAULT_PROVIDER=value)
