"""The node's fetcher (templates/hf_fetch.py and the two files beside it) as modules, so tests
can call its pure parts without SSH."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
FETCHER = TEMPLATES / "hf_fetch.py"


def load_fetcher() -> tuple[ModuleType, ModuleType]:
    """Return the modules ``hf_fetch`` and ``hf_fetch_ranges``, loaded from templates/."""
    if str(TEMPLATES) not in sys.path:
        sys.path.insert(0, str(TEMPLATES))
    return importlib.import_module("hf_fetch"), importlib.import_module("hf_fetch_ranges")
