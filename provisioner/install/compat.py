"""What is known upstream about the software set on a node: pure, facts and versions in,
warnings out (docs/compatibility.md; FACTS.md "torch on Sequoia").
"""

from __future__ import annotations

import re
from typing import Iterable

from ..comfy.diagnosis import SEQUOIA_TORCH


def version_tuple(text: str) -> tuple[int, ...]:
    """``"2.3.1"`` -> ``(2, 3, 1)``; ``"15.1.1"`` -> ``(15, 1, 1)``; local tags ignored."""
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def sequoia_warning(platform: str, os_version: str, torch: str, files: Iterable[str]) -> list[str]:
    """Warn (never refuse) about macOS >= 15 with torch < 2.4.1 and a GGUF plan."""
    if platform != "macos" or not os_version or not any(f.lower().endswith(".gguf") for f in files):
        return []
    if version_tuple(os_version)[:1] < (15,) or version_tuple(torch) >= version_tuple(SEQUOIA_TORCH["torch"]):
        return []
    return [f"macOS {os_version} with torch {torch} and GGUF files: ComfyUI-GGUF's README says "
            f"macOS Sequoia seems to need torch {SEQUOIA_TORCH['torch']} (city96/ComfyUI-GGUF#107); "
            "up's first image (the smoke step) will tell, and docs/compatibility.md says how to "
            "switch torch."]
