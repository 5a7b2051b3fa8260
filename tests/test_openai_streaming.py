"""Streamed generation (gpt-image previews): the real openai SDK reading the fake's server-sent
events, the fake as strict as the API about who may stream and how many previews."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests

from bot.config import OpenAIConfig, RetryConfig
from bot.generation.previews import current_previews
from bot.generation.providers.openai import OpenAIImageProvider, azure_streams
from bot.generation.types import (
    ContentPolicyError,
    GeneratedImage,
    ImageRequest,
    ProviderUnavailableError,
)
from tests.fakes.images import png_bytes
from tests.fakes.openai_images import FakeOpenAIImages

AZURE_KEY = "azure-key-0123456789abcdef"
OPENAI_KEY = "sk-test-0123456789abcdef"
RETRY = RetryConfig(backoff=0.01, max_retries=2, max_wait=5, timeout=5)
GEN = "/images/generations"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIImages]:
    fake = FakeOpenAIImages(
        azure_api_key=AZURE_KEY,
        openai_api_key=OPENAI_KEY,
        deployments={"img": "gpt-image-1", "d3": "dall-e-3"},
        openai_models={"gpt-image-2", "dall-e-3"},
    )
    with fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAIImages) -> Iterator[FakeOpenAIImages]:
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


def plain(fake: FakeOpenAIImages, **changes: object) -> OpenAIConfig:
    settings = OpenAIConfig(api_key=OPENAI_KEY, base_url=f"{fake.url}/v1", model="gpt-image-2")
    return replace(settings, **changes)


def draw(settings: OpenAIConfig, request: ImageRequest, previews: list | None):
    """Generate with a preview sink collecting (index, bytes, seconds since start)."""
    provider = OpenAIImageProvider(settings, RETRY)
    started = time.monotonic()

    def sink(name: str, image: GeneratedImage, index: int) -> None:
        assert previews is not None and name == "dalle3"
        previews.append((index, image.data, time.monotonic() - started))

    token = current_previews.set(sink if previews is not None else None)
    try:
        return provider.generate(request), time.monotonic() - started
    finally:
        current_previews.reset(token)


@pytest.mark.parametrize("where", [azure, plain])
def test_previews_arrive_as_they_are_drawn_then_the_picture(fake, where):
    fake.generation_delay = 0.6
    previews: list = []
    output, seconds = draw(where(fake), ImageRequest("a red fox"), previews)
    [call] = fake.calls(GEN)
    body = call.json()
    assert body["stream"] is True and body["partial_images"] == 2
    assert [(i, data) for i, data, _ in previews] == [
        (0, png_bytes("partial0:a red fox")),
        (1, png_bytes("partial1:a red fox")),
    ]
    # each preview came while the picture was still being drawn, evenly over the delay
    assert 0.15 < previews[0][2] < 0.4 and 0.35 < previews[1][2] < 0.6 <= seconds
    [image] = output.images
    assert image.data is not None and image.data.startswith(b"\x89PNG")
    assert image.data not in {data for _, data, _ in previews}


def test_the_setting_decides_how_many_previews(fake):
    previews: list = []
    draw(plain(fake, partial_images=3), ImageRequest("a fox"), previews)
    assert [i for i, _, _ in previews] == [0, 1, 2]
    assert fake.calls(GEN)[-1].json()["partial_images"] == 3


@pytest.mark.parametrize(
    ("settings", "request_"),
    [
        ({"partial_images": 0}, ImageRequest("a fox")),  # 0: the finished picture only
        ({}, ImageRequest("a fox", n=2)),  # the events carry no image index
        ({"model": "dall-e-3"}, ImageRequest("a fox")),  # DALL·E 3 does not stream
    ],
)
def test_no_stream_where_previews_cannot_be_shown(fake, settings, request_):
    previews: list = []
    output, _ = draw(plain(fake, **settings), request_, previews)
    assert output.images and not previews
    assert all("stream" not in c.json() for c in fake.calls(GEN))


def test_without_anyone_to_show_them_no_stream(fake):
    output, _ = draw(plain(fake), ImageRequest("a fox"), None)
    assert output.images and "stream" not in fake.calls(GEN)[0].json()


def test_an_azure_api_version_without_streaming_draws_plainly(fake):
    assert azure_streams("2025-04-01-preview") and azure_streams("2025-06-01")
    assert not azure_streams("2024-10-21") and not azure_streams("preview")
    previews: list = []
    output, _ = draw(azure(fake, api_version="2024-10-21"), ImageRequest("a fox"), previews)
    assert output.images and not previews
    assert "stream" not in fake.calls(GEN)[0].json()


def test_the_fake_refuses_what_the_api_refuses(fake):
    """Streams for models that do not stream, partial_images outside 0-3, and `stream` on an
    Azure API version that predates it."""
    url = f"{fake.url}/v1/images/generations"
    auth = {"Authorization": f"Bearer {OPENAI_KEY}"}
    for body in (
        {"model": "dall-e-3", "prompt": "a fox", "stream": True},
        {"model": "gpt-image-2", "prompt": "a fox", "stream": True, "partial_images": 4},
        {"model": "gpt-image-2", "prompt": "a fox", "stream": True, "partial_images": -1},
    ):
        answer = requests.post(url, json=body, headers=auth, timeout=5)
        assert answer.status_code == 400, body
        assert answer.json()["error"]["param"] in {"stream", "partial_images"}
    old = f"{fake.url}/openai/deployments/img/images/generations?api-version=2024-10-21"
    answer = requests.post(
        old, json={"prompt": "a fox", "stream": True}, headers={"api-key": AZURE_KEY}, timeout=5
    )
    assert answer.status_code == 400 and "stream" in answer.json()["error"]["message"]
    streamed = requests.post(
        url,
        json={"model": "gpt-image-2", "prompt": "a fox", "stream": True, "partial_images": 1},
        headers=auth,
        timeout=5,
    )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text.startswith("event: image_generation.partial_image\ndata: {")
    assert '"usage": {"input_tokens"' in streamed.text


def test_an_error_event_mid_stream_is_one_sentence_not_retried(fake):
    fake.script_stream_failure("server_error", after=1)
    previews: list = []
    with pytest.raises(ProviderUnavailableError, match="failed while drawing") as caught:
        draw(plain(fake), ImageRequest("a fox"), previews)
    assert [i for i, _, _ in previews] == [0]
    assert len(fake.calls(GEN)) == 1
    assert "sk-" not in caught.value.message


def test_a_picture_refused_mid_stream_says_so(fake):
    fake.script_stream_failure("moderation_blocked", after=2)
    with pytest.raises(ContentPolicyError, match="safety system") as caught:
        draw(plain(fake), ImageRequest("a fox"), [])
    assert caught.value.stage == "image"


def test_a_cut_stream_is_retried_and_its_previews_start_again(fake):
    fake.script_stream_failure("cut", after=1)
    previews: list = []
    output, _ = draw(plain(fake), ImageRequest("a fox"), previews)
    assert output.images and len(fake.calls(GEN)) == 2
    assert [i for i, _, _ in previews] == [0, 0, 1]


def test_a_throttled_stream_waits_and_is_retried_like_any_call(fake):
    """The stream is one call to the pacer and the retries: a 429 first, then the previews."""
    fake.rate_limit(retry_after_ms=50)
    previews: list = []
    output, _ = draw(azure(fake), ImageRequest("a fox"), previews)
    calls = fake.calls(GEN)
    assert len(calls) == 2 and all(c.json()["stream"] is True for c in calls)
    assert output.images and [i for i, _, _ in previews] == [0, 1]
