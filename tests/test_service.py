"""The shared generation service with the real providers and store against the local fakes."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from bot.config import Config
from bot.generation.service import GenerationService
from bot.generation.types import (
    ConfigurationError,
    ImageRequest,
    InvalidRequestError,
    StoreError,
)
from tests.fakes.gcs import GcsFront, start_gcs_emulator
from tests.fakes.openai_images import FakeOpenAIImages
from tests.fakes.vertex import FakeVertexAI, service_account_info

BUCKET = "imgs"


@pytest.fixture(scope="module")
def fakes():
    server, url = start_gcs_emulator(BUCKET)
    try:
        with (
            FakeVertexAI() as vertex,
            FakeOpenAIImages(deployments={"img": "gpt-image-2", "dalle": "dall-e-3"}) as openai,
            GcsFront(url) as gcs,
        ):
            yield vertex, openai, gcs, service_account_info(token_uri=vertex.url + "/token")
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def clean(fakes):
    vertex, openai, gcs, _ = fakes
    for fake in (vertex, openai, gcs):
        fake.reset()
    openai.generation_delay = 0.0


def make_service(fakes, **overrides: str) -> GenerationService:
    vertex, openai, gcs, key = fakes
    env = {
        "GOOGLE_CLOUD_PROJECT": "test-project",
        "GOOGLE_SERVICE_ACCOUNT_JSON": json.dumps(key),
        "VERTEX_AI_BASE_URL": vertex.url,
        "AZURE_OPENAI_ENDPOINT": openai.url,
        "AZURE_OPENAI_API_KEY": openai.azure_api_key,
        "AZURE_OPENAI_IMAGE_DEPLOYMENT": "img",
        "OPENAI_IMAGE_MODEL": "gpt-image-2",
        "GCS_BUCKET": BUCKET,
        "STORAGE_EMULATOR_HOST": gcs.url,
        "IMAGINE_RETRY_BACKOFF": "0.01",
        "IMAGINE_PROVIDER_TIMEOUT": "5",
    }
    env.update(overrides)
    return GenerationService.from_config(Config.from_env(env))


def download(url: str) -> bytes:
    response = requests.get(url, timeout=5)
    response.raise_for_status()
    return response.content


def test_compare_takes_as_long_as_the_slowest_provider(fakes):
    vertex, openai, _, _ = fakes
    service = make_service(fakes)
    service.generate(ImageRequest("warm up"), ["imagen"])  # the one token request
    vertex.latency, openai.generation_delay = 1.0, 2.0
    started = time.monotonic()
    results = service.generate(ImageRequest("a red fox"), ["imagen", "dalle3"])
    elapsed = time.monotonic() - started
    assert 2.0 <= elapsed < 2.8, f"compare took {elapsed:.2f}s"
    assert [r.provider for r in results] == ["imagen", "dalle3"]
    assert [r.model for r in results] == ["gemini-3.1-flash-image", "gpt-image-2"]
    assert all(r.ok and len(r.images) == 1 for r in results)
    assert results[0].timings["provider"] >= 1.0 and results[1].timings["provider"] >= 2.0
    assert {"provider", "store", "total"} <= set(results[0].timings)


def test_stored_images_download_as_the_exact_bytes_generated(fakes):
    vertex, _, gcs, _ = fakes
    service = make_service(fakes)
    [result] = service.generate(ImageRequest("a lighthouse", n=2), ["imagen"])
    assert len(result.images) == 2
    for image in result.images:
        assert "X-Goog-Signature=" in image.url and image.url.startswith(gcs.url)
        assert download(image.url) == image.data
        assert image.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len({image.url.split("?")[0] for image in result.images}) == 2


def test_provider_urls_are_copied_into_the_store(fakes):
    _, openai, gcs, _ = fakes
    service = make_service(
        fakes, AZURE_OPENAI_IMAGE_DEPLOYMENT="dalle", OPENAI_IMAGE_MODEL="dall-e-3"
    )
    [result] = service.generate(ImageRequest("a castle"), ["dalle3"])
    assert result.ok, result.error
    [image] = result.images
    provider_file = openai.calls("/files/")[0].path
    assert image.url.startswith(gcs.url)  # not the provider's 24-hour URL
    assert download(image.url) == download(openai.url + provider_file)


def test_keep_provider_urls_posts_them_unchanged(fakes):
    _, openai, gcs, _ = fakes
    service = make_service(
        fakes,
        AZURE_OPENAI_IMAGE_DEPLOYMENT="dalle",
        OPENAI_IMAGE_MODEL="dall-e-3",
        KEEP_PROVIDER_URLS="1",
    )
    [result] = service.generate(ImageRequest("a castle"), ["dalle3"])
    assert result.images[0].url.startswith(openai.url + "/files/")
    assert not gcs.requests and not openai.calls("/files/")


def test_a_provider_url_that_cannot_be_downloaded_is_a_store_error(fakes):
    _, openai, _, _ = fakes
    service = make_service(
        fakes, AZURE_OPENAI_IMAGE_DEPLOYMENT="dalle", OPENAI_IMAGE_MODEL="dall-e-3"
    )
    from tests.fakes._http import Reply

    openai.enqueue(Reply(403, "AuthenticationFailed"), path_contains="/files/")
    [result] = service.generate(ImageRequest("a castle"), ["dalle3"])
    assert isinstance(result.error, StoreError)
    assert "HTTP 403" in result.error.message and "sig" not in result.error.message


def test_without_a_store_the_bytes_are_kept(fakes):
    service = make_service(fakes, GCS_BUCKET="")
    assert service.store is None
    [result] = service.generate(ImageRequest("a kite"), ["imagen"])
    assert result.images[0].url is None and result.images[0].data[:4] == b"\x89PNG"


def test_one_provider_failing_leaves_the_other_result_intact(fakes):
    vertex, _, _, _ = fakes
    vertex.block_prompt("PROHIBITED_CONTENT")
    service = make_service(fakes)
    imagen, dalle = service.generate(ImageRequest("a thing"), ["imagen", "dalle3"])
    assert imagen.error is not None and imagen.error.kind == "content_policy"
    assert imagen.error.provider == "imagen" and not imagen.images
    assert dalle.ok and len(dalle.images) == 1


@pytest.mark.parametrize(
    ("request_", "providers", "error", "message"),
    [
        (ImageRequest("   "), ["imagen"], InvalidRequestError, "prompt is empty"),
        (ImageRequest("x", n=0), ["imagen"], InvalidRequestError, "from 1 to 4"),
        (ImageRequest("x", n=5), ["imagen"], InvalidRequestError, "from 1 to 4"),
        (ImageRequest("x", aspect_ratio="2:1"), ["imagen"], InvalidRequestError, "16:9"),
        (ImageRequest("x"), ["midjourney"], InvalidRequestError, "imagen, dalle3"),
        (ImageRequest("x" * 40000), ["dalle3"], InvalidRequestError, "at most"),
        (ImageRequest("x" * 2000), ["imagen"], InvalidRequestError, "at most"),
        (ImageRequest("x"), [], ConfigurationError, "No image provider"),
    ],
)
def test_invalid_requests_are_refused_before_any_call(fakes, request_, providers, error, message):
    vertex, openai, gcs, _ = fakes
    service = make_service(fakes)
    with pytest.raises(error) as raised:
        service.generate(request_, providers)
    assert message in raised.value.message
    assert not vertex.api_calls() and not openai.requests and not gcs.requests


def test_an_unconfigured_provider_names_the_missing_settings(fakes):
    service = make_service(fakes, AZURE_OPENAI_ENDPOINT="", AZURE_OPENAI_API_KEY="")
    assert service.configured_providers() == ["imagen"]
    with pytest.raises(ConfigurationError) as raised:
        service.generate(ImageRequest("x"), ["dalle"])
    assert "dalle3 is not configured here" in raised.value.message
    assert "OPENAI_API_KEY" in raised.value.message


def test_many_threads_at_once(fakes):
    vertex, openai, _, _ = fakes
    vertex.latency = openai.generation_delay = 0.3
    service = make_service(fakes)
    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        batches = list(
            pool.map(
                lambda i: service.generate(ImageRequest(f"picture {i}"), ["imagen", "dalle3"]),
                range(20),
            )
        )
    elapsed = time.monotonic() - started
    assert all(r.ok for results in batches for r in results)
    names = {r.images[0].url.split("?")[0] for results in batches for r in results}
    assert len(names) == 40  # every image its own object
    assert elapsed < 4.0, f"20 concurrent compares took {elapsed:.2f}s"  # not serialised
