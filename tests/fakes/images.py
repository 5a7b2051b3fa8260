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


def edited_png(source: bytes, words: str) -> bytes:
    """What a fake model returns for an edit: a picture that depends on the exact input bytes
    and the words, so a test can tell which picture was edited (and chained edits apart)."""
    return png_bytes(f"edit:{hashlib.sha256(source).hexdigest()[:16]}:{words}")


def image_format(data: bytes) -> str | None:
    """Pillow's name for the picture's format ("PNG", "JPEG"), None when it is not one."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            return image.format
    except Exception:
        return None
