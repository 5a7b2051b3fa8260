"""The `dalle3` provider: the real openai SDK (and requests, for tokens) against the fake."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import requests

from bot.config import Config, OpenAIConfig, RetryConfig
from bot.generation.providers import resolve_provider_name
from bot.generation.providers.oauth_token import ClientCredentialsToken
from bot.generation.providers.openai import OpenAIImageProvider
from bot.generation.types import (
    ConfigurationError,
    ContentPolicyError,
    ImageRequest,
    InvalidRequestError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from tests.fakes._http import Reply
from tests.fakes.openai_images import FakeAzureGateway, FakeOpenAIImages

AZURE_KEY = "azure-key-0123456789abcdef"
OPENAI_KEY = "sk-test-0123456789abcdef"
CLIENT_SECRET = "client-secret-0123456789"
RETRY = RetryConfig(backoff=0.01, max_retries=2, max_wait=5, timeout=5)
GEN = "/images/generations"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIImages]:
    fake = FakeOpenAIImages(
        azure_api_key=AZURE_KEY,
        openai_api_key=OPENAI_KEY,
        client_secret=CLIENT_SECRET,
        deployments={"img": "gpt-image-1", "d3": "dall-e-3", "g2": "gpt-image-2"},
        openai_models={"gpt-image-2", "dall-e-3-hd-preview"},
    )
    with fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAIImages) -> Iterator[FakeOpenAIImages]:
    """One server for the module (stopping one costs 0.5 s), fresh state for every test."""
    server.reset()
    yield server
    server.reset()


def azure(fake: FakeOpenAIImages, **changes: object) -> OpenAIConfig:
    settings = OpenAIConfig(
        azure_endpoint=fake.url,
        azure_api_key=AZURE_KEY,
        azure_deployment="img",
        api_version="2025-04-01-preview",
        model="gpt-image-1",
    )
    return replace(settings, **changes)


def azure_tokens(fake: FakeOpenAIImages, **changes: object) -> OpenAIConfig:
    defaults: dict[str, object] = {
        "azure_api_key": None,
        "azure_token_url": f"{fake.url}/oauth/token",
        "azure_client_id": "imagine-client",
        "azure_client_secret": CLIENT_SECRET,
    }
    return azure(fake, **{**defaults, **changes})


def plain(fake: FakeOpenAIImages, **changes: object) -> OpenAIConfig:
    settings = OpenAIConfig(api_key=OPENAI_KEY, base_url=f"{fake.url}/v1", model="gpt-image-2")
    return replace(settings, **changes)


def provider(settings: OpenAIConfig, retry: RetryConfig = RETRY) -> OpenAIImageProvider:
    return OpenAIImageProvider(settings, retry)


APP_KEY = "app-key-0123456789abcdef"


def assert_no_secrets(text: str) -> None:
    for secret in (AZURE_KEY, OPENAI_KEY, CLIENT_SECRET, APP_KEY, "tok-"):
        assert secret not in text


# -- registry and settings -------------------------------------------------------------------


def test_registered_under_its_name_and_aliases() -> None:
    for word in ("dalle3", "DALLE", "dall-e", "openai", "gpt-image"):
        assert resolve_provider_name(word) == "dalle3"
    assert OpenAIImageProvider.label == "OpenAI"


def test_from_config_picks_azure_or_openai_from_the_environment() -> None:
    azure_env = {
        "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com",
        "AZURE_OPENAI_API_KEY": AZURE_KEY,
        "AZURE_OPENAI_IMAGE_DEPLOYMENT": "img",
        "OPENAI_IMAGE_MODEL": "dall-e-3",
    }
    built = OpenAIImageProvider.from_config(Config.from_env(azure_env))
    assert (built.mode, built.model, built.max_prompt_chars) == ("Azure OpenAI", "dall-e-3", 4000)
    built = OpenAIImageProvider.from_config(Config.from_env({"OPENAI_API_KEY": OPENAI_KEY}))
    assert (built.mode, built.model, built.max_prompt_chars) == ("OpenAI", "gpt-image-2", 32000)


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        (OpenAIConfig(), ["AZURE_OPENAI_ENDPOINT or OPENAI_API_KEY"]),
        (OpenAIConfig(api_key="sk"), []),
        (
            OpenAIConfig(azure_endpoint="https://x"),
            [
                "AZURE_OPENAI_IMAGE_DEPLOYMENT",
                "AZURE_OPENAI_API_KEY (or AZURE_OPENAI_TOKEN_URL, AZURE_OPENAI_CLIENT_ID, "
                "AZURE_OPENAI_CLIENT_SECRET)",
            ],
        ),
        (OpenAIConfig(azure_endpoint="https://x", azure_deployment="d", azure_api_key="k"), []),
        (
            OpenAIConfig(azure_endpoint="https://x", azure_deployment="d", azure_client_id="c"),
            ["AZURE_OPENAI_TOKEN_URL", "AZURE_OPENAI_CLIENT_SECRET"],
        ),
        (
            OpenAIConfig(
                azure_endpoint="https://x",
                azure_deployment="d",
                azure_token_url="https://t",
                azure_client_id="c",
                azure_client_secret="s",
            ),
            [],
        ),
    ],
)
def test_missing_settings(settings: OpenAIConfig, missing: list[str]) -> None:
    assert provider(settings).missing_settings() == missing


def test_unconfigured_provider_names_the_settings_instead_of_calling() -> None:
    with pytest.raises(ConfigurationError) as caught:
        provider(OpenAIConfig()).generate(ImageRequest("a cat"))
    assert "AZURE_OPENAI_ENDPOINT or OPENAI_API_KEY" in caught.value.message


# -- Azure with an API key ---------------------------------------------------------------------


def test_azure_api_key_deployment_path_and_version(fake: FakeOpenAIImages) -> None:
    out = provider(azure(fake)).generate(ImageRequest("a lighthouse at dusk", n=2))
    (call,) = fake.calls(GEN)
    assert call.path == "/openai/deployments/img/images/generations"
    assert call.query == {"api-version": "2025-04-01-preview"}
    assert call.headers["api-key"] == AZURE_KEY
    assert "authorization" not in call.headers
    assert call.json() == {"prompt": "a lighthouse at dusk", "n": 2, "size": "1024x1024"}
    assert out.model == "gpt-image-1"
    assert [image.mime_type for image in out.images] == ["image/png", "image/png"]
    assert all(image.data and image.data.startswith(PNG) for image in out.images)
    assert out.images[0].data != out.images[1].data
    assert out.seconds > 0 and out.notes == []


def test_one_client_serves_concurrent_generations(fake: FakeOpenAIImages) -> None:
    fake.generation_delay = 0.2
    shared = provider(azure(fake))
    with ThreadPoolExecutor(10) as pool:
        outs = list(pool.map(lambda i: shared.generate(ImageRequest(f"cat {i}")), range(10)))
    assert len(outs) == 10 and all(len(out.images) == 1 for out in outs)
    assert fake.max_in_flight >= 5  # the calls overlapped instead of queueing on one client


# -- Azure with OAuth2 client credentials ---------------------------------------------------------


def test_client_credentials_one_token_for_many_generations(fake: FakeOpenAIImages) -> None:
    fake.token_delay = 0.2  # widen the window in which every thread wants the token
    shared = provider(azure_tokens(fake, azure_token_scope="api://imagine/.default"))
    assert fake.token_calls() == []  # nothing fetched before it is needed
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda i: shared.generate(ImageRequest(f"cat {i}")), range(10)))
    for i in range(3):
        shared.generate(ImageRequest(f"dog {i}"))
    (token_call,) = fake.token_calls()
    expected = base64.b64encode(f"imagine-client:{CLIENT_SECRET}".encode()).decode()
    assert token_call.headers["authorization"] == f"Basic {expected}"
    assert token_call.form() == {
        "grant_type": "client_credentials",
        "scope": "api://imagine/.default",
    }
    (token,) = fake.issued_tokens
    generations = fake.calls(GEN)
    assert len(generations) == 13
    assert {c.headers["authorization"] for c in generations} == {f"Bearer {token}"}
    assert all("api-key" not in c.headers for c in generations)


def test_token_cache_fetches_once_for_twenty_threads(fake: FakeOpenAIImages) -> None:
    fake.token_delay = 0.2
    tokens = ClientCredentialsToken(f"{fake.url}/oauth/token", "imagine-client", CLIENT_SECRET)
    barrier = threading.Barrier(20)

    def get(_: int) -> str:
        barrier.wait()
        return tokens.get()

    with ThreadPoolExecutor(20) as pool:
        values = set(pool.map(get, range(20)))
    assert len(fake.token_calls()) == 1 and values == set(fake.issued_tokens)
    assert fake.token_scopes == [None]  # no scope sent when none is configured


def test_short_lived_token_is_renewed_before_it_expires(fake: FakeOpenAIImages) -> None:
    fake.token_lifetime = 1  # renewed 10% (0.1 s) before expiry, not 60 s before
    shared = provider(azure_tokens(fake))
    shared.generate(ImageRequest("a"))
    shared.generate(ImageRequest("b"))
    assert len(fake.token_calls()) == 1
    threading.Event().wait(0.95)
    shared.generate(ImageRequest("c"))
    assert len(fake.token_calls()) == 2


def test_a_401_refreshes_the_token_once_and_succeeds(fake: FakeOpenAIImages) -> None:
    shared = provider(azure_tokens(fake))
    shared.generate(ImageRequest("first"))
    fake.revoke_tokens()  # the gateway stops accepting the cached token
    out = shared.generate(ImageRequest("second"))
    assert len(out.images) == 1
    assert len(fake.token_calls()) == 2
    statuses = [c.headers["authorization"] for c in fake.calls(GEN)]
    assert len(statuses) == 3 and statuses[1] != statuses[2]


def test_a_second_401_after_refresh_names_the_client_credentials(fake: FakeOpenAIImages) -> None:
    shared = provider(azure_tokens(fake))
    fake.script_unauthorized()
    fake.script_unauthorized()
    with pytest.raises(ConfigurationError) as caught:
        shared.generate(ImageRequest("a cat"))
    assert len(fake.token_calls()) == 2 and len(fake.calls(GEN)) == 2  # one refresh only
    message = caught.value.message
    assert "AZURE_OPENAI_CLIENT_ID" in message and "AZURE_OPENAI_CLIENT_SECRET" in message
    assert_no_secrets(message)


def test_token_url_refusing_the_credentials_is_a_configuration_error(
    fake: FakeOpenAIImages,
) -> None:
    shared = provider(azure_tokens(fake, azure_client_secret="wrong-secret-abcdef"))
    with pytest.raises(ConfigurationError) as caught:
        shared.generate(ImageRequest("a cat"))
    message = caught.value.message
    for setting in (
        "AZURE_OPENAI_CLIENT_ID",
        "AZURE_OPENAI_CLIENT_SECRET",
        "AZURE_OPENAI_TOKEN_URL",
    ):
        assert setting in message
    assert "wrong-secret-abcdef" not in message
    assert fake.calls(GEN) == []  # never called the images API without a token


def test_unreachable_token_url_is_reported_as_unavailable(fake: FakeOpenAIImages) -> None:
    shared = provider(azure_tokens(fake, azure_token_url="http://127.0.0.1:9/oauth/token"))
    with pytest.raises(ProviderUnavailableError) as caught:
        shared.generate(ImageRequest("a cat"))
    assert "AZURE_OPENAI_TOKEN_URL" in caught.value.message


# -- a corporate gateway: the token as the API key, the application named in `user` -----------


@pytest.fixture(scope="module")
def gateway_server() -> Iterator[FakeAzureGateway]:
    gateway = FakeAzureGateway(
        app_key=APP_KEY, client_secret=CLIENT_SECRET, deployments={"img": "gpt-image-1"}
    )
    with gateway:
        yield gateway


@pytest.fixture
def gateway(gateway_server: FakeAzureGateway) -> Iterator[FakeAzureGateway]:
    gateway_server.reset()
    yield gateway_server
    gateway_server.reset()


def through_gateway(gateway: FakeAzureGateway, **changes: object) -> OpenAIConfig:
    defaults: dict[str, object] = {"azure_token_header": "api-key", "azure_app_key": APP_KEY}
    return azure_tokens(gateway, **{**defaults, **changes})  # type: ignore[arg-type]


def test_gateway_token_goes_in_as_the_api_key_with_the_app_key_in_user(
    gateway: FakeAzureGateway,
) -> None:
    gateway.token_delay = 0.2  # every thread wants the token at once
    shared = provider(through_gateway(gateway))
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda i: shared.generate(ImageRequest(f"cat {i}")), range(8)))
    assert all(len(out.images) == 1 for out in outs)
    (token,) = gateway.issued_tokens  # fetched once for the process
    calls = gateway.calls(GEN)
    assert len(calls) == 8
    assert {c.headers.get("api-key") for c in calls} == {token}
    assert all("authorization" not in c.headers for c in calls)
    assert {c.json()["user"] for c in calls} == {'{"appkey": "app-key-0123456789abcdef"}'}
    expected = base64.b64encode(f"imagine-client:{CLIENT_SECRET}".encode()).decode()
    assert gateway.token_calls()[0].headers["authorization"] == f"Basic {expected}"


def test_gateway_token_is_renewed_and_refreshed_after_a_401(gateway: FakeAzureGateway) -> None:
    gateway.token_lifetime = 1  # renewed 0.1 s before it expires
    shared = provider(through_gateway(gateway))
    shared.generate(ImageRequest("a"))
    shared.generate(ImageRequest("b"))
    assert len(gateway.token_calls()) == 1
    gateway.token_lifetime = 3600  # the next token lasts
    threading.Event().wait(0.95)
    shared.generate(ImageRequest("c"))
    assert len(gateway.token_calls()) == 2
    shared.generate(ImageRequest("d"))
    gateway.revoke_tokens()  # the gateway stops accepting the cached token
    assert len(shared.generate(ImageRequest("e")).images) == 1
    assert len(gateway.token_calls()) == 3
    keys = [c.headers["api-key"] for c in gateway.calls(GEN)]
    assert keys[-1] == gateway.issued_tokens[-1] != keys[-2]


def test_gateway_refuses_a_bearer_token_and_a_missing_app_key(gateway: FakeAzureGateway) -> None:
    bearer = provider(through_gateway(gateway, azure_token_header="authorization"))
    with pytest.raises(ConfigurationError) as caught:
        bearer.generate(ImageRequest("a cat"))
    assert "AZURE_OPENAI_CLIENT_ID" in caught.value.message
    no_app_key = provider(through_gateway(gateway, azure_app_key=None))
    with pytest.raises(ConfigurationError) as caught:
        no_app_key.generate(ImageRequest("a cat"))
    assert "AZURE_OPENAI_APP_KEY" in caught.value.message
    wrong = provider(through_gateway(gateway, azure_app_key="wrong-app-key-abcdef"))
    with pytest.raises(ConfigurationError) as caught:
        wrong.generate(ImageRequest("a cat"))
    assert "AZURE_OPENAI_APP_KEY" in caught.value.message
    assert "wrong-app-key-abcdef" not in caught.value.message
    assert_no_secrets(caught.value.message)


def test_check_through_the_gateway(gateway: FakeAzureGateway) -> None:
    assert "Azure OpenAI" in provider(through_gateway(gateway)).check()
    (call,) = gateway.calls("/models")
    assert call.headers["api-key"] == gateway.issued_tokens[0]


def test_app_key_is_sent_with_an_api_key_too_and_never_to_openai(fake: FakeOpenAIImages) -> None:
    provider(azure(fake, azure_app_key=APP_KEY)).generate(ImageRequest("a cat"))
    provider(plain(fake, azure_app_key=APP_KEY)).generate(ImageRequest("a cat"))
    azure_call, openai_call = fake.calls(GEN)
    assert json.loads(azure_call.json()["user"]) == {"appkey": APP_KEY}
    assert "user" not in openai_call.json()


# -- plain OpenAI ------------------------------------------------------------------------------


def test_plain_openai_model_in_body_and_bearer_key(fake: FakeOpenAIImages) -> None:
    out = provider(plain(fake)).generate(ImageRequest("a red fox", n=3, aspect_ratio="9:16"))
    (call,) = fake.calls(GEN)
    assert call.path == "/v1/images/generations"
    assert call.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert call.json() == {
        "prompt": "a red fox",
        "model": "gpt-image-2",
        "n": 3,
        "size": "864x1536",  # gpt-image-2 on OpenAI: exactly 9:16
    }
    assert out.model == "gpt-image-2" and len(out.images) == 3
    assert out.notes == []


# -- option mapping ----------------------------------------------------------------------------


def test_gpt_image_option_mapping_and_notes(fake: FakeOpenAIImages) -> None:
    request = ImageRequest(
        "a harbour",
        n=4,
        aspect_ratio="16:9",
        negative_prompt="boats",
        seed=7,
        quality="hd",
        style="vivid",
    )
    out = provider(azure(fake)).generate(request)
    (call,) = fake.calls(GEN)
    assert call.json() == {
        "prompt": "a harbour. Avoid: boats.",
        "n": 4,
        "size": "1536x1024",
        "quality": "high",
    }
    assert len(out.images) == 4
    notes = " | ".join(out.notes)
    for fragment in ("Avoid: boats", "seed 7 was ignored", "drew 1536x1024", "'hd'", "'high'"):
        assert fragment in notes
    assert "style 'vivid' was ignored" in notes


@pytest.mark.parametrize(
    ("aspect", "quality", "size", "sent_quality", "noted"),
    [
        ("1:1", "standard", "1024x1024", "standard", []),
        ("16:9", "hd", "1792x1024", "hd", []),  # 1792x1024 is close enough to 16:9
        ("4:3", "high", "1792x1024", "hd", ["drew 1792x1024", "used 'hd'"]),
        ("3:4", "low", "1024x1792", "standard", ["drew 1024x1792", "used 'standard'"]),
        ("9:16", "medium", "1024x1792", "standard", ["used 'standard'"]),
    ],
)
def test_dalle3_option_mapping(
    fake: FakeOpenAIImages,
    aspect: str,
    quality: str,
    size: str,
    sent_quality: str,
    noted: list[str],
) -> None:
    shared = provider(azure(fake, azure_deployment="d3", model="dall-e-3"))
    request = ImageRequest("a castle!", aspect_ratio=aspect, quality=quality, style="Natural")
    out = shared.generate(request)
    (call,) = fake.calls(GEN)
    assert call.path == "/openai/deployments/d3/images/generations"
    assert call.json() == {
        "prompt": "a castle!",
        "n": 1,
        "size": size,
        "quality": sent_quality,
        "style": "natural",
        "response_format": "url",
    }
    assert len(out.notes) == len(noted)
    for fragment in noted:
        assert any(fragment in note for note in out.notes)


@pytest.mark.parametrize(
    ("model", "request_", "listed"),
    [
        ("dall-e-3", ImageRequest("x", quality="ultra"), "standard, hd"),
        ("dall-e-3", ImageRequest("x", style="pastel"), "vivid, natural"),
        ("gpt-image-1", ImageRequest("x", quality="ultra"), "low, medium, high"),
        ("gpt-image-1", ImageRequest("x", n=5), "1 to 4"),
        ("gpt-image-1", ImageRequest("x", aspect_ratio="2:1"), "1:1"),
        ("dall-e-3", ImageRequest("x" * 3990, negative_prompt="y" * 20), "at most 4000"),
    ],
)
def test_impossible_options_are_rejected_before_any_call(
    fake: FakeOpenAIImages, model: str, request_: ImageRequest, listed: str
) -> None:
    shared = provider(azure(fake, model=model))
    with pytest.raises(InvalidRequestError) as caught:
        shared.validate(request_)
    assert listed in caught.value.message
    with pytest.raises(InvalidRequestError):
        shared.generate(request_)
    assert fake.calls(GEN) == []


@pytest.mark.parametrize(
    ("model", "sent"),
    [("gpt-image-1", {"quality": "auto"}), ("dall-e-3", {})],  # DALL·E 3: its default
)
def test_quality_auto_is_the_apis_default_and_accepted(
    fake: FakeOpenAIImages, model: str, sent: dict[str, str]
) -> None:
    deployment = "d3" if model == "dall-e-3" else "img"
    shared = provider(azure(fake, model=model, azure_deployment=deployment))
    out = shared.generate(ImageRequest("a cat", quality="auto"))
    body = fake.calls(GEN)[0].json()
    assert {k: v for k, v in body.items() if k == "quality"} == sent
    assert len(out.images) == 1 and out.notes == []


@pytest.mark.parametrize(
    ("aspect", "size"),
    [
        ("1:1", "1024x1024"),
        ("16:9", "1536x864"),
        ("9:16", "864x1536"),
        ("4:3", "1536x1152"),
        ("3:4", "1152x1536"),
    ],
)
def test_gpt_image_2_on_openai_draws_exact_aspect_ratios(
    fake: FakeOpenAIImages, aspect: str, size: str
) -> None:
    out = provider(plain(fake)).generate(ImageRequest("a fox", aspect_ratio=aspect))
    assert fake.calls(GEN)[0].json()["size"] == size
    assert len(out.images) == 1 and out.notes == []  # exact: nothing to apologise for
    width, height = (int(side) for side in size.split("x"))
    wanted_w, wanted_h = (int(part) for part in aspect.split(":"))
    assert width * wanted_h == height * wanted_w


def test_gpt_image_2_on_azure_keeps_the_fixed_sizes(fake: FakeOpenAIImages) -> None:
    shared = provider(azure(fake, azure_deployment="g2", model="gpt-image-2"))
    out = shared.generate(ImageRequest("a fox", aspect_ratio="16:9"))
    assert fake.calls(GEN)[0].json()["size"] == "1536x1024"
    assert any("drew 1536x1024" in note for note in out.notes)


@pytest.mark.parametrize(
    ("size", "accepted", "problem"),
    [
        ("1536x864", True, None),
        ("3840x2160", True, None),  # the largest
        ("1024x768", True, None),
        ("auto", True, None),
        ("1000x1000", False, "multiples of 16"),
        ("4096x2304", False, "at most 3840"),
        ("3840x1024", False, "between 1:3 and 3:1"),
        ("512x512", False, "between 655360 and 8294400 pixels"),
        ("3840x2176", False, "between 655360 and 8294400 pixels"),
        ("big", False, "WIDTHxHEIGHT"),
    ],
)
def test_the_fake_takes_the_sizes_openai_takes_for_gpt_image_2(
    fake: FakeOpenAIImages, size: str, accepted: bool, problem: str | None
) -> None:
    answer = requests.post(
        f"{fake.url}/v1/images/generations",
        headers={"authorization": f"Bearer {OPENAI_KEY}"},
        json={"model": "gpt-image-2", "prompt": "a fox", "size": size},
        timeout=5,
    )
    if accepted:
        assert answer.status_code == 200
    else:
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert problem in error["message"] and error["param"] == "size"


def test_the_fake_azure_refuses_flexible_sizes(fake: FakeOpenAIImages) -> None:
    answer = requests.post(
        f"{fake.url}/openai/deployments/g2/images/generations?api-version=2025-04-01-preview",
        headers={"api-key": AZURE_KEY},
        json={"prompt": "a fox", "size": "1536x864"},
        timeout=5,
    )
    assert answer.status_code == 400


def test_gpt_image_takes_long_prompts(fake: FakeOpenAIImages) -> None:
    shared = provider(azure(fake))
    shared.validate(ImageRequest("x" * 20000))
    assert len(shared.generate(ImageRequest("x" * 20000)).images) == 1


def test_dalle3_n3_is_three_concurrent_calls(fake: FakeOpenAIImages) -> None:
    fake.generation_delay = 0.3
    shared = provider(azure(fake, azure_deployment="d3", model="dall-e-3"))
    out = shared.generate(ImageRequest("three owls", n=3))
    calls = fake.calls(GEN)
    assert len(calls) == 3 and all(c.json()["n"] == 1 for c in calls)
    assert fake.max_in_flight == 3
    assert out.seconds < 0.8  # three 0.3 s calls side by side, not 0.9 s in a row
    assert len({image.url for image in out.images}) == 3


def test_the_fake_dalle3_rejects_n_above_one_like_the_real_service(
    fake: FakeOpenAIImages,
) -> None:
    answer = requests.post(
        f"{fake.url}/openai/deployments/d3/images/generations?api-version=2024-10-21",
        headers={"api-key": AZURE_KEY},
        json={"prompt": "owls", "n": 2},
        timeout=5,
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "You must provide n=1 for this model."


# -- responses ---------------------------------------------------------------------------------


def test_url_response_points_at_real_png_and_keeps_revised_prompt(fake: FakeOpenAIImages) -> None:
    out = provider(azure(fake, azure_deployment="d3", model="dall-e-3")).generate(
        ImageRequest("a teapot")
    )
    (image,) = out.images
    assert image.data is None and image.url and image.mime_type == "image/png"
    fetched = requests.get(image.url, timeout=5)
    assert fetched.status_code == 200 and fetched.content.startswith(PNG)
    assert out.revised_prompt == "A detailed illustration of a teapot"


def test_dalle3_can_answer_in_base64(fake: FakeOpenAIImages) -> None:
    shared = OpenAIImageProvider(
        azure(fake, azure_deployment="d3", model="dall-e-3"), RETRY, response_format="b64_json"
    )
    (image,) = shared.generate(ImageRequest("a teapot")).images
    assert image.url is None and image.data and image.data.startswith(PNG)
    assert fake.calls(GEN)[0].json()["response_format"] == "b64_json"


def test_partially_filtered_answer_keeps_survivors_with_a_note(fake: FakeOpenAIImages) -> None:
    fake.script_filtered(1, "violence", "high")
    out = provider(azure(fake)).generate(ImageRequest("a duel", n=3))
    assert len(out.images) == 2
    assert any("1 of 3" in note and "violence (high)" in note for note in out.notes)


def test_totally_filtered_answer_is_a_content_policy_error(fake: FakeOpenAIImages) -> None:
    fake.script_filtered(2, "sexual", "medium")
    with pytest.raises(ContentPolicyError) as caught:
        provider(azure(fake)).generate(ImageRequest("a duel", n=2))
    assert caught.value.reason == "sexual (medium)"
    assert "drew the pictures but its content filter withheld them" in caught.value.message


def test_one_refused_dalle3_call_of_three_keeps_the_others(fake: FakeOpenAIImages) -> None:
    fake.script_content_policy({"violence": "medium"})
    out = provider(azure(fake, azure_deployment="d3", model="dall-e-3")).generate(
        ImageRequest("a duel", n=3)
    )
    assert len(out.images) == 2
    assert any("1 of 3 images failed" in note for note in out.notes)


# -- errors ------------------------------------------------------------------------------------


def test_content_policy_violation_names_the_filtered_categories(fake: FakeOpenAIImages) -> None:
    fake.script_content_policy({"violence": "medium", "hate": "low"})
    with pytest.raises(ContentPolicyError) as caught:
        provider(azure(fake)).generate(ImageRequest("a duel"))
    assert caught.value.reason == "hate (low), violence (medium)"
    assert "violence (medium)" in caught.value.message
    assert caught.value.provider == "dalle3"


def test_a_filtered_output_image_is_not_called_a_refused_prompt(fake: FakeOpenAIImages) -> None:
    fake.script_output_filtered()
    with pytest.raises(ContentPolicyError) as caught:
        provider(azure(fake, azure_deployment="d3", model="dall-e-3")).generate(
            ImageRequest("a knight")
        )
    assert caught.value.stage == "image"
    message = caught.value.message
    assert "drew the picture but its content filter withheld it" in message
    assert "prompt itself was accepted" in message
    assert "refused this prompt" not in message


@pytest.mark.parametrize(
    "script", ["script_content_policy", "script_task_failed", "script_moderation_blocked"]
)
def test_a_refused_prompt_says_so(fake: FakeOpenAIImages, script: str) -> None:
    getattr(fake, script)()
    with pytest.raises(ContentPolicyError) as caught:
        provider(azure(fake)).generate(ImageRequest("a duel"))
    assert caught.value.stage == "prompt"
    assert "refused this prompt" in caught.value.message


def test_an_answer_filtered_within_a_200_says_the_picture_was_withheld(
    fake: FakeOpenAIImages,
) -> None:
    fake.script_filtered(1, "violence", "high")
    with pytest.raises(ContentPolicyError) as caught:
        provider(azure(fake)).generate(ImageRequest("a duel"))
    assert caught.value.stage == "image" and "withheld" in caught.value.message


def test_undecodable_b64_json_is_a_provider_error_not_a_crash(fake: FakeOpenAIImages) -> None:
    fake.script_damaged_image()
    with pytest.raises(ProviderUnavailableError) as caught:
        provider(azure(fake)).generate(ImageRequest("a cat", n=2))
    assert "could not decode" in caught.value.message


def test_one_undecodable_image_of_two_is_left_out_with_a_note(fake: FakeOpenAIImages) -> None:
    fake.script_damaged_image()
    shared = OpenAIImageProvider(
        azure(fake, azure_deployment="d3", model="dall-e-3"), RETRY, response_format="b64_json"
    )
    out = shared.generate(ImageRequest("two cats", n=2))  # two calls: one answer damaged
    assert len(out.images) == 1 and out.images[0].data.startswith(PNG)
    assert out.notes == ["1 of 2 images left out: their data did not decode."]


def test_moderation_blocked_is_a_content_policy_error(fake: FakeOpenAIImages) -> None:
    fake.script_moderation_blocked()
    with pytest.raises(ContentPolicyError) as caught:
        provider(plain(fake)).generate(ImageRequest("a duel"))
    assert caught.value.reason == "moderation_blocked"


def test_other_400_keeps_the_providers_message_trimmed_and_scrubbed(
    fake: FakeOpenAIImages,
) -> None:
    fake.script_bad_request(f"Invalid value for size (key {AZURE_KEY}). " + "detail " * 100)
    with pytest.raises(InvalidRequestError) as caught:
        provider(azure(fake)).generate(ImageRequest("a cat"))
    message = caught.value.message
    assert "Invalid value for size" in message and len(message) < 260
    assert_no_secrets(message)


@pytest.mark.parametrize(
    ("settings", "setting"),
    [
        (lambda f: azure(f, azure_api_key="wrong-key-abcdef123"), "AZURE_OPENAI_API_KEY"),
        (lambda f: plain(f, api_key="sk-wrong-abcdef123"), "OPENAI_API_KEY"),
    ],
)
def test_a_refused_key_names_the_key_setting_not_its_value(
    fake: FakeOpenAIImages, settings, setting: str
) -> None:
    shared = provider(settings(fake))
    with pytest.raises(ConfigurationError) as caught:
        shared.generate(ImageRequest("a cat"))
    assert setting in caught.value.message and caught.value.setting == setting
    assert "abcdef123" not in caught.value.message and "abcdef123" not in str(caught.value)
    assert len(fake.calls(GEN)) == 1  # a 401 is not retried


def test_403_names_the_credentials(fake: FakeOpenAIImages) -> None:
    fake.script_forbidden()
    with pytest.raises(ConfigurationError) as caught:
        provider(azure(fake)).generate(ImageRequest("a cat"))
    assert "AZURE_OPENAI_API_KEY" in caught.value.message and "'img'" in caught.value.message
    assert_no_secrets(caught.value.message)


def test_unknown_deployment_names_the_deployment_setting(fake: FakeOpenAIImages) -> None:
    with pytest.raises(ConfigurationError) as caught:
        provider(azure(fake, azure_deployment="nope")).generate(ImageRequest("a cat"))
    assert "AZURE_OPENAI_IMAGE_DEPLOYMENT" in caught.value.message
    assert caught.value.setting == "AZURE_OPENAI_IMAGE_DEPLOYMENT"


def test_retired_dalle3_on_openai_names_the_model_setting(fake: FakeOpenAIImages) -> None:
    with pytest.raises(ConfigurationError) as caught:
        provider(plain(fake, model="dall-e-3")).generate(ImageRequest("a cat"))
    assert "OPENAI_IMAGE_MODEL" in caught.value.message and "retired" in caught.value.message
    with pytest.raises(ConfigurationError) as caught:
        provider(plain(fake, model="gpt-image-9")).generate(ImageRequest("a cat"))
    assert "OPENAI_IMAGE_MODEL" in caught.value.message
    assert "retired" not in caught.value.message


def test_rate_limit_retried_after_retry_after_ms_then_succeeds(fake: FakeOpenAIImages) -> None:
    fake.rate_limit(retry_after_ms=30, times=2)
    out = provider(azure(fake)).generate(ImageRequest("a cat"))
    calls = fake.calls(GEN)
    assert len(out.images) == 1 and len(calls) == 3
    assert calls[1].at - calls[0].at >= 0.025  # the SDK waited as told


def test_rate_limit_that_persists_says_when_to_retry(fake: FakeOpenAIImages) -> None:
    fake.rate_limit(retry_after_ms=10, times=3)
    with pytest.raises(RateLimitError) as caught:
        provider(azure(fake)).generate(ImageRequest("a cat"))
    assert len(fake.calls(GEN)) == 3  # the first try and the SDK's two retries
    assert caught.value.retry_after == pytest.approx(0.01)
    fake.reset()
    fake.rate_limit_forever(retry_after=200)
    with pytest.raises(RateLimitError) as caught:
        provider(azure(fake)).generate(ImageRequest("a cat"))
    assert caught.value.retry_after == 200
    assert "try again in about 4 minutes" in caught.value.message


def test_server_error_retried_then_succeeds(fake: FakeOpenAIImages) -> None:
    fake.server_error(times=1)
    out = provider(azure(fake)).generate(ImageRequest("a cat"))
    assert len(out.images) == 1 and len(fake.calls(GEN)) == 2


def test_server_error_that_persists_is_unavailable(fake: FakeOpenAIImages) -> None:
    fake.server_error(times=2)
    no_retries = replace(RETRY, max_retries=1)
    with pytest.raises(ProviderUnavailableError):
        provider(azure(fake), no_retries).generate(ImageRequest("a cat"))
    assert len(fake.calls(GEN)) == 2


def test_slow_answer_is_a_timeout(fake: FakeOpenAIImages) -> None:
    fake.generation_delay = 1.0
    quick = replace(RETRY, timeout=0.3, max_retries=0)
    with pytest.raises(ProviderTimeoutError) as caught:
        provider(azure(fake), quick).generate(ImageRequest("a cat"))
    assert "0.3 seconds" in caught.value.message
    while fake.in_flight:  # let the abandoned call finish before the next test counts calls
        threading.Event().wait(0.05)


def test_unreachable_endpoint_is_unavailable() -> None:
    settings = OpenAIConfig(
        azure_endpoint="http://127.0.0.1:9", azure_api_key=AZURE_KEY, azure_deployment="img"
    )
    with pytest.raises(ProviderUnavailableError) as caught:
        provider(settings, replace(RETRY, max_retries=0)).generate(ImageRequest("a cat"))
    assert "AZURE_OPENAI_ENDPOINT" in caught.value.message
    assert_no_secrets(caught.value.message)


# -- check ---------------------------------------------------------------------------------------


def test_check_azure_lists_models_with_the_key(fake: FakeOpenAIImages) -> None:
    text = provider(azure(fake)).check()
    (call,) = fake.calls("/models")
    assert call.path == "/openai/models" and call.query == {"api-version": "2025-04-01-preview"}
    assert call.headers["api-key"] == AZURE_KEY
    assert "Azure OpenAI" in text and "'img'" in text and "gpt-image-1" in text


def test_check_azure_with_client_credentials(fake: FakeOpenAIImages) -> None:
    assert "Azure OpenAI" in provider(azure_tokens(fake)).check()
    (call,) = fake.calls("/models")
    assert call.headers["authorization"] == f"Bearer {fake.issued_tokens[0]}"


def test_check_openai_retrieves_the_model(fake: FakeOpenAIImages) -> None:
    assert "gpt-image-2" in provider(plain(fake)).check()
    assert fake.calls("/models")[0].path == "/v1/models/gpt-image-2"
    with pytest.raises(ConfigurationError) as caught:
        provider(plain(fake, model="gpt-image-9")).check()
    assert "OPENAI_IMAGE_MODEL" in caught.value.message


def test_check_with_a_wrong_key_names_the_setting(fake: FakeOpenAIImages) -> None:
    with pytest.raises(ConfigurationError) as caught:
        provider(azure(fake, azure_api_key="wrong-key-abcdef123")).check()
    assert "AZURE_OPENAI_API_KEY" in caught.value.message
    assert "abcdef123" not in caught.value.message


def test_fake_serves_scripted_and_default_answers_independently(fake: FakeOpenAIImages) -> None:
    fake.enqueue(Reply(500, {"error": {"message": "boom"}}), path_contains=GEN)
    # the token endpoint is not consumed by a generation script
    shared = provider(azure_tokens(fake))
    assert len(shared.generate(ImageRequest("a cat")).images) == 1
    assert len(fake.token_calls()) == 1 and len(fake.calls(GEN)) == 2
