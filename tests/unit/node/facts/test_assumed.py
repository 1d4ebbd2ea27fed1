"""Offline facts for `plan --memory`."""

from __future__ import annotations

import pytest

from provisioner.node.facts import assumed_facts

GIB = 1024**3


def test_macos_node_is_a_typical_m4_pro():
    facts = assumed_facts(64 * GIB)
    assert (facts.platform, facts.chip, facts.os_version) == ("macos", "Apple M4 Pro", "15.5")
    assert facts.memory_bytes == 64 * GIB
    assert facts.disk_free_bytes == 500 * 1000**3
    assert [p.path for p in facts.usable_pythons] == ["/opt/homebrew/bin/python3.12"]
    assert facts.homebrew and facts.assumed


def test_auto_platform_plans_for_a_mac():
    assert assumed_facts(16 * GIB, "auto").platform == "macos"


def test_linux_node_is_debian_without_gpu():
    facts = assumed_facts(32 * GIB, "linux")
    assert (facts.platform, facts.arch, facts.gpus) == ("linux", "x86_64", ())
    assert facts.os_name.startswith("Debian") and facts.assumed
    assert facts.usable_pythons


@pytest.mark.parametrize("memory, platform", [(0, "macos"), (16 * GIB, "windows")])
def test_nonsense_is_refused(memory, platform):
    with pytest.raises(ValueError):
        assumed_facts(memory, platform)
