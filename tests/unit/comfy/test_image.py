"""The all-black check on real PNGs written by Pillow: colour, grey, alpha, palette, 16-bit."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from provisioner.comfy.image import PngError, check_png


def png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def gradient(mode: str = "RGB", width: int = 6, height: int = 5) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 40, y * 50, 255 - x * 40) for y in range(height) for x in range(width)])
    return image.convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "I;16", "1"])
def test_a_black_image_is_black_and_a_gradient_is_not(mode):
    black = check_png(png(Image.new(mode, (6, 5))))
    assert black.black is True and (black.width, black.height) == (6, 5)
    assert check_png(png(gradient(mode))).black is False


def comfyui_text() -> PngInfo:
    info = PngInfo()
    info.add_text("prompt", '{"9": {"class_type": "SaveImage"}}')  # as ComfyUI's SaveImage does
    return info


@pytest.mark.parametrize("options", [{"optimize": True}, {"compress_level": 0},
                                     {"pnginfo": comfyui_text()}])
def test_how_the_file_is_encoded_does_not_matter(options):
    assert check_png(png(Image.new("RGB", (64, 48)), **options)).black is True
    assert check_png(png(gradient(width=64, height=48), **options)).black is False


def test_alpha_is_not_colour():
    assert check_png(png(Image.new("RGBA", (6, 5), (0, 0, 0, 255)))).black is True
    assert check_png(png(Image.new("LA", (6, 5), (0, 255)))).black is True
    assert check_png(png(Image.new("RGBA", (6, 5), (0, 0, 1, 0)))).black is False


def test_a_palette_image_is_judged_by_its_colours_not_its_indices():
    all_index_zero = Image.new("P", (6, 5), 0)
    all_index_zero.putpalette([200, 10, 10] + [0, 0, 0] * 255)  # index 0 is red
    assert check_png(png(all_index_zero)).black is False
    black = Image.new("P", (6, 5), 3)
    black.putpalette([255, 255, 255] * 3 + [0, 0, 0] * 253)  # index 3 is black
    assert check_png(png(black)).black is True


@pytest.mark.parametrize("lit", [(0, 1, 0), (1, 0, 0), (0, 0, 1)])
def test_one_barely_lit_pixel_is_near_black_not_black(lit):
    image = Image.new("RGB", (64, 64))
    image.putpixel((63, 63), lit)
    assert check_png(png(image)).black is False


def test_a_16_bit_grey_pixel_counts_at_full_depth():
    image = Image.new("I;16", (8, 8))
    image.putpixel((7, 7), 1)  # 1/65535: a pixel at 8 bits would round it away
    assert check_png(png(image)).black is False


def test_what_is_not_a_png_says_so():
    gif = io.BytesIO()
    Image.new("RGB", (6, 5)).save(gif, "GIF")
    for data in (b"", b"GIF89a...", gif.getvalue(), b"<html>502 Bad Gateway</html>"):
        with pytest.raises(PngError, match="not a PNG"):
            check_png(data)


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.9, -5])
def test_a_truncated_png_is_an_error(keep):
    data = png(gradient(width=64, height=48))
    cut = data[:int(len(data) * keep)] if keep > 0 else data[:keep]
    with pytest.raises(PngError):
        check_png(cut)


def test_a_corrupt_png_is_an_error():
    data = bytearray(png(gradient(width=64, height=48)))
    data[data.index(b"IDAT") + 10] ^= 0xFF  # image data changed: the CRC no longer matches
    with pytest.raises(PngError, match="corrupt"):
        check_png(bytes(data))
