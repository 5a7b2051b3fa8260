"""A comparison post as the vote store keeps it, and as it is drawn again (the reveal).

A signed URL expires (7 days at most) and its signature is a secret, so what is kept names each
picture by its store reference (`StoredImage.ref`, such as `gs://bucket/object`), and a redraw
asks the store for fresh URLs. A picture the store did not make (a provider's URL kept as it
is) is kept as its URL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

from bot.core.ports import ComparisonPost
from bot.generation.types import StoredImage


def _kept(image: StoredImage) -> str:
    return image.ref or image.url or ""


def kept_post(
    post: ComparisonPost, picture: StoredImage, originals: Mapping[str, Sequence[StoredImage]]
) -> dict[str, Any]:
    """`post` (which carries URLs) as it is stored: the same pictures, by reference."""
    kept = replace(
        post,
        pictures=[_kept(picture)] if picture.url else [],
        originals={p: [_kept(i) for i in images if i.url] for p, images in originals.items()},
    )
    return asdict(kept)


def redrawn_post(kept: Mapping[str, Any], link: Callable[[str], str | None]) -> dict[str, Any]:
    """A stored post with URLs that work now (`link`: `GenerationService.link`); a picture
    nothing here can open any more is left out rather than shown broken."""
    post = dict(kept)
    post["pictures"] = [url for url in map(link, post.get("pictures") or []) if url]
    post["originals"] = {
        position: [url for url in map(link, refs) if url]
        for position, refs in (post.get("originals") or {}).items()
    }
    return post
