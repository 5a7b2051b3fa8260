"""A store that writes files into a local directory: `python -m bot generate --out DIR`."""

from __future__ import annotations

import uuid
from pathlib import Path

from bot.generation.stores.base import ImageStore, extension_for
from bot.generation.types import StoredImage, StoreError


class DirectoryImageStore(ImageStore):
    name = "directory"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def put(self, data: bytes, mime_type: str) -> StoredImage:
        path = self.directory / f"{uuid.uuid4().hex}.{extension_for(mime_type)}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with path.open("xb") as out:  # "x": never overwrite
                out.write(data)
        except OSError as err:
            raise StoreError(f"Could not write {path}: {err.strerror}.") from None
        uri = path.resolve().as_uri()
        return StoredImage(url=uri, mime_type=mime_type, data=data, ref=uri)

    def delete(self, ref: str) -> bool:
        """Delete a file this store wrote (`file://` under its directory)."""
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(ref)
        path = Path(unquote(parts.path)) if parts.scheme == "file" else None
        if path is None or path.parent != self.directory.resolve():
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True
