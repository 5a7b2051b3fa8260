"""GoogleImageProvider against FakeVertexAI: real google-auth, real requests, real JWTs."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account

from bot.config import Config, GoogleConfig, RetryConfig
from bot.generation.providers.google import (
    GoogleImageProvider,
    model_method_url,
    vertex_base_url,
)
from bot.generation.types import (
    ConfigurationError,
    ContentPolicyError,
    ImageRequest,
    ImagineError,
    InvalidRequestError,
    NoImageError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from tests.fakes.images import png_bytes
from tests.fakes.vertex import FakeVertexAI, enhanced_prompt, service_account_info

IMAGEN = "imagen-4.0-generate-001"
GEMINI = "gemini-3.1-flash-image"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAST_RETRY = RetryConfig(backoff=0.01, max_retries=2, max_wait=5, timeout=5)

MakeProvider = Callable[..., GoogleImageProvider]


@pytest.fixture(scope="module")
def vertex_server() -> Iterator[FakeVertexAI]:
    """One fake per module (stopping a server takes half a second); reset for every test."""
    with FakeVertexAI() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def vertex(vertex_server: FakeVertexAI) -> Iterator[FakeVertexAI]:
    vertex_server.reset()
    yield vertex_server
    vertex_server.reset()


@pytest.fixture(scope="module")
def sa_info(vertex_server: FakeVertexAI) -> dict[str, str]:
    return service_account_info(f"{vertex_server.url}/token")


@pytest.fixture
def make_provider(vertex: FakeVertexAI, sa_info: dict[str, str]) -> Iterator[MakeProvider]:
    made: list[GoogleImageProvider] = []

    def make(
        model: str = IMAGEN, *, retry: RetryConfig = FAST_RETRY, **google: Any
    ) -> GoogleImageProvider:
        settings: dict[str, Any] = {
            "service_account_json": json.dumps(sa_info),
            "base_url": vertex.url,
            "model": model,
            **google,
        }
        provider = GoogleImageProvider.from_config(
            Config(google=GoogleConfig(**settings), retry=retry)
        )
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


def secrets_of(info: dict[str, str], vertex: FakeVertexAI) -> list[str]:
    """Pieces of secret material that must never reach a person."""
    key_lines = [line for line in info["private_key"].splitlines() if "PRIVATE KEY" not in line]
    return [*key_lines[:3], *vertex.issued_tokens, info["private_key_id"]]


def assert_no_secret(error: Exception, info: dict[str, str], vertex: FakeVertexAI) -> None:
    text = f"{error} {getattr(error, 'reason', '')} {error!r}"
    for secret in secrets_of(info, vertex):
        assert secret not in text


# -- Imagen :predict ---------------------------------------------------------------------------


def test_imagen_sends_every_option_and_returns_png_images(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    provider = make_provider(IMAGEN)
    request = ImageRequest(
        "a lighthouse at dusk", n=2, aspect_ratio="16:9", negative_prompt="people", seed=42
    )
    output = provider.generate(request)

    (call,) = vertex.api_calls()
    assert call.path == (
        f"/v1/projects/test-project/locations/us-central1/publishers/google/models/{IMAGEN}:predict"
    )
    assert call.headers["authorization"].startswith("Bearer ya29.fake-")
    assert call.json() == {
        "instances": [{"prompt": "a lighthouse at dusk"}],
        "parameters": {
            "sampleCount": 2,
            "aspectRatio": "16:9",
            "negativePrompt": "people",
            "seed": 42,
            "addWatermark": False,
            "personGeneration": "allow_adult",
            "safetySetting": "block_medium_and_above",
            "includeRaiReason": True,
        },
    }
    assert output.model == IMAGEN
    assert [image.data for image in output.images] == [
        png_bytes("a lighthouse at dusk|42|0"),
        png_bytes("a lighthouse at dusk|42|1"),
    ]
    assert all(image.mime_type == "image/png" for image in output.images)
    assert output.revised_prompt is None
    assert output.notes == []
    assert output.seconds > 0


def test_imagen_leaves_out_options_not_asked_for(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    provider = make_provider(
        "imagegeneration@006",
        person_generation="dont_allow",
        safety_setting="block_only_high",
        api_version="v1beta1",
    )
    output = provider.generate(ImageRequest("a red fox", n=1))

    (call,) = vertex.api_calls()
    assert call.path.startswith("/v1beta1/projects/test-project/")
    assert call.path.endswith("/models/imagegeneration@006:predict")
    assert call.json()["parameters"] == {
        "sampleCount": 1,
        "aspectRatio": "1:1",
        "personGeneration": "dont_allow",
        "safetySetting": "block_only_high",
        "includeRaiReason": True,
    }
    assert len(output.images) == 1 and output.images[0].data.startswith(PNG_MAGIC)


def test_imagen_keeps_the_enhanced_prompt(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.enhance_prompts = True
    output = make_provider(IMAGEN).generate(ImageRequest("a cat", n=2))
    assert output.revised_prompt == enhanced_prompt("a cat")


def test_imagen_quality_and_style_become_notes(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    output = make_provider(IMAGEN).generate(ImageRequest("a cat", quality="hd", style="vivid"))
    assert len(output.images) == 1
    assert any("quality=hd" in note for note in output.notes)
    assert any("style=vivid" in note for note in output.notes)
    assert "quality" not in json.dumps(vertex.api_calls()[0].json())


def test_quality_auto_needs_no_note(vertex: FakeVertexAI, make_provider: MakeProvider) -> None:
    output = make_provider(GEMINI).generate(ImageRequest("a cat", quality="auto"))
    assert len(output.images) == 1 and output.notes == []


def test_imagen_partial_filtering_returns_survivors_with_a_note(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.filter_some(kept=3)
    output = make_provider(IMAGEN).generate(ImageRequest("a crowded beach", n=4))
    assert len(output.images) == 3
    assert output.notes == [
        "1 of 4 images was filtered by Google's safety filter: Your current safety filter "
        "threshold filtered out 1 generated images. (support codes: 58061214)"
    ]


def test_imagen_partial_filtering_counts_several_filtered(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.filter_some(kept=1)
    output = make_provider(IMAGEN).generate(ImageRequest("a crowded beach", n=4))
    assert len(output.images) == 1
    assert output.notes[0].startswith("3 of 4 images were filtered")


@pytest.mark.parametrize(
    ("include_reason", "empty", "reason_part"),
    [
        (None, False, "Support codes: 56562880"),  # the reason we asked for
        (False, False, "no images"),  # Google answered {}
        (None, True, "no images"),  # empty predictions
    ],
)
def test_imagen_total_filtering_is_a_content_policy_error(
    vertex: FakeVertexAI,
    make_provider: MakeProvider,
    include_reason: bool | None,
    empty: bool,
    reason_part: str,
) -> None:
    vertex.filter_all(include_reason, empty_predictions=empty)
    with pytest.raises(ContentPolicyError) as caught:
        make_provider(IMAGEN).generate(ImageRequest("something filtered", n=2))
    assert reason_part in (caught.value.reason or "")
    assert caught.value.provider == "imagen"


def test_responsible_ai_refusal_is_a_content_policy_error(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.refuse_prompt(support_code="17301594")
    with pytest.raises(ContentPolicyError) as caught:
        make_provider(IMAGEN).generate(ImageRequest("a refused prompt"))
    assert "Responsible AI" in str(caught.value)
    assert "Support codes: 17301594" in (caught.value.reason or "")
    assert len(vertex.api_calls()) == 1  # a refusal is not retried


# -- Gemini :generateContent -------------------------------------------------------------------


def test_gemini_body_and_image(vertex: FakeVertexAI, make_provider: MakeProvider) -> None:
    output = make_provider(GEMINI).generate(ImageRequest("a koi pond", aspect_ratio="9:16", seed=7))
    (call,) = vertex.api_calls()
    assert call.path == (
        f"/v1/projects/test-project/locations/us-central1/publishers/google/models/"
        f"{GEMINI}:generateContent"
    )
    assert call.json() == {
        "contents": [{"role": "user", "parts": [{"text": "a koi pond"}]}],
        "generationConfig": {
            "responseModalities": ["IMAGE"],
            "imageConfig": {"aspectRatio": "9:16"},
            "seed": 7,
        },
    }
    assert output.model == GEMINI
    assert [image.data for image in output.images] == [png_bytes("a koi pond|7")]
    assert output.notes == [] and output.revised_prompt is None


def test_gemini_folds_the_negative_prompt_into_the_text_and_says_so(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    output = make_provider(GEMINI).generate(
        ImageRequest("a quiet street", negative_prompt="cars, people", quality="hd", style="vivid")
    )
    body = vertex.api_calls()[0].json()
    assert body["contents"][0]["parts"][0]["text"] == "a quiet street. Avoid: cars, people."
    assert "seed" not in body["generationConfig"]
    assert any("negative prompt" in note for note in output.notes)
    assert any("quality=hd" in note for note in output.notes)
    assert any("style=vivid" in note for note in output.notes)


def test_gemini_makes_n_concurrent_calls(vertex: FakeVertexAI, make_provider: MakeProvider) -> None:
    provider = make_provider(GEMINI)
    provider.generate(ImageRequest("warm-up"))  # the token, so only the image calls are timed
    vertex.latency = 0.4

    output = provider.generate(ImageRequest("three birds", n=3))

    calls = vertex.api_calls()[1:]
    assert len(calls) == 3
    assert max(c.at for c in calls) - min(c.at for c in calls) < 0.3  # all started together
    assert output.seconds < 1.0  # three 0.4 s calls in sequence would take 1.2 s
    assert len(output.images) == 3
    assert len({image.data for image in output.images}) == 3


def test_gemini_prompt_block_says_the_prompt_was_refused_in_googles_words(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.block_prompt("PROHIBITED_CONTENT")
    with pytest.raises(ContentPolicyError) as caught:
        make_provider(GEMINI).generate(ImageRequest("a blocked prompt"))
    assert caught.value.reason == "PROHIBITED_CONTENT"
    assert caught.value.stage == "prompt"
    message = caught.value.message
    assert message.startswith("Google refused this prompt (PROHIBITED_CONTENT: ")
    assert "The prompt was blocked due to prohibited content" in message  # blockReasonMessage


def test_gemini_image_safety_says_the_picture_was_withheld_in_googles_words(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.finish_without_image("IMAGE_SAFETY", times=2)
    with pytest.raises(ContentPolicyError) as caught:
        make_provider(GEMINI).generate(ImageRequest("unsafe picture", n=2))
    assert caught.value.reason == "IMAGE_SAFETY"
    assert caught.value.stage == "image"
    message = caught.value.message
    assert "drew a picture but Google's safety filter withheld it" in message
    assert "refused this prompt" not in message
    # finishMessage, without the boilerplate about charges and feedback
    assert "violated Google's Generative AI Prohibited Use policy" in message
    assert "You will not be charged" not in message
    assert len(vertex.api_calls()) == 2


def test_gemini_no_image_is_not_blamed_on_the_safety_filter(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.finish_without_image("NO_IMAGE")
    with pytest.raises(NoImageError) as caught:
        make_provider(GEMINI).generate(ImageRequest("a recipe for soup"))
    message = caught.value.message
    assert f"{GEMINI} answered without a picture (NO_IMAGE: " in message
    assert "The model did not generate an image for this prompt" in message
    assert "safety" not in message


def test_gemini_text_answer_explains_a_missing_image(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.finish_without_image("STOP", message="", text="I can only draw one cat at a time.")
    with pytest.raises(NoImageError) as caught:
        make_provider(GEMINI).generate(ImageRequest("a thousand cats"))
    assert "I can only draw one cat at a time" in caught.value.message


def test_gemini_partial_block_returns_survivors_with_a_note(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.finish_without_image("IMAGE_SAFETY", times=1)
    output = make_provider(GEMINI).generate(ImageRequest("two of three", n=3))
    assert len(output.images) == 2
    assert output.notes == [
        "1 of 3 images was withheld by Google's safety filter (IMAGE_SAFETY: Unable to show "
        "the generated image. The image was filtered out because it violated Google's "
        "Generative AI Prohibited Use policy)."
    ]


# -- seeds: Gemini's is an int32, Imagen's a uint32 ----------------------------------------------


def test_the_fake_refuses_seeds_out_of_range_like_vertex(
    vertex: FakeVertexAI, sa_info: dict[str, str]
) -> None:
    credentials = service_account.Credentials.from_service_account_info(
        sa_info, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    with AuthorizedSession(credentials) as session:
        base = f"{vertex.url}/v1/projects/test-project/locations/us-central1/publishers/google"
        gemini = session.post(
            f"{base}/models/{GEMINI}:generateContent",
            json={
                "contents": [{"role": "user", "parts": [{"text": "a cat"}]}],
                "generationConfig": {"responseModalities": ["IMAGE"], "seed": 2**31},
            },
            timeout=5,
        )
        imagen = session.post(
            f"{base}/models/{IMAGEN}:predict",
            json={
                "instances": [{"prompt": "a cat"}],
                "parameters": {"sampleCount": 1, "seed": 2**32, "addWatermark": False},
            },
            timeout=5,
        )
        largest = session.post(
            f"{base}/models/{IMAGEN}:predict",
            json={"instances": [{"prompt": "a cat"}], "parameters": {"seed": 2**32 - 1}},
            timeout=5,
        )
    assert gemini.status_code == 400
    error = gemini.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == "Invalid value at 'generation_config.seed' (TYPE_INT32), 2147483648"
    assert error["details"][0]["fieldViolations"][0]["field"] == "generation_config.seed"
    assert imagen.status_code == 400 and imagen.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert largest.status_code == 200


@pytest.mark.parametrize(
    ("model", "seed", "sent", "noted"),
    [
        (GEMINI, 2**31 - 1, 2**31 - 1, False),
        (GEMINI, -5, -5, False),  # an int32 takes negative seeds
        (GEMINI, 3_000_000_000, 3_000_000_000 - 2**31, True),
        (GEMINI, 2**32 - 1, 2**31 - 1, True),
        (IMAGEN, 2**32 - 1, 2**32 - 1, False),
        (IMAGEN, 2**32 + 7, 7, True),
        (IMAGEN, -1, 2**32 - 1, True),  # from the command line; a uint32 has no sign
    ],
)
def test_seeds_beyond_the_models_range_are_mapped_in_and_noted(
    vertex: FakeVertexAI,
    make_provider: MakeProvider,
    model: str,
    seed: int,
    sent: int,
    noted: bool,
) -> None:
    output = make_provider(model).generate(ImageRequest("a koi pond", seed=seed))
    body = vertex.api_calls()[0].json()
    config = body["generationConfig"] if model == GEMINI else body["parameters"]
    assert config["seed"] == sent
    assert len(output.images) == 1
    if noted:
        (note,) = output.notes
        assert f"seed {seed} was used as {sent}" in note and model in note
    else:
        assert output.notes == []
    again = make_provider(model).generate(ImageRequest("a koi pond", seed=seed))
    assert again.images[0].data == output.images[0].data  # the same seed, the same picture


# -- damaged image data --------------------------------------------------------------------------


@pytest.mark.parametrize("model", [IMAGEN, GEMINI])
def test_undecodable_image_data_is_a_provider_error_not_a_crash(
    vertex: FakeVertexAI, make_provider: MakeProvider, model: str
) -> None:
    vertex.damaged_image()
    with pytest.raises(ProviderUnavailableError) as caught:
        make_provider(model).generate(ImageRequest("a cat"))
    assert "could not decode" in caught.value.message


def test_one_undecodable_gemini_image_of_two_is_left_out_with_a_note(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.damaged_image(times=1)
    output = make_provider(GEMINI).generate(ImageRequest("two cats", n=2))
    assert len(output.images) == 1 and output.images[0].data.startswith(PNG_MAGIC)
    assert output.notes == [
        "1 of 2 images was left out: the image data Google sent did not decode."
    ]


# -- errors and retries ------------------------------------------------------------------------


def test_401_is_a_configuration_error_naming_the_credentials(
    vertex: FakeVertexAI, make_provider: MakeProvider, sa_info: dict[str, str]
) -> None:
    vertex.unauthenticated()
    with pytest.raises(ConfigurationError) as caught:
        make_provider(IMAGEN).generate(ImageRequest("a cat"))
    assert "GOOGLE_SERVICE_ACCOUNT_JSON" in str(caught.value)
    assert_no_secret(caught.value, sa_info, vertex)


def test_403_names_the_project_and_the_vertex_ai_user_role(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.permission_denied()
    with pytest.raises(ConfigurationError) as caught:
        make_provider(IMAGEN).generate(ImageRequest("a cat"))
    assert "GOOGLE_CLOUD_PROJECT" in str(caught.value)
    assert "Vertex AI User role" in str(caught.value)


def test_wrong_project_is_refused_by_google(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_provider(IMAGEN, project="someone-elses-project").generate(ImageRequest("a cat"))
    assert "someone-elses-project" in str(caught.value)
    assert "/projects/someone-elses-project/" in vertex.api_calls()[0].path


def test_disabled_api_says_to_enable_it(vertex: FakeVertexAI, make_provider: MakeProvider) -> None:
    vertex.service_disabled()
    with pytest.raises(ConfigurationError, match="aiplatform.googleapis.com"):
        make_provider(IMAGEN).generate(ImageRequest("a cat"))


@pytest.mark.parametrize("model", ["imagen-9.9-unreleased", "gemini-9-image"])
def test_404_names_the_model_and_location(
    vertex: FakeVertexAI, make_provider: MakeProvider, model: str
) -> None:
    vertex.not_found()
    with pytest.raises(ConfigurationError) as caught:
        make_provider(model, location="europe-west4").generate(ImageRequest("a cat"))
    message = str(caught.value)
    assert "IMAGEN_MODEL" in message and "GOOGLE_CLOUD_LOCATION" in message
    assert model in message and "europe-west4" in message
    assert "/locations/europe-west4/" in vertex.api_calls()[0].path


def test_other_400_is_an_invalid_request_with_googles_message(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.fail(400, "INVALID_ARGUMENT", "Image size is not supported for this model. " * 20)
    with pytest.raises(InvalidRequestError) as caught:
        make_provider(IMAGEN).generate(ImageRequest("a cat"))
    assert "Image size is not supported for this model." in str(caught.value)
    assert len(str(caught.value)) < 300
    assert len(vertex.api_calls()) == 1


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried_then_succeed(
    vertex: FakeVertexAI, make_provider: MakeProvider, status: int
) -> None:
    if status == 429:
        vertex.quota_exceeded()
    else:
        vertex.server_error(status)
    output = make_provider(IMAGEN).generate(ImageRequest("a cat", n=2))
    assert len(output.images) == 2
    calls = vertex.api_calls()
    assert len(calls) == 2 and calls[0].json() == calls[1].json()


def test_quota_exceeded_forever_is_a_rate_limit_error(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.quota_exceeded(times=10)
    with pytest.raises(RateLimitError) as caught:
        make_provider(GEMINI).generate(ImageRequest("a cat"))
    assert "about a minute" in str(caught.value)
    assert caught.value.retry_after and caught.value.retry_after > 0
    assert len(vertex.api_calls()) == 3  # the first try and max_retries=2


def test_retry_after_header_is_honoured(vertex: FakeVertexAI, make_provider: MakeProvider) -> None:
    vertex.quota_exceeded(retry_after="0.3")
    make_provider(IMAGEN).generate(ImageRequest("a cat"))
    first, second = vertex.api_calls()
    assert second.at - first.at >= 0.3


def test_retry_after_beyond_max_wait_gives_up_at_once(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.quota_exceeded(retry_after="600")
    with pytest.raises(RateLimitError) as caught:
        make_provider(IMAGEN).generate(ImageRequest("a cat"))
    assert caught.value.retry_after == 600
    assert len(vertex.api_calls()) == 1


def test_server_errors_forever_are_unavailable(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.server_error(503, times=10)
    with pytest.raises(ProviderUnavailableError, match="503"):
        make_provider(IMAGEN).generate(ImageRequest("a cat"))
    assert len(vertex.api_calls()) == 3


def test_unreachable_vertex_is_unavailable(make_provider: MakeProvider) -> None:
    with socket.socket() as probe:  # a port nobody listens on once the socket closes
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(ProviderUnavailableError, match="VERTEX_AI_BASE_URL"):
        make_provider(IMAGEN, base_url=dead_url).generate(ImageRequest("a cat"))


def test_slow_answer_is_a_timeout(vertex: FakeVertexAI, make_provider: MakeProvider) -> None:
    retry = RetryConfig(backoff=0.01, max_retries=2, max_wait=5, timeout=0.3)
    provider = make_provider(GEMINI, retry=retry)
    vertex.slow(1.5)
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError):
        provider.generate(ImageRequest("a cat"))
    assert time.monotonic() - started < 1.2


def test_unknown_model_family_names_imagen_model(make_provider: MakeProvider) -> None:
    with pytest.raises(ConfigurationError, match="IMAGEN_MODEL"):
        make_provider("dall-e-3").generate(ImageRequest("a cat"))


# -- credentials ---------------------------------------------------------------------------------


def test_one_token_request_for_many_concurrent_generations(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.token_latency = 0.2  # a wide window for threads to race on the first refresh
    provider = make_provider(IMAGEN)
    barrier = threading.Barrier(8)

    def generate(i: int) -> int:
        barrier.wait()
        return len(provider.generate(ImageRequest(f"picture {i}")).images)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(generate, range(8))) == [1] * 8
    assert vertex.token_requests == 1
    assert len(vertex.api_calls()) == 8
    assert len({c.headers["authorization"] for c in vertex.api_calls()}) == 1


def test_token_request_is_a_signed_jwt_grant(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    make_provider(IMAGEN).generate(ImageRequest("a cat"))
    (token_call,) = vertex.calls("/token")
    form = token_call.form()
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert form["assertion"].count(".") == 2


@pytest.mark.parametrize("trouble", ["unknown key", "refused grant"])
def test_refused_credentials_are_a_configuration_error_without_the_key(
    vertex: FakeVertexAI, make_provider: MakeProvider, trouble: str
) -> None:
    info = service_account_info(f"{vertex.url}/token", trusted=trouble != "unknown key")
    if trouble == "refused grant":
        vertex.reject_token_requests()
    provider = make_provider(IMAGEN, service_account_json=json.dumps(info))
    with pytest.raises(ConfigurationError) as caught:
        provider.generate(ImageRequest("a cat"))
    assert "GOOGLE_SERVICE_ACCOUNT_JSON" in str(caught.value)
    assert_no_secret(caught.value, info, vertex)
    assert vertex.api_calls() == []


def test_invalid_service_account_json_is_named_but_not_echoed(
    make_provider: MakeProvider,
) -> None:
    secret = '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQ-TOP-SECRET'
    provider = make_provider(IMAGEN, service_account_json=secret, project="p")
    with pytest.raises(ConfigurationError) as caught:
        provider.generate(ImageRequest("a cat"))
    assert "GOOGLE_SERVICE_ACCOUNT_JSON" in str(caught.value)
    assert "TOP-SECRET" not in f"{caught.value} {caught.value!r}"


def test_incomplete_service_account_json_is_a_configuration_error(
    make_provider: MakeProvider,
) -> None:
    provider = make_provider(
        IMAGEN, service_account_json='{"type": "service_account"}', project="p"
    )
    with pytest.raises(ConfigurationError, match="GOOGLE_SERVICE_ACCOUNT_JSON"):
        provider.generate(ImageRequest("a cat"))


def test_application_default_credentials_are_used_without_the_json(
    vertex: FakeVertexAI,
    make_provider: MakeProvider,
    sa_info: dict[str, str],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(sa_info))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    provider = make_provider(IMAGEN, service_account_json=None, project="test-project")
    assert len(provider.generate(ImageRequest("a cat")).images) == 1
    assert vertex.token_requests == 1


def test_missing_application_default_credentials_name_both_settings(
    make_provider: MakeProvider, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    provider = make_provider(IMAGEN, service_account_json=None, project="test-project")
    with pytest.raises(ConfigurationError) as caught:
        provider.generate(ImageRequest("a cat"))
    assert "GOOGLE_SERVICE_ACCOUNT_JSON" in str(caught.value)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(caught.value)


@pytest.mark.parametrize(
    "script",
    [
        lambda v: v.unauthenticated(),
        lambda v: v.permission_denied(),
        lambda v: v.not_found(),
        lambda v: v.quota_exceeded(times=10),
        lambda v: v.server_error(500, times=10),
        lambda v: v.refuse_prompt(),
        lambda v: v.filter_all(),
        lambda v: v.fail(400, "INVALID_ARGUMENT", "bad request"),
        lambda v: v.reject_token_requests(),
    ],
)
def test_no_error_message_contains_a_secret(
    vertex: FakeVertexAI,
    make_provider: MakeProvider,
    sa_info: dict[str, str],
    script: Callable[[FakeVertexAI], None],
) -> None:
    script(vertex)
    with pytest.raises(ImagineError) as caught:
        make_provider(IMAGEN).generate(ImageRequest("a cat"))
    assert_no_secret(caught.value, sa_info, vertex)
    assert len(str(caught.value)) < 300


# -- settings, URLs, validation, check() ---------------------------------------------------------


def test_host_building_without_network() -> None:
    assert vertex_base_url(GoogleConfig(location="global")) == "https://aiplatform.googleapis.com"
    assert (
        vertex_base_url(GoogleConfig(location="europe-west4"))
        == "https://europe-west4-aiplatform.googleapis.com"
    )
    assert vertex_base_url(GoogleConfig(base_url="http://127.0.0.1:9/")) == "http://127.0.0.1:9"
    assert model_method_url(
        GoogleConfig(location="global", model=GEMINI), "proj", "generateContent"
    ) == (
        "https://aiplatform.googleapis.com/v1/projects/proj/locations/global/"
        f"publishers/google/models/{GEMINI}:generateContent"
    )


def test_global_location_reaches_the_global_path(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    make_provider(GEMINI, location="global").generate(ImageRequest("a cat"))
    assert "/locations/global/publishers/google/models/" in vertex.api_calls()[0].path


def test_missing_settings() -> None:
    def missing(**google: Any) -> list[str]:
        return GoogleImageProvider(GoogleConfig(**google), FAST_RETRY).missing_settings()

    assert missing() == ["GOOGLE_CLOUD_PROJECT"]
    assert missing(project="p") == []
    assert missing(service_account_json=json.dumps({"project_id": "from-key"})) == []
    assert missing(service_account_json="not json") == ["GOOGLE_CLOUD_PROJECT"]
    provider = GoogleImageProvider(GoogleConfig(), FAST_RETRY)
    assert not provider.configured
    with pytest.raises(ConfigurationError, match="GOOGLE_CLOUD_PROJECT"):
        provider.generate(ImageRequest("a cat"))


def test_project_comes_from_the_key_when_not_set(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    provider = make_provider(IMAGEN)  # no GOOGLE_CLOUD_PROJECT: the key says test-project
    assert provider.missing_settings() == []
    provider.generate(ImageRequest("a cat"))
    assert "/projects/test-project/" in vertex.api_calls()[0].path


def test_names_and_model() -> None:
    provider = GoogleImageProvider.from_config(Config(google=GoogleConfig(model=GEMINI)))
    assert provider.name == "imagen"
    assert set(provider.aliases) == {"google", "gemini"}
    assert provider.label == "Google Vertex AI"
    assert provider.model == GEMINI


@pytest.mark.parametrize(
    ("model", "request_", "accepted"),
    [
        (IMAGEN, ImageRequest("x" * 1900), True),
        (IMAGEN, ImageRequest("x" * 1901), False),
        (IMAGEN, ImageRequest("   "), False),
        (IMAGEN, ImageRequest("a cat", n=5), False),
        (IMAGEN, ImageRequest("a cat", aspect_ratio="21:9"), False),
        (GEMINI, ImageRequest("a cat", aspect_ratio="21:9"), True),
        (GEMINI, ImageRequest("a cat", aspect_ratio="7:1"), False),
    ],
)
def test_validate(model: str, request_: ImageRequest, accepted: bool) -> None:
    provider = GoogleImageProvider(GoogleConfig(model=model, project="p"), FAST_RETRY)
    if accepted:
        provider.validate(request_)
    else:
        with pytest.raises(InvalidRequestError):
            provider.validate(request_)


def test_check_reaches_the_model(vertex: FakeVertexAI, make_provider: MakeProvider) -> None:
    assert make_provider(GEMINI).check() == f"model {GEMINI} reachable"
    (call,) = vertex.api_calls()
    assert call.method == "GET"
    assert call.path == f"/v1beta1/publishers/google/models/{GEMINI}"
    assert call.headers["authorization"].startswith("Bearer ")


def test_check_maps_errors(vertex: FakeVertexAI, make_provider: MakeProvider) -> None:
    vertex.not_found()
    with pytest.raises(ConfigurationError, match="IMAGEN_MODEL"):
        make_provider(GEMINI).check()
    vertex.unauthenticated()
    with pytest.raises(ConfigurationError, match="GOOGLE_SERVICE_ACCOUNT_JSON"):
        make_provider(GEMINI).check()
