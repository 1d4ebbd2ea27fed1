"""NodeFacts: what we know about a node, as plain data."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PythonInterpreter(_Model):
    path: str
    version: str  # "3.12.4"

    @property
    def minor(self) -> tuple[int, int]:
        major, minor = self.version.split(".")[:2]
        return int(major), int(minor)

    @property
    def torch_compatible(self) -> bool:
        """torch 2.3.1 ships wheels for CPython 3.8-3.12 only (FACTS.md)."""
        return (3, 10) <= self.minor <= (3, 12)


class Gpu(_Model):
    name: str
    memory_bytes: int


class NodeFacts(_Model):
    """Facts about one node, gathered in one SSH round trip (or assumed, offline)."""

    platform: Literal["macos", "linux"]
    os_name: str  # "macOS", "Debian GNU/Linux 12 (bookworm)"
    os_version: str  # "15.5", "12"
    arch: str  # "arm64", "x86_64"
    chip: str  # "Apple M4 Pro", CPU model name on Linux
    cpu_count: int
    memory_bytes: int
    gpu_wired_limit_mb: int = 0  # macOS iogpu.wired_limit_mb; 0 = the default limit
    gpus: tuple[Gpu, ...] = ()  # NVIDIA GPUs on Linux
    disk_free_bytes: int
    disk_path: str  # the folder whose volume was measured (workdir or its nearest parent)
    home: str
    user: str
    uid: int
    pythons: tuple[PythonInterpreter, ...] = ()
    homebrew: Optional[str] = None  # path to brew, if present
    macports: Optional[str] = None  # path to MacPorts' port, if present
    git: Optional[str] = None  # the first git that works (never macOS's stub without the CLT)
    # Command Line Tools or Xcode: macOS's /usr/bin/git and python3 work only with them.
    xcode_clt: bool = False
    filevault: Optional[bool] = None  # macOS fdesetup; None when not read (Linux, old facts)
    sleep_minutes: Optional[int] = None  # macOS pmset -g "sleep": idle minutes, 0 = never
    # When the node last booted, in epoch seconds of the node's own clock (macOS
    # kern.boottime, Linux /proc/stat btime); None when it could not be read.
    booted_at: Optional[int] = None
    assumed: bool = False  # True when built offline from --memory, not read from a node

    @property
    def usable_pythons(self) -> tuple[PythonInterpreter, ...]:
        """Interpreters torch 2.3.1 can run on, newest first."""
        usable = [p for p in self.pythons if p.torch_compatible]
        return tuple(sorted(usable, key=lambda p: p.minor, reverse=True))
