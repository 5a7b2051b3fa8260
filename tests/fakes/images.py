"""Real image bytes for the fakes to return, made with Pillow."""

from __future__ import annotations

import hashlib
import io

from PIL import Image


def png_bytes(seed: str = "", size: tuple[int, int] = (64, 64), fmt: str = "PNG") -> bytes:
    """A small solid-colour image whose colour depends on `seed`, so tests can tell images apart."""
    digest = hashlib.sha256(seed.encode()).digest()
    image = Image.new("RGB", size, (digest[0], digest[1], digest[2]))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()
