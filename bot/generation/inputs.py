"""Pictures going *into* a provider (edits): made to fit its input limits with Pillow.

A picture from Slack or the bucket can be larger than a provider takes (Vertex AI: 20 MB per
request, base64 included; OpenAI: 50 MB per image). Rather than fail, it is scaled down and
re-encoded until it fits; a picture Pillow cannot read is refused with a sentence.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from bot.generation.types import InvalidRequestError

MIN_SIDE = 64  # smaller than this, nothing is left to edit
ACCEPTED = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def fit_picture(data: bytes, *, max_bytes: int, max_side: int) -> tuple[bytes, str]:
    """The picture as (bytes, mime type) within `max_bytes` and `max_side` pixels a side:
    unchanged when it already fits in an accepted format, else scaled down (PNG, then JPEG)."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt, size = probe.format or "", probe.size
            image = probe.copy() if fmt not in ACCEPTED or max(size) > max_side else None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise InvalidRequestError("That file is not a picture I can read.") from None
    if image is None and len(data) <= max_bytes:
        return data, ACCEPTED[fmt]
    if image is None:
        image = Image.open(io.BytesIO(data))
    side = min(max_side, max(image.size))
    while True:
        scaled = image.copy()
        scaled.thumbnail((side, side), Image.Resampling.LANCZOS)
        encoded = _encode(scaled, "PNG")
        if len(encoded) > max_bytes:
            encoded = _encode(scaled.convert("RGB"), "JPEG")
        if len(encoded) <= max_bytes:
            return encoded, "image/png" if encoded.startswith(b"\x89PNG") else "image/jpeg"
        if side <= MIN_SIDE:
            break
        side = max(MIN_SIDE, int(side * 0.7))
    raise InvalidRequestError("That picture is too large to edit, even scaled down.")


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "PNG" and image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGBA")
    image.save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {"optimize": False}))
    return out.getvalue()
