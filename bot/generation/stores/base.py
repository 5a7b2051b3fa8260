"""Where generated image bytes go to get a URL people can open."""

from __future__ import annotations

from abc import ABC, abstractmethod

from bot.generation.types import StoredImage


class ImageStore(ABC):
    name: str

    @abstractmethod
    def put(self, data: bytes, mime_type: str) -> StoredImage:
        """Store the bytes under a new, unique name and return a URL for them."""

    def url_for(self, ref: str) -> str | None:
        """A URL people can open now for `ref` (a `StoredImage.ref` this kind of store made),
        signed afresh where URLs are signed; None when `ref` is not one of this store's."""
        return None

    def delete(self, ref: str) -> bool:
        """Delete the picture kept as `ref` (retention, a person's request): True when it was
        there and is gone, False when it was gone already or is not this store's."""
        return False

    def get(self, ref: str) -> bytes | None:
        """The bytes of a picture this store kept as `ref` (to edit it); None when `ref` is not
        one of this store's; PictureGoneError when the object is gone (deleted, expired)."""
        return None

    def missing_settings(self) -> list[str]:
        return []

    def check(self) -> str:
        """A cheap authenticated call; returns a short description or raises ImagineError."""
        return "ready"


EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


def extension_for(mime_type: str) -> str:
    return EXTENSIONS.get(mime_type.lower(), "bin")
