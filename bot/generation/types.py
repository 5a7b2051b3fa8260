"""The vocabulary of the generation service: requests, images, results and errors.

Everything here is plain data so that the Slack layer, the command line and the tests can
share it without importing any network client.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from bot.generation.pricing import TokenUsage

ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4")
MAX_IMAGES = 4


def clean_text(text: str) -> str:
    """What a person typed, fit to draw and to store: every run of whitespace (line breaks and
    tabs included) one space, and control characters removed. A NUL cannot be stored in
    PostgreSQL, a lone surrogate (an undecodable byte on a command line) cannot be encoded at
    all, and neither means anything to a model. Format characters (the joiners inside emoji)
    stay."""
    kept = (ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cs"))
    return " ".join("".join(kept).split())


@dataclass(frozen=True)
class ImageRequest:
    """What a person asked for, independent of any provider's parameter names."""

    prompt: str
    n: int = 1
    aspect_ratio: str = "1:1"
    negative_prompt: str | None = None
    seed: int | None = None
    quality: str | None = None
    style: str | None = None


@dataclass(frozen=True)
class GeneratedImage:
    """One image as a provider returned it: bytes, or a (possibly expiring) provider URL."""

    data: bytes | None = None
    mime_type: str = "image/png"
    url: str | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.url is None):
            raise ValueError("a GeneratedImage has either data or a url")


@dataclass
class ProviderOutput:
    """What one provider call produced, before storage."""

    images: list[GeneratedImage]
    model: str
    revised_prompt: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    usage: TokenUsage | None = None  # tokens the API says it billed, when it says
    quality: str | None = None  # what was asked of the API, for the per-image price
    size: str | None = None


@dataclass(frozen=True)
class StoredImage:
    """An image ready to show: a URL people can open, and the bytes when we have them.

    `url` is None when no store was used (the Slack app then uploads `data` into Slack).
    """

    url: str | None
    mime_type: str = "image/png"
    data: bytes | None = field(default=None, repr=False)
    expires_in: float | None = None
    ref: str | None = None  # the store's own name for it (gs://bucket/object), to make a fresh
    # URL from later (`ImageStore.url_for`): a signed URL expires, and its signature is a secret


@dataclass
class ProviderResult:
    """One provider's outcome within a generation: images or an error, never both silent."""

    provider: str
    model: str | None = None
    images: list[StoredImage] = field(default_factory=list)
    revised_prompt: str | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: ImagineError | None = None
    cost_usd: float | None = None  # what the provider bills for it; None: not in the price table

    @property
    def ok(self) -> bool:
        return self.error is None


# ---------------------------------------------------------------------------------------
# Errors. Each carries one sentence a person can act on; `str(err)` is that sentence.
# Messages never contain secrets: build them from setting *names*, never values.
# ---------------------------------------------------------------------------------------


class ImagineError(Exception):
    """Base class: `message` is safe to show to the person who asked."""

    kind = "error"

    def __init__(self, message: str, *, provider: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider


class InvalidRequestError(ImagineError):
    """The request itself is not acceptable (empty prompt, option out of range...)."""

    kind = "invalid_request"


class ContentPolicyError(ImagineError):
    """The provider refused the prompt, or drew the picture and then withheld it.

    `stage` says which: "prompt" (the words were refused before anything was drawn) or
    "image" (the output was filtered; the prompt itself was accepted). People act differently
    on each, so the message names it too.
    """

    kind = "content_policy"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        provider: str | None = None,
        stage: str | None = None,
    ):
        super().__init__(message, provider=provider)
        self.reason = reason
        self.stage = stage


class NoImageError(ImagineError):
    """The provider answered without a picture and without blaming its safety filter."""

    kind = "no_image"


class RateLimitError(ImagineError):
    """Quota or rate limit still exceeded after our retries."""

    kind = "rate_limit"

    def __init__(
        self, message: str, *, retry_after: float | None = None, provider: str | None = None
    ):
        super().__init__(message, provider=provider)
        self.retry_after = retry_after


class ConfigurationError(ImagineError):
    """A setting is missing or wrong (bad key, unknown model or deployment)."""

    kind = "configuration"

    def __init__(self, message: str, *, setting: str | None = None, provider: str | None = None):
        super().__init__(message, provider=provider)
        self.setting = setting


class ProviderTimeoutError(ImagineError):
    """The provider did not answer within the configured timeout."""

    kind = "timeout"


class ProviderUnavailableError(ImagineError):
    """The provider kept failing (5xx, connection errors) after our retries."""

    kind = "unavailable"


class StoreError(ImagineError):
    """The images were generated but could not be stored."""

    kind = "store"


class PictureGoneError(ImagineError):
    """The picture to edit cannot be read any more (deleted, expired from the bucket)."""

    kind = "picture_gone"


class CannotEditError(ImagineError):
    """The configured model draws but does not edit pictures (DALL·E 3, Imagen `:predict`)."""

    kind = "cannot_edit"
