"""What every image provider offers the generation service."""

from __future__ import annotations

import base64
import binascii
from abc import ABC, abstractmethod
from typing import ClassVar

from bot.config import Config
from bot.generation.pacing import NoPacer, Pacer
from bot.generation.types import (
    CannotEditError,
    ImageRequest,
    InvalidRequestError,
    ProviderOutput,
)


def decode_image(encoded: object) -> bytes | None:
    """Base64 image data as bytes, or None when it is not valid base64 or decodes to nothing.

    Strict (`validate=True`): the lenient decoder drops stray characters and would hand on
    garbage as a picture. A provider reports None as a failed image, never a crash.
    """
    if not isinstance(encoded, str | bytes):
        return None
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data or None


class ImageProvider(ABC):
    """One family of image models behind one user-facing name.

    Subclasses set `name`, `aliases` and `label`, and are built once per process from the
    config: network clients and credentials live on the instance and are reused by every
    call, from many threads at once.
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    label: ClassVar[str]  # who runs it, for messages: "Google Vertex AI"
    max_prompt_chars: ClassVar[int] = 4000
    pacer: Pacer = NoPacer()  # set by the service: every HTTP call to the model waits its turn

    @classmethod
    @abstractmethod
    def from_config(cls, config: Config) -> ImageProvider:
        """Build the provider (and its reusable clients) from the whole config."""

    @property
    @abstractmethod
    def model(self) -> str:
        """The exact model id (or deployment) this provider will call."""

    @property
    def requests_per_minute(self) -> float | None:
        """The quota calls are paced to (None: not paced); each provider names its setting."""
        return None

    @abstractmethod
    def missing_settings(self) -> list[str]:
        """Names of the variables that must still be set; empty when configured."""

    @property
    def configured(self) -> bool:
        return not self.missing_settings()

    def validate(self, request: ImageRequest) -> None:
        """Raise InvalidRequestError when this provider cannot take the request at all.

        Options it can only approximate are not errors: `generate` reports them as notes.
        """
        if len(request.prompt) > self.max_prompt_chars:
            raise InvalidRequestError(
                f"The prompt is {len(request.prompt)} characters; {self.name} accepts at most "
                f"{self.max_prompt_chars}.",
                provider=self.name,
            )

    @abstractmethod
    def generate(self, request: ImageRequest) -> ProviderOutput:
        """Call the model; raise an ImagineError subclass a person can act on."""

    # -- edits: a picture and words in, a new picture out ---------------------------------
    max_edit_bytes: ClassVar[int] = 20 * 1024 * 1024  # the input picture, as sent
    max_edit_side: ClassVar[int] = 4096  # pixels; larger pictures are scaled down first

    @property
    def can_edit(self) -> bool:
        """Whether the configured model takes a picture to edit."""
        return False

    def edit_hint(self) -> str:
        """What to configure for edits, naming a model that can (for the cannot-edit sentence)."""
        return "choose another provider"

    def edit(self, prompt: str, image: bytes, mime_type: str) -> ProviderOutput:
        """Edit `image` as `prompt` says; CannotEditError unless `can_edit`."""
        raise CannotEditError(
            f"{self.model} cannot edit pictures; {self.edit_hint()}.", provider=self.name
        )

    @abstractmethod
    def check(self) -> str:
        """A cheap authenticated call; returns a short description or raises ImagineError."""
