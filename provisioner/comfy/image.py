"""Tell whether a PNG that ComfyUI saved is all black (Pillow decodes it).

An all-black image is the classic MPS failure of an fp16 VAE: the decode yields NaN, and
NaN becomes 0 when ComfyUI converts the image to 8 bits, so "black" means every colour
sample is exactly 0 (alpha does not count); one lit pixel is not black. Pure: bytes in,
``PngCheck`` out.
"""

from __future__ import annotations

import io
import struct

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict

# What Pillow raises on a PNG it cannot decode.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error,
                  Image.DecompressionBombError)


class PngError(ValueError):
    """The bytes are not a readable PNG."""


class PngCheck(BaseModel):
    model_config = ConfigDict(frozen=True)

    width: int
    height: int
    black: bool


def check_png(data: bytes) -> PngCheck:
    """Decode the PNG ``data`` and report its size and whether every colour sample is zero."""
    try:
        # verify() reads every chunk to IEND and checks its CRC: truncated or corrupt files
        # fail here even where load() would pad them (ImageFile.LOAD_TRUNCATED_IMAGES).
        with Image.open(io.BytesIO(data), formats=["PNG"]) as png:
            png.verify()
        with Image.open(io.BytesIO(data), formats=["PNG"]) as png:
            png.load()
            # Palette images hold indices, not levels: look at the colours they stand for.
            image = png.convert("RGBA") if png.mode in ("P", "PA") else png
            bands = image.getbands()
            extrema = image.getextrema()
    except UnidentifiedImageError:
        raise PngError(f"not a PNG (it begins {data[:16]!r})") from None
    except _DECODE_ERRORS as error:
        raise PngError(f"a corrupt or truncated PNG ({error})") from None
    levels = [extrema] if len(bands) == 1 else list(extrema)
    black = all(high == 0 for band, (_, high) in zip(bands, levels) if band != "A")
    return PngCheck(width=png.width, height=png.height, black=black)
