"""What upstream knows about a software set: the Sequoia / torch / GGUF warning of `plan`."""

from __future__ import annotations

import pytest

from provisioner.install.compat import sequoia_warning, version_tuple

GGUF = ["flux1-dev-Q8_0.gguf", "clip_l.safetensors", "ae.safetensors"]
SAFETENSORS = ["flux1-dev.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors"]


@pytest.mark.parametrize("platform, macos, torch, files, warned", [
    ("macos", "15.1", "2.3.1", GGUF, True),
    ("macos", "26.0", "2.3.1", GGUF, True),  # later macOS: no source says it got better
    ("macos", "15.1", "2.4.1", GGUF, False),
    ("macos", "15.1", "2.5.0+cpu", GGUF, False),
    ("macos", "14.6.1", "2.3.1", GGUF, False),
    ("macos", "15.1", "2.3.1", SAFETENSORS, False),
    ("linux", "12", "2.3.1", GGUF, False),
    ("macos", "", "2.3.1", GGUF, False),
])
def test_the_warning_needs_sequoia_old_torch_and_gguf(platform, macos, torch, files, warned):
    warnings = sequoia_warning(platform, macos, torch, files)
    assert bool(warnings) is warned
    if warned:
        assert f"macOS {macos} with torch {torch}" in warnings[0] and "2.4.1" in warnings[0]
        assert "smoke" in warnings[0] and "docs/compatibility.md" in warnings[0]


def test_versions_compare_as_numbers():
    assert version_tuple("2.10.0") > version_tuple("2.4.1") > version_tuple("2.3.1")
    assert version_tuple("2.4.1+cpu") == (2, 4, 1) and version_tuple("15") == (15,)
