"""Memory pressure and swap on a node: one read-only snippet, one pure parser.

``status`` reads it once; ``bench`` samples it every second while an image renders.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict

from .facts.macos import parse_pressure_level, parse_swapusage, parse_vm_stat
from .shell import sections

Pressure = Literal["green", "yellow", "red"]

MACOS_SCRIPT = ("echo @@level; sysctl -n kern.memorystatus_vm_pressure_level 2>/dev/null; "
                "echo @@swap; sysctl vm.swapusage 2>/dev/null; echo @@vmstat; vm_stat 2>/dev/null")
LINUX_SCRIPT = "echo @@meminfo; cat /proc/meminfo"
# Linux has no pressure level like macOS; these shares of available memory stand in for it.
LINUX_YELLOW_BELOW = 0.25
LINUX_RED_BELOW = 0.10


class MemorySample(BaseModel):
    model_config = ConfigDict(frozen=True)

    pressure: Pressure
    swap_used_bytes: int
    swapouts: Optional[int] = None  # macOS vm_stat "Swapouts" (pages), cumulative
    compressor_bytes: Optional[int] = None  # macOS "Pages occupied by compressor" x page size
    available_bytes: Optional[int] = None  # Linux MemAvailable


def memory_script(platform: str) -> str:
    """Return the read-only sh snippet that ``parse_memory`` reads."""
    return MACOS_SCRIPT if platform == "macos" else LINUX_SCRIPT


def parse_memory(platform: str, output: str) -> MemorySample:
    """Parse the output of ``memory_script`` into a ``MemorySample``."""
    found = sections(output)
    if platform == "macos":
        swap = parse_swapusage(found.get("swap", ""))
        vmstat = parse_vm_stat(found["vmstat"]) if found.get("vmstat") else None
        counts = vmstat.counts if vmstat else {}
        compressor = counts.get("Pages occupied by compressor")
        return MemorySample(
            pressure=parse_pressure_level(found.get("level", "")),
            swap_used_bytes=swap.used_bytes,
            swapouts=counts.get("Swapouts"),
            compressor_bytes=compressor * vmstat.page_size if vmstat and compressor is not None else None,
        )
    fields = {}
    for line in found.get("meminfo", "").splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name.strip()] = int(parts[0]) * 1024
    total = fields.get("MemTotal", 0)
    available = fields.get("MemAvailable", 0)
    share = available / total if total else 0.0
    pressure: Pressure = "green" if share >= LINUX_YELLOW_BELOW else \
        "yellow" if share >= LINUX_RED_BELOW else "red"
    return MemorySample(pressure=pressure,
                        swap_used_bytes=fields.get("SwapTotal", 0) - fields.get("SwapFree", 0),
                        available_bytes=available)
