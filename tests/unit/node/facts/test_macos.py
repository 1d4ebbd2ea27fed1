"""macOS parsers (FACTS.md "macOS node"), read from fixture files of real-format output."""

from __future__ import annotations

import pytest

from provisioner.core.errors import FactParseError
from provisioner.node.facts import macos

from .cases import FIXTURES, fixture_cases, plain

PARSERS = {
    "memsize": macos.parse_memsize,
    "sw_vers": macos.parse_sw_vers,
    "cpu_brand": macos.parse_cpu_brand,
    "wired_limit": macos.parse_wired_limit,
    "xcode_select": macos.parse_xcode_select,
    "vm_stat": macos.parse_vm_stat,
    "swapusage": macos.parse_swapusage,
    "pressure_level": macos.parse_pressure_level,
    "memory_pressure": macos.parse_memory_pressure,
    "boottime": macos.parse_boottime,
    "fdesetup": macos.parse_fdesetup,
    "pmset_sleep": macos.parse_pmset_sleep,
}


@pytest.mark.parametrize("fact, raw, expected", fixture_cases(PARSERS))
def test_parser_reads_fixture(fact, raw, expected):
    assert plain(PARSERS[fact](raw)) == expected


def test_memsize_reads_the_style_guide_example():
    assert macos.parse_memsize("68719476736\n") == 68719476736


@pytest.mark.parametrize("parser, raw, fact", [
    (macos.parse_memsize, "", "memsize"),
    (macos.parse_memsize, "sysctl: unknown oid 'hw.memsize'\n", "memsize"),
    (macos.parse_memsize, "64 GB\n", "memsize"),
    (macos.parse_sw_vers, "15.5\n", "sw_vers"),
    (macos.parse_sw_vers, "ProductName:\tmacOS\nProductVersion:\t15.5\nBuildVersion:\t24F74\n",
     "sw_vers"),
    (macos.parse_sw_vers, "macOS\nSequoia\n", "sw_vers"),
    (macos.parse_cpu_brand, "", "cpu_brand"),
    (macos.parse_wired_limit, "-1\n", "wired_limit"),
    (macos.parse_wired_limit, "sysctl: unknown oid 'iogpu.wired_limit_mb'\n", "wired_limit"),
    (macos.parse_xcode_select, "xcode-select: error: unable to get active developer directory\n",
     "xcode_clt"),
    (macos.parse_vm_stat, "", "vm_stat"),
    (macos.parse_vm_stat, "Pages free:   5093.\n", "vm_stat"),
    (macos.parse_vm_stat, "Mach Virtual Memory Statistics: (page size of 16384 bytes)\n"
                          "Pages free:   lots.\n", "vm_stat"),
    (macos.parse_swapusage, "", "swapusage"),
    (macos.parse_swapusage, "vm.swapusage: total = 2048.00M  used = 1.25M\n", "swapusage"),
    (macos.parse_pressure_level, "3\n", "pressure_level"),
    (macos.parse_pressure_level, "", "pressure_level"),
    (macos.parse_memory_pressure, "", "memory_pressure"),
    (macos.parse_memory_pressure, "System-wide memory free percentage: 47%\nPages free: 1\n",
     "memory_pressure"),
    (macos.parse_memory_pressure, "System-wide memory free percentage: 147%\n", "memory_pressure"),
    (macos.parse_boottime, "sysctl: unknown oid 'kern.boottime'\n", "boottime"),
    (macos.parse_boottime, "1733550000\n", "boottime"),
    (macos.parse_boottime, "{ sec = 0, usec = 0 } Thu Jan  1 00:00:00 1970\n", "boottime"),
    (macos.parse_fdesetup, "fdesetup: command not understood\n", "filevault"),
])
def test_parser_rejects_what_it_cannot_read(parser, raw, fact):
    with pytest.raises(FactParseError) as caught:
        parser(raw)
    assert caught.value.fact == fact
    assert caught.value.raw == raw


def test_vm_stat_under_swap_shows_swap_traffic_that_rest_does_not():
    # What `status` will look at: swap-outs and compressor occupancy.
    rest = macos.parse_vm_stat((FIXTURES / "vm_stat/at_rest_64gb.txt").read_text())
    swapping = macos.parse_vm_stat((FIXTURES / "vm_stat/under_swap_16gb.txt").read_text())
    assert rest.counts["Swapouts"] == 0 < swapping.counts["Swapouts"]
    assert swapping.counts["Pages occupied by compressor"] * swapping.page_size > 4 * 1024**3

