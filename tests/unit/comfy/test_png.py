"""The all-black check decodes real PNGs: every filter type, with and without alpha."""

from __future__ import annotations

import struct
import zlib

import pytest

from provisioner.comfy.png import PngError, check_png


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode(pixels: list[list[tuple[int, ...]]], colour: int = 2, filters=(0,)) -> bytes:
    """Write an 8-bit PNG, cycling through ``filters`` row by row (real encoders mix them)."""
    height, width = len(pixels), len(pixels[0])
    channels = len(pixels[0][0])
    bpp = channels
    raw = bytearray()
    previous = bytes(width * channels)
    for y, row in enumerate(pixels):
        line = bytes(v for px in row for v in px)
        kind = filters[y % len(filters)]
        out = bytearray()
        for i, value in enumerate(line):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = a
            elif kind == 2:
                pred = b
            elif kind == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            out.append((value - pred) & 0xFF)
        raw += bytes([kind]) + out
        previous = line
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"tEXt", b"prompt\x00{}")
            + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b""))


def gradient(width=6, height=5, alpha=False):
    return [[(x * 40, y * 50, 255 - x * 40) + ((255,) if alpha else ()) for x in range(width)]
            for y in range(height)]


def black(width=6, height=5, alpha=None):
    return [[(0, 0, 0) + ((alpha,) if alpha is not None else ()) for _ in range(width)]
            for _ in range(height)]


@pytest.mark.parametrize("filters", [(0,), (1,), (2,), (3,), (4,), (0, 1, 2, 3, 4)])
def test_a_black_rgb_image_is_black_and_a_gradient_is_not(filters):
    assert check_png(encode(black(), filters=filters)).black is True
    result = check_png(encode(gradient(), filters=filters))
    assert result.black is False and (result.width, result.height) == (6, 5)


@pytest.mark.parametrize("filters", [(0,), (1,), (4,), (0, 1, 2, 3, 4)])
def test_alpha_is_not_colour(filters):
    assert check_png(encode(black(alpha=255), colour=6, filters=filters)).black is True
    assert check_png(encode(gradient(alpha=True), colour=6, filters=filters)).black is False


def test_one_lit_pixel_is_not_black():
    pixels = black(width=8, height=8)
    pixels[7][7] = (0, 1, 0)
    assert check_png(encode(pixels, filters=(4,))).black is False


def test_what_is_not_a_png_says_so():
    with pytest.raises(PngError, match="signature"):
        check_png(b"GIF89a...")
    truncated = encode(gradient())[:40]
    with pytest.raises(PngError):
        check_png(truncated)
