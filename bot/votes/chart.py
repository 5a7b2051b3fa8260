"""The leaderboard chart: Bradley-Terry ratings with 95 % intervals, drawn with Pillow.

People would rather look than read: one row per model, a dot for the rating, a line for the
interval, the vote count beside it; provisional models (too few votes) get a hollow grey dot
so nobody over-reads them. Pure: rows in, PNG bytes out, safe from any thread. The rows come
from `bot.votes.ratings`, but any objects with the attributes of `RatingRow` will do.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
STRIPE = (246, 247, 249)
GRID = (226, 229, 234)
ANCHOR = (190, 195, 204)
TEXT = (31, 41, 55)
MUTED = (107, 114, 128)
DOT = (37, 99, 235)
WHISKER = (30, 64, 175)
PROVISIONAL = (156, 163, 175)
ANCHOR_RATING = 1000.0
_MIN_SPAN = 100.0  # the axis never spans fewer rating points than this


class RatingRow(Protocol):
    """What the chart reads from each leaderboard row."""

    @property
    def model(self) -> str: ...
    @property
    def rating(self) -> float: ...
    @property
    def ci_low(self) -> float: ...
    @property
    def ci_high(self) -> float: ...
    @property
    def votes(self) -> int: ...
    @property
    def provisional(self) -> bool: ...


@dataclass(frozen=True)
class ChartRow:
    """A plain `RatingRow`, for callers and tests that have no ratings object at hand."""

    model: str
    rating: float
    ci_low: float
    ci_high: float
    votes: int
    provisional: bool = False


def ratings_chart(
    rows: Sequence[RatingRow], *, title: str, width: int = 1000, scale: int = 2
) -> bytes:
    """A PNG chart of `rows` in the given order (best first), `width * scale` pixels wide.

    `width` is at least 640. An empty `rows` gives a chart that says "No votes yet".

    Sizes are laid out for a `width`-pixel canvas with fonts large enough to read in a Slack
    preview, then drawn at `scale`x so dots and text stay sharp when opened full size.
    Raises ValueError for non-finite ratings or intervals.
    """
    for row in rows:
        if not all(math.isfinite(v) for v in (row.rating, row.ci_low, row.ci_high)):
            raise ValueError(f"The rating of {row.model} is not a finite number.")
    s = max(1, int(scale))
    width = max(width, 640)  # narrower leaves no room for the plot between the text columns
    font = _fonts(s)
    pad, row_h, title_h, axis_h, legend_h = 24 * s, 52 * s, 64 * s, 44 * s, 40 * s
    w = width * s
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    labels = [_fit_text(probe, row.model, font["label"], int(w * 0.34)) for row in rows]
    label_w = max((_text_w(probe, text, font["label"]) for text in labels), default=0)
    notes = [_note(row) for row in rows]
    note_w = max((_text_w(probe, text, font["small"]) for _, text in notes), default=0)
    value_w = max((_text_w(probe, text, font["value"]) for text, _ in notes), default=0)
    plot_l = pad + label_w + 20 * s
    plot_r = w - pad - value_w - note_w - 36 * s
    plot_t = title_h
    plot_b = plot_t + max(1, len(rows)) * row_h
    height = plot_b + axis_h + legend_h

    image = Image.new("RGB", (w, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((pad, title_h // 2), title, font=font["title"], fill=TEXT, anchor="lm")
    if not rows:
        draw.text(
            ((plot_l + plot_r) // 2, (plot_t + plot_b) // 2),
            "No votes yet",
            font=font["label"],
            fill=MUTED,
            anchor="mm",
        )
        return _png(image)

    lo, hi, ticks = _axis(rows)
    span = plot_r - plot_l

    def x_of(value: float) -> int:
        return round(plot_l + (value - lo) / (hi - lo) * span)

    for i in range(len(rows)):
        if i % 2 == 1:
            draw.rectangle((0, plot_t + i * row_h, w, plot_t + (i + 1) * row_h - 1), fill=STRIPE)
    for tick in ticks:
        colour = ANCHOR if abs(tick - ANCHOR_RATING) < 1e-6 else GRID
        draw.line((x_of(tick), plot_t, x_of(tick), plot_b), fill=colour, width=s)
        draw.line((x_of(tick), plot_b, x_of(tick), plot_b + 6 * s), fill=MUTED, width=s)
        draw.text(
            (x_of(tick), plot_b + 10 * s), f"{tick:g}", font=font["small"], fill=MUTED, anchor="mt"
        )
    draw.line((plot_l, plot_b, plot_r, plot_b), fill=MUTED, width=s)

    for i, (row, label, (value, note)) in enumerate(zip(rows, labels, notes, strict=True)):
        cy = plot_t + i * row_h + row_h // 2
        colour = PROVISIONAL if row.provisional else WHISKER
        text_colour = MUTED if row.provisional else TEXT
        draw.text((plot_l - 20 * s, cy), label, font=font["label"], fill=text_colour, anchor="rm")
        x0, x1 = sorted((x_of(row.ci_low), x_of(row.ci_high)))
        cap = 8 * s
        draw.line((x0, cy, x1, cy), fill=colour, width=3 * s)
        draw.line((x0, cy - cap, x0, cy + cap), fill=colour, width=3 * s)
        draw.line((x1, cy - cap, x1, cy + cap), fill=colour, width=3 * s)
        r, cx = 9 * s, x_of(row.rating)
        if row.provisional:
            draw.ellipse(
                (cx - r, cy - r, cx + r, cy + r), fill=BACKGROUND, outline=colour, width=3 * s
            )
        else:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=DOT)
        vx = w - pad - note_w - 12 * s
        draw.text((vx, cy), value, font=font["value"], fill=text_colour, anchor="rm")
        draw.text((w - pad - note_w, cy), note, font=font["small"], fill=MUTED, anchor="lm")

    _legend(draw, font["small"], pad, height - legend_h // 2, s, any(r.provisional for r in rows))
    return _png(image)


def _legend(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    x: int,
    cy: int,
    s: int,
    provisional: bool,
) -> None:
    """Dot = rating, line = 95 % interval, hollow dot = provisional: drawn, not typed."""
    r, gap = 7 * s, 10 * s
    draw.ellipse((x, cy - r, x + 2 * r, cy + r), fill=DOT)
    x += 2 * r + gap
    x = _legend_text(draw, font, x, cy, "rating") + 3 * gap
    draw.line((x, cy, x + 36 * s, cy), fill=WHISKER, width=3 * s)
    for end in (x, x + 36 * s):
        draw.line((end, cy - 6 * s, end, cy + 6 * s), fill=WHISKER, width=3 * s)
    x = _legend_text(draw, font, x + 36 * s + gap, cy, "95 % interval") + 3 * gap
    if provisional:
        draw.ellipse((x, cy - r, x + 2 * r, cy + r), outline=PROVISIONAL, width=3 * s)
        _legend_text(draw, font, x + 2 * r + gap, cy, "provisional: too few votes yet")


def _legend_text(draw: ImageDraw.ImageDraw, font, x: int, cy: int, text: str) -> int:
    draw.text((x, cy), text, font=font, fill=MUTED, anchor="lm")
    return x + _text_w(draw, text, font)


def _note(row: RatingRow) -> tuple[str, str]:
    """The rating as text, and the vote count (with "provisional" when it applies)."""
    votes = f"{row.votes} vote" + ("" if row.votes == 1 else "s")
    return f"{row.rating:.0f}", votes + (" · provisional" if row.provisional else "")


def _axis(rows: Sequence[RatingRow]) -> tuple[float, float, list[float]]:
    """A padded axis range with about 4 to 8 round ticks covering every rating and interval."""
    lo = min(min(r.rating, r.ci_low, r.ci_high) for r in rows)
    hi = max(max(r.rating, r.ci_low, r.ci_high) for r in rows)
    if hi - lo < _MIN_SPAN:
        mid = (hi + lo) / 2
        lo, hi = mid - _MIN_SPAN / 2, mid + _MIN_SPAN / 2
    margin = (hi - lo) * 0.06
    lo, hi = lo - margin, hi + margin
    step = _nice_step(hi - lo)
    first = math.ceil(lo / step) * step
    ticks = [first + k * step for k in range(int((hi - first) // step) + 1)]
    return lo, hi, ticks


def _nice_step(span: float) -> float:
    """The smallest round step (1, 2, 2.5 or 5 x 10^k) that gives at most 8 ticks."""
    magnitude = 10 ** math.floor(math.log10(span / 8))
    for factor in (1, 2, 2.5, 5, 10, 20):
        if span / (factor * magnitude) <= 8:
            return factor * magnitude
    return 20 * magnitude


def _fonts(s: int) -> dict[str, ImageFont.FreeTypeFont | ImageFont.ImageFont]:
    sizes = {"title": 28, "label": 22, "value": 22, "small": 18}
    try:
        return {name: ImageFont.load_default(size=size * s) for name, size in sizes.items()}
    except (TypeError, OSError):  # Pillow without FreeType
        return {name: ImageFont.load_default() for name in sizes}


def _text_w(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return int(right - left)


def _fit_text(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, limit: int
) -> str:
    """Shorten long model ids with an ellipsis so the plot keeps its width."""
    if _text_w(draw, text, font) <= limit:
        return text
    while len(text) > 1 and _text_w(draw, text + "…", font) > limit:
        text = text[:-1]
    return text + "…"


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=6)
    return out.getvalue()
