"""The ratings chart, read back pixel by pixel: positions, whiskers, provisional rows, sizes."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
from PIL import Image, ImageChops

from bot.votes.chart import DOT, MUTED, PROVISIONAL, WHISKER, ChartRow, ratings_chart


def render(rows, **kwargs) -> Image.Image:
    data = ratings_chart(rows, title=kwargs.pop("title", "Leaderboard"), **kwargs)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def mask(image: Image.Image, colour: tuple[int, int, int]) -> bytes:
    """One byte per pixel: 255 where the pixel is exactly `colour`, else 0."""
    channels = [
        band.point(lambda v, c=c: 255 if v == c else 0)
        for band, c in zip(image.split(), colour, strict=True)
    ]
    return ImageChops.multiply(ImageChops.multiply(channels[0], channels[1]), channels[2]).tobytes()


def where(image: Image.Image, colour: tuple[int, int, int]) -> list[tuple[int, int]]:
    """(x, y) of every pixel exactly `colour`, above the x axis (the legend is below it)."""
    w = image.width
    hits = mask(image, colour)[: axis_y(image) * w]
    return [(m.start() % w, m.start() // w) for m in re.finditer(b"\xff", hits)]


def axis_y(image: Image.Image) -> int:
    """The x axis: the pixel row with the most axis-coloured pixels."""
    w, h = image.size
    hits = mask(image, MUTED)
    return max(range(h), key=lambda y: hits[y * w : (y + 1) * w].count(255))


def bands(points: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Group pixels into rows of the chart by their y (rows are far apart)."""
    groups: list[list[tuple[int, int]]] = []
    for point in sorted(points, key=lambda p: p[1]):
        if groups and point[1] - groups[-1][-1][1] <= 2:
            groups[-1].append(point)
        else:
            groups.append([point])
    return groups


def centre_x(points: list[tuple[int, int]]) -> float:
    return sum(x for x, _ in points) / len(points)


def extent(points: list[tuple[int, int]]) -> int:
    xs = [x for x, _ in points]
    return max(xs) - min(xs)


def test_size_is_width_times_scale_and_grows_one_row_at_a_time() -> None:
    def rows(n: int) -> list[ChartRow]:
        return [
            ChartRow(f"model-{i}", 1000 + 10 * i, 980 + 10 * i, 1020 + 10 * i, 20) for i in range(n)
        ]

    heights = [render(rows(n)).size for n in (1, 2, 5)]
    assert [w for w, _ in heights] == [2000, 2000, 2000]
    step = heights[1][1] - heights[0][1]
    assert step > 40
    assert heights[2][1] - heights[0][1] == 4 * step
    assert render(rows(3), width=1200, scale=1).size[0] == 1200


def test_dots_move_right_with_the_rating_and_keep_the_given_order() -> None:
    rows = [
        ChartRow("gemini-3.1-flash-image", 1100, 1080, 1120, 50),
        ChartRow("gpt-image-2", 1000, 980, 1020, 50),
        ChartRow("imagen-4.0-generate-001", 900, 880, 920, 50),
        ChartRow("gpt-image-1", 950, 930, 970, 50),  # out of order on purpose
    ]
    dots = bands(where(render(rows), DOT))
    assert len(dots) == 4
    xs = [centre_x(band) for band in dots]  # top to bottom = the given order
    assert xs[0] > xs[1] > xs[3] > xs[2]
    # Linear scale: equal rating steps are equal pixel steps.
    assert xs[0] - xs[1] == pytest.approx(xs[1] - xs[2], abs=2)
    assert xs[1] - xs[3] == pytest.approx((xs[1] - xs[2]) / 2, abs=2)


def test_a_higher_rating_moves_the_dot_right_across_charts_with_the_same_axis() -> None:
    def dot_x(rating: float) -> float:
        rows = [ChartRow("a", rating, 850, 1150, 30), ChartRow("b", 1000, 850, 1150, 30)]
        return centre_x(bands(where(render(rows), DOT))[0])

    assert dot_x(900) < dot_x(1000) < dot_x(1100)


def test_whiskers_span_the_interval() -> None:
    rows = [
        ChartRow("narrow", 1000, 980, 1020, 40),
        ChartRow("medium", 1000, 960, 1040, 40),
        ChartRow("wide", 1000, 940, 1060, 40),
    ]
    image = render(rows)
    whiskers = bands(where(image, WHISKER))
    assert len(whiskers) == 3
    narrow, medium, wide = (extent(band) for band in whiskers)
    assert narrow < medium < wide
    # Interval widths 40, 80, 120 points: equal steps in pixels.
    assert wide - medium == pytest.approx(medium - narrow, abs=2)
    # Centred on the dot.
    dots = bands(where(image, DOT))
    for dot, whisker in zip(dots, whiskers, strict=True):
        xs = [x for x, _ in whisker]
        assert (min(xs) + max(xs)) / 2 == pytest.approx(centre_x(dot), abs=3)


