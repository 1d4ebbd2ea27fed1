"""``run --size``: WIDTHxHEIGHT (provisioner/cli/batch_views.py)."""

from __future__ import annotations

import pytest

from provisioner.cli.batch_views import parse_size
from provisioner.core.errors import UsageError


@pytest.mark.parametrize(("text", "size"), [("1024x768", (1024, 768)), ("512X512", (512, 512))])
def test_a_size_is_width_by_height(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1024", "x768", "1024x", "0x512", "1024x-1", "1024*768", " 1024x768", ""])
def test_a_bad_size_is_refused_naming_the_option(text):
    with pytest.raises(UsageError) as raised:
        parse_size(text)
    assert raised.value.message == f"--size {text}: expected WIDTHxHEIGHT, e.g. 1024x1024"


def test_a_superscript_digit_is_refused_not_a_crash():
    with pytest.raises(UsageError):
        parse_size("²x2")
