"""The side-by-side picture for `/imagine compare`, made with Pillow.

Voters judge one picture, so the results are scaled to a common height, placed left to right
in the (randomised) order the caller chose, and labelled "A", "B", ... in a badge that reads
on any picture. Pure functions: bytes in, bytes out, no I/O, safe from any thread.

With n > 1 images per provider, use `compose_grid`: one column per provider, one row per
image. It keeps one message and one vote per comparison (the reactions vote for a column),
and Slack scales a single wide picture better than it stacks several: a grid of two columns
stays legible in the message preview, while n separate pictures would be collapsed.
"""

from __future__ import annotations

import io
import struct
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

BACKGROUND = (255, 255, 255)
BADGE_FILL = (24, 24, 27)
BADGE_OUTLINE = (255, 255, 255)
BADGE_TEXT = (255, 255, 255)
JPEG_QUALITY = 90
# Refuse absurd inputs before decoding them (a provider never returns more than ~16 MP).
_MAX_PIXELS = 64_000_000
_ORIENTATION = 0x0112


class Composed(NamedTuple):
    """The encoded picture and its MIME type (unpacks as `data, mime_type`)."""

    data: bytes
    mime_type: str


def side_by_side(
    images: list[bytes],
    labels: list[str],
    *,
    height: int = 768,
    gutter: int = 8,
    max_width: int = 2048,
    fmt: str = "JPEG",
) -> Composed:
    """One row: `images[i]` scaled to a common height, labelled `labels[i]`, left to right.

    The common height is `height`, or the tallest input's height if smaller (no point in
    enlarging every result). If the row would be wider than `max_width`, everything shrinks
    to fit. JPEG (the default) keeps photos ~10x smaller than PNG, so Slack shows them fast.
    Raises ValueError for unreadable bytes or mismatched arguments.
    """
    if len(images) != len(labels):
        raise ValueError("Each image needs exactly one label.")
    return compose_grid(
        [[image] for image in images],
        labels,
        row_height=height,
        gutter=gutter,
        max_width=max_width,
        max_height=max(height, 1),
        fmt=fmt,
    )


