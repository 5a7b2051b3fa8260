"""Editing a picture: each provider against its fake, in the real wire formats (WIRE.md), and
the service around them (a model that cannot edit, a picture too large, a refusal)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bot.generation.inputs import fit_picture
from bot.generation.service import GenerationService
from bot.generation.types import (
    CannotEditError,
    ContentPolicyError,
    InvalidRequestError,
)
from tests.fakes.images import edited_png, image_format, png_bytes
from tests.fakes.openai_images import FakeOpenAIImages
from tests.fakes.vertex import MAX_REQUEST_BYTES, FakeVertexAI
from tests.test_google_provider import GEMINI, IMAGEN, MakeProvider
from tests.test_openai_provider import azure, plain, provider

# the fakes and the providers over them, as the providers' own tests build them
pytest_plugins = ("tests.test_google_provider", "tests.test_openai_provider")

PICTURE = png_bytes("a cat on a sofa", size=(96, 64))


# -- Google: the picture and the words in one user turn -------------------------------------


def test_gemini_edit_sends_the_picture_and_the_words_in_one_user_turn(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    output = make_provider(GEMINI).edit("make it night time", PICTURE, "image/png")

    (call,) = vertex.api_calls()
    assert call.path.endswith(f"/models/{GEMINI}:generateContent")
    (turn,) = call.json()["contents"]
    assert turn["role"] == "user"
    assert [sorted(part) for part in turn["parts"]] == [["inlineData"], ["text"]]
    assert turn["parts"][0]["inlineData"]["mimeType"] == "image/png"
    assert turn["parts"][1]["text"] == "make it night time"
    assert vertex.received_pictures == [PICTURE]
    (image,) = output.images
    assert image.data == edited_png(PICTURE, "make it night time")


def test_an_imagen_model_cannot_edit_and_says_which_model_can(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    google = make_provider(IMAGEN)
    assert not google.can_edit
    with pytest.raises(CannotEditError) as err:
        google.edit("make it night time", PICTURE, "image/png")
    assert "gemini" in str(err.value) and "IMAGEN_MODEL" in str(err.value)
    assert vertex.api_calls() == []


def test_a_refused_gemini_edit_is_a_content_policy_error(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    vertex.finish_without_image("IMAGE_SAFETY")
    with pytest.raises(ContentPolicyError) as err:
        make_provider(GEMINI).edit("make it gory", PICTURE, "image/png")
    assert err.value.stage == "image"


# -- OpenAI and Azure: images/edits, multipart ------------------------------------------------


def test_azure_edit_posts_multipart_to_the_deployments_edits_path(fake: FakeOpenAIImages) -> None:
    output = provider(azure(fake)).edit("make it a watercolor", PICTURE, "image/png")

    (call,) = fake.calls("/images/edits")
    assert call.path == "/openai/deployments/img/images/edits"
    assert call.query["api-version"] == "2025-04-01-preview"
    assert call.headers["content-type"].startswith("multipart/form-data")
    assert fake.received_pictures == [PICTURE]
    (image,) = output.images
    assert image.data == edited_png(PICTURE, "make it a watercolor")


def test_openai_edit_names_the_model_in_the_form(fake: FakeOpenAIImages) -> None:
    output = provider(plain(fake)).edit("make it a watercolor", PICTURE, "image/png")

    (call,) = fake.calls("/images/edits")
    assert call.path == "/v1/images/edits"
    assert b'name="model"\r\n\r\ngpt-image-2' in call.body
    assert output.images[0].data == edited_png(PICTURE, "make it a watercolor")


def test_dalle3_cannot_edit_and_names_a_gpt_image_model(fake: FakeOpenAIImages) -> None:
    dalle = provider(azure(fake, azure_deployment="d3", model="dall-e-3"))
    with pytest.raises(CannotEditError) as err:
        dalle.edit("make it a watercolor", PICTURE, "image/png")
    assert "gpt-image-1" in str(err.value)
    assert "AZURE_OPENAI_IMAGE_DEPLOYMENT" in str(err.value)
    assert fake.calls("/images/edits") == []


def test_a_refused_openai_edit_is_a_content_policy_error(fake: FakeOpenAIImages) -> None:
    fake.script_edit_refused()
    with pytest.raises(ContentPolicyError):
        provider(azure(fake)).edit("make it gory", PICTURE, "image/png")


# -- the service: what can edit, and pictures made to fit -------------------------------------


def test_the_service_names_a_configured_provider_that_can_edit(
    fake: FakeOpenAIImages, make_provider: MakeProvider
) -> None:
    service = GenerationService(
        {
            "imagen": make_provider(GEMINI),
            "dalle3": provider(azure(fake, azure_deployment="d3", model="dall-e-3")),
        }
    )
    result = service.edit("make it a watercolor", "dalle3", PICTURE)
    assert isinstance(result.error, CannotEditError)
    assert "`imagen:`" in result.error.message
    assert fake.calls("/images/edits") == []


def test_a_picture_too_large_for_vertex_is_scaled_down_first(
    vertex: FakeVertexAI, make_provider: MakeProvider
) -> None:
    noise = np.random.default_rng(7).integers(0, 256, (2700, 2700, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, "PNG", compress_level=1)
    huge = out.getvalue()
    assert len(huge) * 4 / 3 > MAX_REQUEST_BYTES  # as sent, it would be refused

    service = GenerationService({"imagen": make_provider(GEMINI)})
    result = service.edit("make it night time", "imagen", huge)

    assert result.error is None, result.error
    (sent,) = vertex.received_pictures
    assert sent != huge and image_format(sent) in ("PNG", "JPEG")
    assert len(vertex.api_calls()[0].body) <= MAX_REQUEST_BYTES
    assert result.images[0].data == edited_png(sent, "make it night time")


def test_fit_picture_keeps_what_fits_and_shrinks_what_does_not() -> None:
    assert fit_picture(PICTURE, max_bytes=10_000, max_side=4096) == (PICTURE, "image/png")
    big = png_bytes("big", size=(1000, 500))
    data, mime = fit_picture(big, max_bytes=10_000_000, max_side=256)
    with Image.open(io.BytesIO(data)) as image:
        assert max(image.size) == 256 and mime == "image/png"
    gif = png_bytes("gif", size=(32, 32), fmt="GIF")
    assert fit_picture(gif, max_bytes=10_000, max_side=4096)[1] == "image/png"
    with pytest.raises(InvalidRequestError):
        fit_picture(b"not a picture", max_bytes=10_000, max_side=4096)
