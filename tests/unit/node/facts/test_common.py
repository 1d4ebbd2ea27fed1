"""Parsers shared by macOS and Linux, read from fixture files of real-format output."""

from __future__ import annotations

import pytest

from provisioner.core.errors import FactParseError
from provisioner.node.facts import common

from .cases import fixture_cases, plain

PARSERS = {
    "platform": common.parse_platform,
    "arch": common.parse_arch,
    "cpu_count": common.parse_cpu_count,
    "disk_path": common.parse_disk_path,
    "df_posix": common.parse_df_posix,
    "python_version": common.parse_python_version,
    "python_versions": common.parse_python_versions,
    "brew_path": common.parse_brew_path,
    "git": common.parse_git,
    "identity": common.parse_identity,
}


@pytest.mark.parametrize("fact, raw, expected", fixture_cases(PARSERS))
def test_parser_reads_fixture(fact, raw, expected):
    assert plain(PARSERS[fact](raw)) == expected


@pytest.mark.parametrize("parser, raw, fact", [
    (common.parse_platform, "FreeBSD\n", "kernel"),
    (common.parse_platform, "", "kernel"),
    (common.parse_arch, "", "arch"),
    (common.parse_arch, "arm64 x86_64\n", "arch"),
    (common.parse_cpu_count, "0\n", "cpu_count"),
    (common.parse_cpu_count, "nproc: not found\n", "cpu_count"),
    (common.parse_disk_path, "relative/path\n", "disk_path"),
    (common.parse_disk_path, "", "disk_path"),
    (common.parse_df_posix, "", "df"),
    # 512-byte blocks: df run without -k must not be read as kilobytes.
    (common.parse_df_posix, "Filesystem 512-blocks Used Available Capacity Mounted on\n"
                            "/dev/disk3s5 1942700360 825469808 1043725424 45% /\n",
     "df"),
    (common.parse_df_posix, "Filesystem     1024-blocks     Used Available Capacity Mounted on\n"
                            "/dev/vda   lots  some  few  22% /\n", "df"),
    (common.parse_df_posix, "Filesystem     1024-blocks     Used Available Capacity Mounted on\n"
                            "/dev/vda 1 1 1 1% /\n/dev/vdb 2 2 2 2% /data\n", "df"),
    (common.parse_python_version, "", "python_version"),
    (common.parse_python_version, "pyenv: python3.12: command not found\n", "python_version"),
    (common.parse_python_versions, "python3.12 is /usr/bin/python3.12\n", "pythons"),
    (common.parse_python_versions, "/usr/bin/python3\t/usr/bin/python3\t0\tsegfault\n",
     "pythons"),
    (common.parse_brew_path, "brew not found\n", "brew"),
    (common.parse_git, "/usr/bin/git\n", "git"),
    (common.parse_git, "git\tgit version 2.39.5\n", "git"),
    (common.parse_identity, "501\nadmin\n", "identity"),
    (common.parse_identity, "admin\n501\n/Users/admin\n", "identity"),
    (common.parse_identity, "501\nadmin\nUsers/admin\n", "identity"),
])
def test_parser_rejects_what_it_cannot_read(parser, raw, fact):
    with pytest.raises(FactParseError) as caught:
        parser(raw)
    assert caught.value.fact == fact
    assert caught.value.raw == raw


def test_broken_interpreters_are_left_out_but_usable_ones_kept():
    section = ("/usr/local/bin/python3.12\t/usr/local/bin/python3.12\t127\t\n"
               "/opt/homebrew/bin/python3.13\t/opt/homebrew/bin/python3.13\t0\tPython 3.13.1\n")
    (only,) = common.parse_python_versions(section)
    assert only.path == "/opt/homebrew/bin/python3.13"
    assert not only.torch_compatible  # torch 2.3.1 has no 3.13 wheel


def test_error_names_the_fact_and_carries_raw_output():
    with pytest.raises(FactParseError) as caught:
        common.parse_df_posix("df: /nowhere: No such file or directory\n")
    assert "'df'" in str(caught.value)
    assert "No such file or directory" in str(caught.value)