def test_asymmetric_interval_is_drawn_where_it_lies() -> None:
    rows = [ChartRow("a", 1000, 990, 1090, 40), ChartRow("b", 1000, 910, 1010, 40)]
    image = render(rows)
    dots, whiskers = bands(where(image, DOT)), bands(where(image, WHISKER))
    for dot, whisker, more_right in zip(dots, whiskers, (True, False), strict=True):
        xs, cx = [x for x, _ in whisker], centre_x(dot)
        assert (max(xs) - cx > cx - min(xs)) is more_right


def test_provisional_rows_get_a_hollow_grey_dot_and_grey_whisker() -> None:
    rows = [
        ChartRow("gpt-image-2", 1050, 1020, 1080, 120, provisional=False),
        ChartRow("new-model", 950, 880, 1020, 3, provisional=True),
    ]
    image = render(rows)
    dots = bands(where(image, DOT))
    grey = bands(where(image, PROVISIONAL))
    blue_whiskers = bands(where(image, WHISKER))
    assert len(dots) == 1 and len(blue_whiskers) == 1  # only the settled row is blue
    assert len(grey) == 1
    settled_y = sum(y for _, y in dots[0]) / len(dots[0])
    provisional_y = sum(y for _, y in grey[0]) / len(grey[0])
    assert provisional_y > settled_y  # second row, below the first
    # Hollow: the centre of the grey ring is not grey (nor blue).
    ring = [p for p in grey[0] if abs(p[1] - provisional_y) < 4]
    xs = sorted(x for x, _ in ring)
    gaps = [b - a for a, b in zip(xs, xs[1:], strict=False)]
    assert max(gaps) > 5, "the provisional dot is filled"
    # And the grey dot sits to the left of the blue one (950 < 1050).
    assert centre_x(grey[0]) < centre_x(dots[0])


def test_one_row_and_zero_width_interval() -> None:
    image = render([ChartRow("gpt-image-2", 1000, 1000, 1000, 0)])
    dots = bands(where(image, DOT))
    assert len(dots) == 1
    assert extent(dots[0]) > 10  # a real dot, not a speck
    assert 0 < centre_x(dots[0]) < image.width


def test_equal_ratings_line_up() -> None:
    rows = [ChartRow(f"m{i}", 1000, 1000, 1000, 10) for i in range(3)]
    xs = [centre_x(band) for band in bands(where(render(rows), DOT))]
    assert len(xs) == 3
    assert max(xs) - min(xs) < 1


def test_many_rows_each_get_a_dot() -> None:
    rows = [
        ChartRow(f"model-{i:02d}", 1200 - 12 * i, 1170 - 12 * i, 1230 - 12 * i, 100)
        for i in range(30)
    ]
    dots = bands(where(render(rows), DOT))
    assert len(dots) == 30
    xs = [centre_x(band) for band in dots]
    assert xs == sorted(xs, reverse=True)


def test_long_model_ids_keep_the_plot_usable() -> None:
    long_name = "a-very-long-model-identifier-" * 6
    rows = [ChartRow(long_name, 1100, 1050, 1150, 9), ChartRow("short", 900, 850, 950, 9)]
    image = render(rows)
    xs = [centre_x(band) for band in bands(where(image, DOT))]
    assert xs[0] - xs[1] > image.width * 0.2  # the plot keeps a useful width


def test_any_object_with_the_attributes_works() -> None:
    row = SimpleNamespace(
        model="gpt-image-2",
        rating=1010.0,
        ci_low=990.0,
        ci_high=1030.0,
        votes=12,
        provisional=False,
    )
    assert len(bands(where(render([row]), DOT))) == 1


def test_no_rows_still_gives_a_picture() -> None:
    image = render([], title="Nothing yet")
    assert image.width == 2000
    assert bytes(DOT) not in image.tobytes()[: image.width * 3 * (image.height // 2)]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="gpt-image-2"):
        ratings_chart([ChartRow("gpt-image-2", bad, 990, 1010, 3)], title="x")
    with pytest.raises(ValueError):
        ratings_chart([ChartRow("gpt-image-2", 1000, 990, bad, 3)], title="x")
