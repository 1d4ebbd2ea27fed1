"""Pure parsers for macOS command output (formats in FACTS.md "macOS node")."""

from __future__ import annotations

import re
from typing import Literal, NamedTuple, Optional

from ...core.errors import FactParseError
from .common import OsVersion

PressureLevel = Literal["green", "yellow", "red"]

_VERSION = re.compile(r"^\d+(?:\.\d+){0,2}$")
_VM_STAT_HEADER = re.compile(r"^Mach Virtual Memory Statistics: \(page size of (\d+) bytes\)$")
_VM_STAT_LINE = re.compile(r'^"?([^":]+)"?:\s+(\d+)\.$')
_SWAP_FIELD = re.compile(r"\b(total|used|free) = (\d+(?:\.\d+)?)([KMGT])\b")
_SWAP_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_PRESSURE_LEVELS: dict[str, PressureLevel] = {"1": "green", "2": "yellow", "4": "red"}
_FREE_PERCENTAGE = re.compile(r"^System-wide memory free percentage: (\d+)%$")
# sysctl kern.boottime: "{ sec = 1733550000, usec = 123456 } Sat Dec  7 05:40:00 2024"
_BOOTTIME = re.compile(r"^(?:kern\.boottime:\s*)?\{\s*sec\s*=\s*(\d+),\s*usec\s*=\s*(\d+)\s*\}(?:\s.*)?$")


# pmset -g: " sleep                1 (sleep prevented by caffeinate)"; not "displaysleep".
_PMSET_SLEEP = re.compile(r"^\s*sleep\s+(\d+)\b")


class VmStat(NamedTuple):
    page_size: int
    counts: dict[str, int]  # label -> value: "Pages free" -> pages, "Swapins" -> count


class SwapUsage(NamedTuple):
    total_bytes: int
    used_bytes: int
    free_bytes: int
    encrypted: bool


def parse_memsize(text: str) -> int:
    """Parse ``sysctl -n hw.memsize`` into bytes."""
    value = text.strip()
    if not value.isdigit() or int(value) == 0:
        raise FactParseError("memsize", text, "expected a positive number of bytes")
    return int(value)


def parse_sw_vers(text: str) -> OsVersion:
    """Parse ``sw_vers -productName`` then ``sw_vers -productVersion``, one per line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 2 or not _VERSION.match(lines[1]):
        raise FactParseError("sw_vers", text, "expected a product name and a version like 15.5")
    return OsVersion(name=lines[0], version=lines[1])


def parse_cpu_brand(text: str) -> str:
    """Parse ``sysctl -n machdep.cpu.brand_string`` ("Apple M4 Pro")."""
    brand = text.strip()
    if not brand or "\n" in brand:
        raise FactParseError("cpu_brand", text, "expected one line")
    return brand


def parse_wired_limit(text: str) -> int:
    """Parse ``sysctl -n iogpu.wired_limit_mb``; empty (key absent) means 0, the default."""
    value = text.strip()
    if not value:
        return 0
    if not value.isdigit():
        raise FactParseError("wired_limit", text, "expected a number of MB")
    return int(value)


def parse_xcode_select(text: str) -> bool:
    """Parse ``xcode-select -p`` (printed only when it succeeds): a path means tools present."""
    path = text.strip()
    if not path:
        return False
    if not path.startswith("/") or "\n" in path:
        raise FactParseError("xcode_clt", text, "expected the developer directory path")
    return True


def parse_boottime(text: str) -> Optional[int]:
    """Parse ``sysctl -n kern.boottime`` into epoch seconds; empty (not read) means None."""
    value = text.strip()
    if not value:
        return None
    match = _BOOTTIME.match(value)
    if match is None or int(match.group(1)) == 0:
        raise FactParseError("boottime", text, "expected '{ sec = N, usec = N } <date>'")
    return int(match.group(1))


def parse_fdesetup(text: str) -> Optional[bool]:
    """Parse ``fdesetup status``: True when the disk is (or is being) encrypted with FileVault,
    False when it is off, None when it could not be read."""
    first = text.strip().split("\n", 1)[0].strip()
    if not first:
        return None
    if first.startswith("FileVault is On") or first.startswith(("Encryption in progress",
                                                               "Decryption in progress")):
        return True  # while it decrypts, a reboot still stops at the unlock screen
    if first.startswith("FileVault is Off"):
        return False
    raise FactParseError("filevault", text, "expected 'FileVault is On.' or 'FileVault is Off.'")


def parse_pmset_sleep(text: str) -> Optional[int]:
    """Parse the ``sleep`` line of ``pmset -g`` (minutes of idle before the Mac sleeps, 0 =
    never); None when pmset printed nothing or no such line."""
    for line in text.split("\n"):
        match = _PMSET_SLEEP.match(line)
        if match:
            return int(match.group(1))
    return None


def parse_vm_stat(text: str) -> VmStat:
    """Parse ``vm_stat``: the page-size header, then ``Label:   N.`` lines."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    header = _VM_STAT_HEADER.match(lines[0]) if lines else None
    if header is None:
        raise FactParseError("vm_stat", text, "missing the 'page size of N bytes' header")
    counts = {}
    for line in lines[1:]:
        match = _VM_STAT_LINE.match(line)
        if match is None:
            raise FactParseError("vm_stat", text, f"bad line {line!r}")
        counts[match.group(1)] = int(match.group(2))
    if not counts:
        raise FactParseError("vm_stat", text, "no counters")
    return VmStat(page_size=int(header.group(1)), counts=counts)


def parse_swapusage(text: str) -> SwapUsage:
    """Parse ``sysctl vm.swapusage`` (with or without the ``vm.swapusage:`` prefix)."""
    fields = {name: float(number) * _SWAP_UNITS[unit]
              for name, number, unit in _SWAP_FIELD.findall(text)}
    if set(fields) != {"total", "used", "free"}:
        raise FactParseError("swapusage", text, "expected total, used and free sizes")
    return SwapUsage(total_bytes=round(fields["total"]), used_bytes=round(fields["used"]),
                     free_bytes=round(fields["free"]), encrypted="(encrypted)" in text)


def parse_pressure_level(text: str) -> PressureLevel:
    """Parse ``sysctl -n kern.memorystatus_vm_pressure_level``: 1/2/4 -> green/yellow/red."""
    level = _PRESSURE_LEVELS.get(text.strip())
    if level is None:
        raise FactParseError("pressure_level", text, "expected 1, 2 or 4")
    return level


def parse_memory_pressure(text: str) -> int:
    """Parse ``memory_pressure``'s last line into the system-wide free percentage."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    match = _FREE_PERCENTAGE.match(lines[-1]) if lines else None
    if match is None or int(match.group(1)) > 100:
        raise FactParseError("memory_pressure", text,
                             "expected a last line 'System-wide memory free percentage: NN%'")
    return int(match.group(1))
