"""Load parser fixtures: fixtures/<fact>/<case>.txt (raw output) + <case>.json (expected)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pytest
from pydantic import BaseModel

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_cases(facts: Iterable[str]) -> list:
    """Return pytest params (fact, raw, expected) for every case of every named fact."""
    params = []
    for fact in facts:
        texts = sorted((FIXTURES / fact).glob("*.txt"))
        # An empty parametrize list silently skips; a parser without real output to read
        # must fail collection instead.
        if len(texts) < 2:
            raise AssertionError(f"fixtures/{fact}/ needs at least two cases, has {len(texts)}")
        for text in texts:
            expected = json.loads(text.with_suffix(".json").read_text())
            params.append(pytest.param(fact, text.read_text(), expected, id=f"{fact}/{text.stem}"))
    return params


def plain(value: Any) -> Any:
    """Turn parser results (NamedTuples, pydantic models, tuples) into JSON-like data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "_asdict"):
        return {key: plain(item) for key, item in value._asdict().items()}
    if isinstance(value, (tuple, list)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value

