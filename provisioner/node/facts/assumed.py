"""Facts for planning without a node: a typical machine of the memory the user names."""

from __future__ import annotations

from .model import NodeFacts, PythonInterpreter

_FREE_DISK = 500 * 1000**3  # disk vendors count decimal GB


def assumed_facts(memory_bytes: int, platform: str = "macos") -> NodeFacts:
    """Build the facts of a typical node with ``memory_bytes`` of memory, marked assumed."""
    if memory_bytes <= 0:
        raise ValueError(f"memory must be more than zero bytes, not {memory_bytes}")
    # "auto" reaches here when the config did not pin a platform: plan for the tool's main
    # target, a rented Mac.
    if platform in ("macos", "auto"):
        return NodeFacts(
            platform="macos", os_name="macOS", os_version="15.5", arch="arm64",
            chip="Apple M4 Pro", cpu_count=14, memory_bytes=memory_bytes,
            disk_free_bytes=_FREE_DISK, disk_path="/Users/admin",
            home="/Users/admin", user="admin", uid=501,
            pythons=(PythonInterpreter(path="/opt/homebrew/bin/python3.12", version="3.12.11"),),
            homebrew="/opt/homebrew/bin/brew", git="/usr/bin/git", xcode_clt=True,
            filevault=False, sleep_minutes=0, assumed=True,
        )
    if platform == "linux":
        return NodeFacts(
            platform="linux", os_name="Debian GNU/Linux 12 (bookworm)", os_version="12",
            arch="x86_64", chip="AMD EPYC 7B13", cpu_count=16, memory_bytes=memory_bytes,
            disk_free_bytes=_FREE_DISK, disk_path="/home/debian",
            home="/home/debian", user="debian", uid=1000,
            pythons=(PythonInterpreter(path="/usr/bin/python3.11", version="3.11.2"),),
            git="/usr/bin/git", assumed=True,
        )
    raise ValueError(f"unknown platform {platform!r} (expected macos, linux or auto)")
