"""Pure parsers for Linux command output and /proc files."""

from __future__ import annotations

import re
import shlex
from typing import Optional

from ...core.errors import FactParseError
from .common import OsVersion
from .model import Gpu

_MEMTOTAL = re.compile(r"^MemTotal:\s+(\d+) kB$", re.MULTILINE)
_OS_RELEASE_LINE = re.compile(r"^([A-Z0-9_]+)=(.*)$")
_MODEL_NAME = re.compile(r"^model name\s*:\s*(.*?)\s*$", re.MULTILINE)
_BTIME = re.compile(r"^btime (\d+)$", re.MULTILINE)
_MIB = 1024**2


def parse_meminfo(text: str) -> int:
    """Parse /proc/meminfo's ``MemTotal:  N kB`` into bytes (the kernel's kB are KiB)."""
    match = _MEMTOTAL.search(text)
    if match is None or int(match.group(1)) == 0:
        raise FactParseError("meminfo", text, "no 'MemTotal: N kB' line")
    return int(match.group(1)) * 1024


def parse_btime(text: str) -> Optional[int]:
    """Parse /proc/stat's ``btime N`` line (boot time, epoch seconds); empty means None."""
    if not text.strip():
        return None
    match = _BTIME.search(text)
    if match is None or int(match.group(1)) == 0:
        raise FactParseError("btime", text, "no 'btime N' line")
    return int(match.group(1))


def parse_os_release(text: str) -> OsVersion:
    """Parse /etc/os-release into PRETTY_NAME and VERSION_ID (shell-quoted values)."""
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _OS_RELEASE_LINE.match(line.strip())
        if match is None:
            raise FactParseError("os_release", text, f"bad line {line!r}")
        try:
            words = shlex.split(match.group(2))
        except ValueError:
            raise FactParseError("os_release", text, f"bad quoting in {line!r}") from None
        values[match.group(1)] = " ".join(words)
    if not values:
        raise FactParseError("os_release", text, "empty")
    # os-release(5): PRETTY_NAME defaults to NAME, then "Linux"; rolling releases (Debian
    # testing, Arch) have no VERSION_ID, so the version may honestly be unknown.
    name = values.get("PRETTY_NAME") or values.get("NAME") or "Linux"
    return OsVersion(name=name, version=values.get("VERSION_ID", ""))


def parse_cpuinfo_model(text: str) -> Optional[str]:
    """Parse /proc/cpuinfo's ``model name`` line; None where there is none (many ARM boards)."""
    match = _MODEL_NAME.search(text)
    return match.group(1) if match and match.group(1) else None


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """Parse ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, _, mib = line.rpartition(",")
        if not name.strip() or not mib.strip().isdigit():
            raise FactParseError("nvidia_smi", text, f"bad line {line!r} (want 'name, MiB')")
        gpus.append(Gpu(name=name.strip(), memory_bytes=int(mib.strip()) * _MIB))
    return tuple(gpus)
