"""Split the facts script's output into sections and build NodeFacts from them."""

from __future__ import annotations

import re
from typing import Any, Callable

from ...core.errors import FactParseError
from . import common, linux, macos
from .model import NodeFacts

_MARKER = re.compile(r"^@@provision:([a-z_]+)@@$")


def split_sections(raw: str) -> dict[str, str]:
    """Split script output into {section name: its text}; text before any marker is dropped."""
    # Text before the first marker is ignored on purpose: a chatty ~/.bashrc prints there.
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    # Split on "\n" only: splitlines() would also break at \r or \x0c inside a path.
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        marker = _MARKER.match(line)
        if marker is None:
            if current is not None:
                current.append(line)
            continue
        name = marker.group(1)
        if name in sections:
            raise FactParseError("sections", raw, f"section {name!r} appears twice")
        current = sections[name] = []
    return {name: "".join(line + "\n" for line in body) for name, body in sections.items()}


def parse_facts(raw: str) -> NodeFacts:
    """Parse the whole output of ``facts_script`` into NodeFacts."""
    sections = split_sections(raw)

    def required(name: str) -> str:
        if name not in sections:
            why = ("output cut short: the facts script did not finish" if name == "end"
                   else "section missing from the facts script output")
            raise FactParseError(name, raw, why)
        return sections[name]

    required("end")
    platform = common.parse_platform(required("kernel"))
    read_platform = _macos_facts if platform == "macos" else _linux_facts
    specific = read_platform(sections, required)
    disk = common.parse_df_posix(required("df"))
    identity = common.parse_identity(required("identity"))
    return NodeFacts(
        platform=platform,
        arch=common.parse_arch(required("arch")),
        disk_free_bytes=disk.free_bytes,
        disk_path=common.parse_disk_path(required("disk_path")),
        home=identity.home,
        user=identity.user,
        uid=identity.uid,
        pythons=common.parse_python_versions(sections.get("pythons", "")),
        homebrew=common.parse_brew_path(sections.get("brew", "")),
        macports=common.parse_brew_path(sections.get("macports", ""), "macports"),
        git=common.parse_git(sections.get("git", "")),
        **specific,
    )


def _macos_facts(sections: dict[str, str], required: Callable[[str], str]) -> dict[str, Any]:
    """Return the NodeFacts fields read from macOS-only sections."""
    os_version = macos.parse_sw_vers(required("sw_vers"))
    return {
        "os_name": os_version.name,
        "os_version": os_version.version,
        "chip": macos.parse_cpu_brand(required("cpu_brand")),
        "cpu_count": common.parse_cpu_count(required("ncpu"), "ncpu"),
        "memory_bytes": macos.parse_memsize(required("memsize")),
        "gpu_wired_limit_mb": macos.parse_wired_limit(sections.get("wired_limit", "")),
        "xcode_clt": macos.parse_xcode_select(sections.get("xcode_clt", "")),
        "booted_at": macos.parse_boottime(sections.get("boottime", "")),
        "filevault": macos.parse_fdesetup(sections.get("filevault", "")),
        "sleep_minutes": macos.parse_pmset_sleep(sections.get("pmset", "")),
    }


def _linux_facts(sections: dict[str, str], required: Callable[[str], str]) -> dict[str, Any]:
    """Return the NodeFacts fields read from Linux-only sections."""
    os_version = linux.parse_os_release(required("os_release"))
    # Many ARM boards have no "model name" in /proc/cpuinfo; the architecture is the honest name.
    chip = (linux.parse_cpuinfo_model(sections.get("cpuinfo", ""))
            or common.parse_arch(required("arch")))
    return {
        "os_name": os_version.name,
        "os_version": os_version.version,
        "chip": chip,
        "cpu_count": common.parse_cpu_count(required("nproc"), "nproc"),
        "memory_bytes": linux.parse_meminfo(required("meminfo")),
        "gpus": linux.parse_nvidia_smi(sections.get("nvidia_smi", "")),
        "booted_at": linux.parse_btime(sections.get("boottime", "")),
    }
