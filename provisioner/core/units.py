"""Byte sizes: parse what users type, format what we print."""

from __future__ import annotations

import re

GIB = 1024**3
GB = 1000**3

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "b": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_memory(text: str) -> int:
    """Parse a memory size as Apple sells it ("64GB" is 64 GiB) into bytes.

    Memory is always a power of two, so G/GB/GiB all mean 2**30; a bare number is GB.
    """
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"not a memory size: {text!r} (write e.g. 16GB or 64GB)")
    number = float(match.group(1))
    unit = (match.group(2) or "G").lower()
    power = _POWERS[unit[0]] if unit[0] != "b" else 0
    value = int(number * 1024**power)
    if value <= 0:
        raise ValueError(f"not a memory size: {text!r} (must be more than zero)")
    return value


def gb(n_bytes: float) -> float:
    """Decimal gigabytes, as the Hugging Face Hub and disk vendors count."""
    return n_bytes / GB


def gib(n_bytes: float) -> float:
    """Binary gigabytes, as Apple counts unified memory."""
    return n_bytes / GIB


def format_bytes(n_bytes: float) -> str:
    """Format a byte count in decimal units, e.g. ``12.70 GB``."""
    value = float(n_bytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