def compose_grid(
    columns: list[list[bytes]],
    labels: list[str],
    *,
    row_height: int = 512,
    gutter: int = 8,
    max_width: int = 2048,
    max_height: int = 2048,
    fmt: str = "JPEG",
) -> Composed:
    """A grid with one column per provider (`columns[i]`, labelled `labels[i]`), one row per image.

    Every cell is labelled with its column's label, because the reactions vote for a column.
    Each image is scaled to the row height and centred in a cell as wide as its column's
    widest image; a column with fewer images leaves its last cells blank. The whole grid is
    shrunk to fit within `max_width` x `max_height`.
    """
    if not columns or not any(columns):
        raise ValueError("There are no images to compose.")
    if len(columns) != len(labels):
        raise ValueError("Each column needs exactly one label.")
    if row_height < 1 or gutter < 0 or max_width < 1 or max_height < 1:
        raise ValueError("Sizes must be positive.")
    fmt = fmt.upper()
    if fmt not in ("JPEG", "PNG"):
        raise ValueError("The format must be JPEG or PNG.")

    opened = [
        [
            _open(data, labels[c] if len(column) == 1 else f"{labels[c]}{r + 1}")
            for r, data in enumerate(column)
        ]
        for c, column in enumerate(columns)
    ]
    rows = max(len(column) for column in opened)
    tallest = max(source.size[1] for column in opened for source in column)
    cell_h = min(row_height, tallest)
    gutters_x = gutter * (len(opened) - 1)
    gutters_y = gutter * (rows - 1)
    cell_h = min(cell_h, max(1, (max_height - gutters_y) // rows))
    col_w = _column_widths(opened, cell_h)
    if sum(col_w) + gutters_x > max_width:  # too wide: shrink, then trim rounding overshoot
        cell_h = max(1, int(cell_h * (max_width - gutters_x) / sum(col_w)))
        col_w = _column_widths(opened, cell_h)
        while cell_h > 1 and sum(col_w) + gutters_x > max_width:
            cell_h -= 1
            col_w = _column_widths(opened, cell_h)

    canvas = Image.new("RGB", (sum(col_w) + gutters_x, rows * cell_h + gutters_y), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(cell_h)
    x = 0
    for column, width, label in zip(opened, col_w, labels, strict=True):
        for r, source in enumerate(column):
            y = r * (cell_h + gutter)
            scaled = _fit(source, width, cell_h)
            left = x + (width - scaled.width) // 2
            canvas.paste(scaled, (left, y))
            _badge(draw, font, label, left, y, cell_h)
        x += width + gutter

    out = io.BytesIO()
    if fmt == "JPEG":
        canvas.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        return Composed(out.getvalue(), "image/jpeg")
    canvas.save(out, format="PNG", compress_level=6)
    return Composed(out.getvalue(), "image/png")


class _Source(NamedTuple):
    """An opened input and its size as displayed (EXIF orientations 5-8 swap the sides)."""

    image: Image.Image
    size: tuple[int, int]
    name: str


def _open(data: bytes, name: str) -> _Source:
    """Read the header (PNG may decode here to find EXIF); JPEG decoding waits for the size."""
    try:
        image = Image.open(io.BytesIO(data))
        too_large = image.width * image.height > _MAX_PIXELS
        orientation = 1 if too_large else image.getexif().get(_ORIENTATION, 1)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"Image {name} is too large to compose.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as exc:
        raise ValueError(f"Image {name} could not be read.") from exc
    if too_large:
        raise ValueError(f"Image {name} is too large to compose.")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"Image {name} is empty.")
    size = (image.height, image.width) if orientation in (5, 6, 7, 8) else image.size
    return _Source(image, size, name)


def _column_widths(opened: list[list[_Source]], cell_h: int) -> list[int]:
    """Each column is as wide as its widest image once scaled to the row height."""
    return [
        max((_scaled_width(source.size, cell_h) for source in column), default=cell_h)
        for column in opened
    ]


def _scaled_width(size: tuple[int, int], height: int) -> int:
    return max(1, round(size[0] * height / size[1]))


def _fit(source: _Source, width: int, height: int) -> Image.Image:
    """Decode, scale to `height` (never wider than the cell), flatten transparency onto white."""
    image, (shown_w, shown_h) = source.image, source.size
    target = (min(width, _scaled_width(source.size, height)), height)
    if target[0] < _scaled_width(source.size, height):  # too wide: fit the width instead
        target = (target[0], max(1, round(shown_h * target[0] / shown_w)))
    try:
        # JPEG decodes straight at a reduced scale (at least the target size): much faster.
        swapped = source.size != image.size
        image.draft(None, target[::-1] if swapped else target)
        image.load()
        image = ImageOps.exif_transpose(image)
        image = image.convert("RGBA") if _has_alpha(image) else image.convert("RGB")
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise ValueError(f"Image {source.name} could not be read.") from exc
    image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if image.mode == "RGBA":
        flat = Image.new("RGB", image.size, BACKGROUND)
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    return image


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    )


def _font(cell_h: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    size = max(16, cell_h // 10)
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font still works
        return ImageFont.load_default()


def _badge(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    label: str,
    left: int,
    top: int,
    cell_h: int,
) -> None:
    """A dark rounded badge with a white rim and white text, in the panel's top-left corner."""
    margin = max(4, cell_h // 40)
    pad = max(4, cell_h // 40)
    stroke = max(1, cell_h // 300)  # a thin stroke in the text colour reads as bold
    x0, y0, x1, y1 = draw.textbbox((0, 0), label, font=font, stroke_width=stroke)
    text_w, text_h = x1 - x0, y1 - y0
    box_h = text_h + 2 * pad
    box_w = max(box_h, text_w + 2 * pad)  # square for one letter, wider for longer labels
    box = (left + margin, top + margin, left + margin + box_w, top + margin + box_h)
    rim = max(1, cell_h // 200)
    draw.rounded_rectangle(
        box, radius=box_h // 4, fill=BADGE_FILL, outline=BADGE_OUTLINE, width=rim
    )
    text_at = (box[0] + (box_w - text_w) / 2 - x0, box[1] + (box_h - text_h) / 2 - y0)
    draw.text(
        text_at, label, font=font, fill=BADGE_TEXT, stroke_width=stroke, stroke_fill=BADGE_TEXT
    )
