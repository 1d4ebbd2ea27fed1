"""Read a PNG far enough to tell whether it is all black: stdlib ``zlib``, no imaging library.

An all-black image is the classic MPS failure of an fp16 VAE: the decode yields NaN, and
NaN becomes 0 when ComfyUI converts the image to 8 bits. Pure: bytes in, ``PngCheck`` out.
"""

from __future__ import annotations

import struct
import zlib

from pydantic import BaseModel, ConfigDict

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# colour type -> (channels, channels that are colour rather than alpha)
_CHANNELS = {0: (1, 1), 2: (3, 3), 4: (2, 1), 6: (4, 3)}


class PngError(ValueError):
    """The bytes are not a PNG this reader understands."""


class PngCheck(BaseModel):
    model_config = ConfigDict(frozen=True)

    width: int
    height: int
    black: bool


def check_png(data: bytes) -> PngCheck:
    """Decode ``data`` (8/16-bit grey, RGB, grey+alpha or RGBA; not interlaced) and report
    whether every colour sample is zero."""
    width, height, depth, colour, interlace, idat = _chunks(data)
    if colour not in _CHANNELS or depth not in (8, 16):
        raise PngError(f"unsupported PNG: colour type {colour}, bit depth {depth}")
    if interlace:
        raise PngError("unsupported PNG: interlaced")
    channels, colour_channels = _CHANNELS[colour]
    sample = depth // 8
    pixel = channels * sample
    stride = width * pixel
    try:
        raw = zlib.decompress(idat)
    except zlib.error as error:
        raise PngError(f"corrupt PNG image data: {error}") from None
    if len(raw) != height * (stride + 1):
        raise PngError(f"PNG image data is {len(raw)} bytes, expected {height * (stride + 1)}")
    if colour_channels == channels:
        # Every PNG filter predicts 0 from zero neighbours, so all-zero residuals (and only
        # they) decode to an all-zero image: without alpha there is no need to unfilter.
        return PngCheck(width=width, height=height, black=_all_residuals_zero(raw, height, stride))
    top = _max_colour_level(_unfilter(raw, height, stride, pixel), channels, colour_channels, sample)
    return PngCheck(width=width, height=height, black=top == 0)


def _chunks(data: bytes) -> tuple[int, int, int, int, int, bytes]:
    if not data.startswith(SIGNATURE):
        raise PngError("not a PNG (bad signature)")
    offset = len(SIGNATURE)
    header = None
    idat = bytearray()
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        if len(body) != length:
            raise PngError(f"truncated PNG chunk {kind!r}")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        offset += 12 + length
    if header is None:
        raise PngError("PNG has no IHDR chunk")
    if not idat:
        raise PngError("PNG has no image data")
    width, height, depth, colour, _, _, interlace = header
    return width, height, depth, colour, interlace, bytes(idat)


def _all_residuals_zero(raw: bytes, height: int, stride: int) -> bool:
    zero_row = bytes(stride)
    for row in range(height):
        start = row * (stride + 1) + 1
        if raw[start:start + stride] != zero_row:
            return False
    return True


def _unfilter(raw: bytes, height: int, stride: int, pixel: int) -> bytes:
    """Undo PNG's per-row filters (None, Sub, Up, Average, Paeth)."""
    out = bytearray(height * stride)
    previous = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(pixel, stride):
                line[i] = (line[i] + line[i - pixel]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous))
        elif kind == 3:
            for i in range(stride):
                left = line[i - pixel] if i >= pixel else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - pixel] if i >= pixel else 0
                b = previous[i]
                c = previous[i - pixel] if i >= pixel else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + predictor) & 0xFF
        elif kind != 0:
            raise PngError(f"unknown PNG filter type {kind} in row {row}")
        out[row * stride:(row + 1) * stride] = line
        previous = line
    return bytes(out)


def _max_colour_level(pixels: bytes, channels: int, colour_channels: int, sample: int) -> int:
    top = 0
    step = channels * sample
    for channel in range(colour_channels):
        if sample == 1:
            top = max(top, max(pixels[channel::step], default=0))
        else:
            high = pixels[channel * 2::step]
            low = pixels[channel * 2 + 1::step]
            top = max(top, max((h << 8 | lo for h, lo in zip(high, low)), default=0))
    return top
