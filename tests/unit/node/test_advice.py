"""FileVault and sleep, as plan and status warn about them (advice.py)."""

from __future__ import annotations

from provisioner.core.units import GIB
from provisioner.node.advice import node_warnings
from provisioner.node.facts import assumed_facts


def test_a_mac_awake_without_filevault_gets_no_warning():
    assert node_warnings(assumed_facts(64 * GIB)) == []


def test_filevault_on_says_a_reboot_locks_ssh_out():
    (warning,) = node_warnings(assumed_facts(64 * GIB).model_copy(update={"filevault": True}))
    assert "FileVault is on" in warning and "unreachable over SSH" in warning
    assert "sudo fdesetup disable" in warning


def test_sleep_says_the_pmset_line_that_fixes_it():
    (warning,) = node_warnings(assumed_facts(64 * GIB).model_copy(update={"sleep_minutes": 10}))
    assert "sleep after 10 min idle" in warning and "sudo pmset -a sleep 0" in warning


def test_facts_not_read_warn_of_nothing():
    linux = assumed_facts(64 * GIB, "linux")
    assert linux.filevault is None and node_warnings(linux) == []
