"""Linux parsers, read from fixture files of real-format output."""

from __future__ import annotations

import pytest

from provisioner.core.errors import FactParseError
from provisioner.node.facts import linux

from .cases import fixture_cases, plain

PARSERS = {
    "meminfo": linux.parse_meminfo,
    "os_release": linux.parse_os_release,
    "cpuinfo_model": linux.parse_cpuinfo_model,
    "nvidia_smi": linux.parse_nvidia_smi,
    "btime": linux.parse_btime,
}


@pytest.mark.parametrize("fact, raw, expected", fixture_cases(PARSERS))
def test_parser_reads_fixture(fact, raw, expected):
    assert plain(PARSERS[fact](raw)) == expected


@pytest.mark.parametrize("parser, raw, fact", [
    (linux.parse_meminfo, "", "meminfo"),
    (linux.parse_meminfo, "MemFree:        23396044 kB\n", "meminfo"),
    (linux.parse_meminfo, "MemTotal:       24684092 MB\n", "meminfo"),
    (linux.parse_os_release, "", "os_release"),
    (linux.parse_os_release, "Debian GNU/Linux 12\n", "os_release"),
    (linux.parse_os_release, 'PRETTY_NAME="Debian GNU/Linux 12\n', "os_release"),
    (linux.parse_nvidia_smi, "NVIDIA-SMI has failed because it couldn't communicate with the "
                             "NVIDIA driver.\n", "nvidia_smi"),
    (linux.parse_nvidia_smi, "NVIDIA H100 80GB HBM3, [N/A]\n", "nvidia_smi"),
    (linux.parse_btime, "cpu  814173 0 277204 795371 6992 0 4292 2689 0 0\n", "btime"),
    (linux.parse_btime, "btime soon\n", "btime"),
])
def test_parser_rejects_what_it_cannot_read(parser, raw, fact):
    with pytest.raises(FactParseError) as caught:
        parser(raw)
    assert caught.value.fact == fact
    assert caught.value.raw == raw


def test_os_release_falls_back_to_name_without_pretty_name():
    assert linux.parse_os_release('NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n') == (
        "Arch Linux", "")
