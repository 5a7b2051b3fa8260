"""The comparison picture: sizes, order, colours, badges, odd inputs, bad bytes and speed."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from bot.generation.compose import (
    BACKGROUND,
    BADGE_FILL,
    Composed,
    compose_grid,
    side_by_side,
)

RED, GREEN, BLUE, ORANGE = (220, 30, 40), (30, 180, 60), (40, 60, 220), (240, 150, 20)


def solid(colour: tuple[int, int, int], size: tuple[int, int], fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format=fmt)
    return out.getvalue()


def decode(composed: Composed) -> Image.Image:
    image = Image.open(io.BytesIO(composed.data))
    image.load()
    return image.convert("RGB")


def close(pixel: tuple[int, ...], colour: tuple[int, int, int], tol: int = 10) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel, colour, strict=False))


def pixels(image: Image.Image) -> list[tuple[int, int, int]]:
    data = image.convert("RGB").tobytes()
    return [tuple(data[i : i + 3]) for i in range(0, len(data), 3)]


def count(image: Image.Image, box: tuple[int, int, int, int], colour, tol: int = 10) -> int:
    return sum(1 for pixel in pixels(image.crop(box)) if close(pixel, colour, tol))


def test_common_height_and_widths_sum_with_gutter() -> None:
    images = [solid(RED, (400, 300)), solid(GREEN, (200, 400)), solid(BLUE, (640, 160))]
    out = side_by_side(images, ["A", "B", "C"], height=300, gutter=8, fmt="PNG")
    picture = decode(out)
    widths = [400, 150, 1200]  # each scaled to height 300, aspect kept
    assert out.mime_type == "image/png"
    assert picture.size == (sum(widths) + 2 * 8, 300)


def test_each_panel_holds_its_input_in_the_given_order() -> None:
    red, green = solid(RED, (400, 300)), solid(GREEN, (300, 600), fmt="JPEG")
    picture = decode(side_by_side([red, green], ["A", "B"], height=300, gutter=10))
    # red: 400 wide; gutter 400..409; green: 150 wide from 410.
    assert picture.size == (560, 300)
    assert close(picture.getpixel((300, 250)), RED)
    assert close(picture.getpixel((395, 150)), RED)
    assert close(picture.getpixel((404, 150)), BACKGROUND, tol=6)
    assert close(picture.getpixel((415, 150)), GREEN)
    assert close(picture.getpixel((540, 280)), GREEN)
    assert count(picture, (410, 0, 560, 300), RED, tol=40) == 0

    swapped = decode(side_by_side([green, red], ["A", "B"], height=300, gutter=10))
    assert swapped.size == (560, 300)
    assert close(swapped.getpixel((100, 250)), GREEN)
    assert close(swapped.getpixel((400, 250)), RED)


def test_default_output_is_jpeg_and_small() -> None:
    out = side_by_side([solid(RED, (512, 512)), solid(BLUE, (512, 512))], ["A", "B"])
    data, mime = out  # unpacks as a tuple
    assert mime == "image/jpeg"
    assert data[:3] == b"\xff\xd8\xff"
    assert decode(out).size == (512 * 2 + 8, 512)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_label_badge_in_the_top_left_corner_of_every_panel(fmt: str) -> None:
    panels = [solid(RED, (300, 300)), solid(GREEN, (450, 300)), solid(BLUE, (300, 300))]
    picture = decode(side_by_side(panels, ["A", "B", "C"], height=300, gutter=8, fmt=fmt))
    tol = 2 if fmt == "PNG" else 24
    lefts, colours = [0, 308, 766], [RED, GREEN, BLUE]
    assert picture.size == (1066, 300)
    for left, colour in zip(lefts, colours, strict=True):
        corner = (left, 0, left + 80, 80)
        dark = count(picture, corner, BADGE_FILL, tol)
        white = count(picture, corner, (255, 255, 255), tol)
        assert dark > 300, f"no badge at x={left}"  # a filled badge, not a stray pixel
        assert white > 30, f"no letter or rim at x={left}"
        # The rest of the panel is untouched: no badge in the bottom-right corner.
        right = left + (450 if colour == GREEN else 300)
        assert count(picture, (right - 90, 210, right - 10, 290), BADGE_FILL, 40) == 0
        assert count(picture, (right - 90, 210, right - 10, 290), colour, tol) == 80 * 80


def test_labels_are_drawn_as_given() -> None:
    panels = [solid(RED, (300, 300)), solid(RED, (300, 300))]
    a_b = decode(side_by_side(panels, ["A", "B"], height=300, fmt="PNG"))
    a_a = decode(side_by_side(panels, ["A", "A"], height=300, fmt="PNG"))
    # Same badge for the same letter; a different letter changes the pixels.
    assert a_a.crop((0, 0, 80, 80)).tobytes() == a_a.crop((308, 0, 388, 80)).tobytes()
    assert a_b.crop((0, 0, 80, 80)).tobytes() != a_b.crop((308, 0, 388, 80)).tobytes()


def test_never_enlarges_beyond_the_tallest_input() -> None:
    out = side_by_side([solid(RED, (64, 64)), solid(BLUE, (32, 48))], ["A", "B"], height=768)
    assert decode(out).size == (64 + 8 + 43, 64)


def test_wide_rows_shrink_to_max_width_keeping_aspect() -> None:
    images = [solid(RED, (2000, 500)), solid(GREEN, (2000, 500)), solid(BLUE, (2000, 500))]
    picture = decode(side_by_side(images, ["A", "B", "C"], height=500, max_width=1216, gutter=8))
    assert picture.width <= 1216
    assert picture.height == 100  # (1216 - 16) / 3 = 400 wide per panel, 4:1 kept
    assert picture.size == (3 * 400 + 16, 100)
    assert close(picture.getpixel((1200, 60)), BLUE)


def test_transparent_palette_and_other_modes_are_flattened() -> None:
    rgba = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    rgba.paste((*BLUE, 255), (100, 0, 200, 200))  # left half transparent, right half blue
    palette = Image.new("RGB", (100, 200), ORANGE).convert("P", palette=Image.Palette.ADAPTIVE)
    p_transparent = Image.new("P", (100, 200), 0)
    p_transparent.putpalette([*GREEN, *RED] + [0] * 762)
    p_transparent.info["transparency"] = 0  # colour 0 is transparent
    grey = Image.new("L", (100, 200), 90)
    cmyk = Image.new("CMYK", (100, 200), (0, 255, 255, 0))  # pure red in print colours

    def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
        out = io.BytesIO()
        image.save(out, format=fmt)
        return out.getvalue()

    inputs = [encoded(rgba), encoded(palette), encoded(p_transparent), encoded(grey)]
    inputs.append(encoded(cmyk, "JPEG"))
    out = side_by_side(inputs, list("ABCDE"), height=200, gutter=0, fmt="PNG")
    picture = decode(out)
    assert picture.size == (200 + 4 * 100, 200)
    assert close(picture.getpixel((50, 150)), BACKGROUND, tol=2)  # transparent -> white
    assert close(picture.getpixel((150, 150)), BLUE, tol=2)
    assert close(picture.getpixel((250, 150)), ORANGE, tol=6)
    assert close(picture.getpixel((350, 150)), BACKGROUND, tol=2)  # transparent palette entry
    assert close(picture.getpixel((450, 150)), (90, 90, 90), tol=2)
    red = picture.getpixel((550, 150))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_exif_orientation_is_honoured() -> None:
    image = Image.new("RGB", (200, 100), RED)
    image.paste(BLUE, (100, 0, 200, 100))  # stored: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, quality=95)
    picture = decode(side_by_side([out.getvalue()], ["A"], height=200, fmt="PNG"))
    assert picture.size == (100, 200)  # displayed portrait
    assert close(picture.getpixel((50, 40 + 100)), BLUE, tol=30)  # was right, now bottom
    assert close(picture.getpixel((80, 60)), RED, tol=30)


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"not an image at all",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        solid(RED, (300, 300))[:120],  # a real header, truncated data
        solid(RED, (300, 300), fmt="JPEG")[:200],
    ],
)
def test_corrupt_bytes_raise_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError, match="could not be read|is empty") as caught:
        side_by_side([solid(GREEN, (64, 64)), bad], ["A", "B"])
    assert "Image B " in str(caught.value)  # names the panel


def test_argument_errors() -> None:
    with pytest.raises(ValueError):
        side_by_side([solid(RED, (8, 8))], ["A", "B"])
    with pytest.raises(ValueError):
        side_by_side([], [])
    with pytest.raises(ValueError):
        side_by_side([solid(RED, (8, 8))], ["A"], fmt="GIF")


def test_two_1024_images_compose_quickly() -> None:
    def noisy(fmt: str) -> bytes:  # photo-like worst case: nothing compresses
        out = io.BytesIO()
        Image.frombytes("RGB", (1024, 1024), os.urandom(1024 * 1024 * 3)).save(out, format=fmt)
        return out.getvalue()

    images = [noisy("PNG"), noisy("JPEG")]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        out = side_by_side(images, ["A", "B"])
        best = min(best, time.perf_counter() - started)
    assert decode(out).size == (1024 * 2 * 3 // 4 + 8, 768)
    assert best < 0.4, f"composing took {best:.3f} s"


def test_concurrent_calls_give_identical_pictures() -> None:
    images = [solid(RED, (300, 200)), solid(BLUE, (200, 300))]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: side_by_side(images, ["A", "B"]).data, range(16)))
    assert len(set(results)) == 1


def test_grid_one_column_per_provider_one_row_per_image() -> None:
    columns = [
        [solid(RED, (200, 200)), solid(ORANGE, (100, 200))],
        [solid(GREEN, (300, 200)), solid(BLUE, (300, 200))],
    ]
    picture = decode(compose_grid(columns, ["A", "B"], row_height=200, gutter=8, fmt="PNG"))
    assert picture.size == (200 + 8 + 300, 2 * 200 + 8)
    assert close(picture.getpixel((100, 150)), RED, tol=2)
    assert close(picture.getpixel((100, 350)), ORANGE, tol=2)  # centred in its wider cell
    assert close(picture.getpixel((20, 350)), BACKGROUND, tol=2)
    assert close(picture.getpixel((400, 150)), GREEN, tol=2)
    assert close(picture.getpixel((400, 350)), BLUE, tol=2)
    for left, top in [(0, 0), (50, 208), (208, 0), (208, 208)]:
        assert count(picture, (left, top, left + 60, top + 60), BADGE_FILL, 2) > 200


def test_grid_with_a_short_column_leaves_the_cell_blank() -> None:
    columns = [[solid(RED, (200, 200)), solid(RED, (200, 200))], [solid(GREEN, (200, 200))]]
    picture = decode(compose_grid(columns, ["A", "B"], row_height=200, gutter=8, fmt="PNG"))
    assert picture.size == (408, 408)
    blank = picture.crop((208, 208, 408, 408))
    assert set(pixels(blank)) == {BACKGROUND}


def test_grid_fits_max_height() -> None:
    columns = [[solid(RED, (400, 400))] * 4, [solid(BLUE, (400, 400))] * 4]
    picture = decode(compose_grid(columns, ["A", "B"], row_height=400, max_height=824, gutter=8))
    assert picture.height <= 824
    assert picture.size == (2 * 200 + 8, 4 * 200 + 3 * 8)


def test_shrinking_leaves_no_blank_edges_inside_panels() -> None:
    sizes, colours = [(997, 331), (503, 377), (1201, 403)], [RED, GREEN, BLUE]
    images = [solid(c, s) for c, s in zip(colours, sizes, strict=True)]
    picture = decode(side_by_side(images, list("ABC"), max_width=900, gutter=8, fmt="PNG"))
    assert picture.width <= 900
    assert picture.width >= 880  # shrunk only as much as needed
    height = picture.height
    expected = [round(w * height / h) for w, h in sizes]
    assert picture.width == sum(expected) + 16
    left = 0
    for width, colour in zip(expected, colours, strict=True):
        # The last row and the right column of each panel are the picture, not background.
        assert count(picture, (left, height - 1, left + width, height), colour, 3) == width
        assert count(picture, (left + width - 1, 100, left + width, height), colour, 3) == (
            height - 100
        )
        left += width + 8


def test_absurdly_large_image_is_refused_before_decoding() -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 2, 0, 0, 0)  # 400 MP, RGB
    huge = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    started = time.perf_counter()
    with pytest.raises(ValueError, match="Image B is too large"):
        side_by_side([solid(RED, (8, 8)), huge], ["A", "B"])
    assert time.perf_counter() - started < 1.0


def test_error_names_the_panel_in_a_grid() -> None:
    with pytest.raises(ValueError, match="Image A2 could not be read"):
        compose_grid([[solid(RED, (8, 8)), b"junk"], [solid(BLUE, (8, 8))]], ["A", "B"])
