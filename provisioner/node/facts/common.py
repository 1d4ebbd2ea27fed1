"""Pure parsers for facts that read the same on macOS and Linux."""

from __future__ import annotations

import re
from typing import Literal, NamedTuple, Optional

from ...core.errors import FactParseError
from .model import PythonInterpreter

Platform = Literal["macos", "linux"]

_KERNELS: dict[str, Platform] = {"Darwin": "macos", "Linux": "linux"}
# df -P: the filesystem name may hold spaces (macOS "map auto_home"), so anchor on the numbers.
_DF_ROW = re.compile(r"^(?P<fs>.*?)\s+(?P<blocks>\d+)\s+(?P<used>\d+)\s+(?P<avail>-?\d+)\s+"
                     r"(?P<capacity>\d+%|-)\s+(?P<mount>/.*)$")
_PYTHON_VERSION = re.compile(r"\bPython (\d+\.\d+(?:\.\d+)?\S*)")


class OsVersion(NamedTuple):
    name: str  # "macOS", "Debian GNU/Linux 12 (bookworm)"
    version: str  # "15.5", "12"; "" when the OS does not say (rolling releases)


class DiskSpace(NamedTuple):
    filesystem: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    mount: str


class Identity(NamedTuple):
    uid: int
    user: str
    home: str


def parse_platform(text: str) -> Platform:
    """Map ``uname -s`` to the platform we provision ("macos" or "linux")."""
    kernel = text.strip()
    if kernel not in _KERNELS:
        raise FactParseError("kernel", text, "provision supports Darwin and Linux only")
    return _KERNELS[kernel]


def parse_arch(text: str) -> str:
    """Parse ``uname -m`` ("arm64", "x86_64")."""
    arch = text.strip()
    if not arch or any(c.isspace() for c in arch):
        raise FactParseError("arch", text, "expected one word")
    return arch


def parse_cpu_count(text: str, fact: str = "cpu_count") -> int:
    """Parse a processor count (``sysctl -n hw.ncpu``, ``nproc``)."""
    value = text.strip()
    if not value.isdigit() or int(value) < 1:
        raise FactParseError(fact, text, "expected a positive integer")
    return int(value)


def parse_df_posix(text: str) -> DiskSpace:
    """Parse ``df -Pk PATH``: one header line, one row in 1024-byte blocks."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 2 or not lines[0].startswith("Filesystem"):
        raise FactParseError("df", text, "expected a header and exactly one row")
    if "1024-blocks" not in lines[0]:
        # Without -k the blocks may be 512 bytes; refuse rather than guess the unit.
        raise FactParseError("df", text, "expected 1024-byte blocks (df -Pk)")
    row = _DF_ROW.match(lines[1])
    if row is None:
        raise FactParseError("df", text, "row does not read as filesystem, sizes, mount point")
    return DiskSpace(
        filesystem=row["fs"],
        total_bytes=int(row["blocks"]) * 1024,
        used_bytes=int(row["used"]) * 1024,
        # BSD df reports negative availability once root's reserve is in use: nothing is free.
        free_bytes=max(0, int(row["avail"])) * 1024,
        mount=row["mount"],
    )


def parse_disk_path(text: str) -> str:
    """Parse the absolute path the facts script measured with df."""
    path = text[:-1] if text.endswith("\n") else text
    if not path.startswith("/") or "\n" in path:
        raise FactParseError("disk_path", text, "expected one absolute path")
    return path


def parse_python_version(text: str) -> str:
    """Parse ``python --version`` ("Python 3.13.1") into "3.13.1"."""
    match = _PYTHON_VERSION.search(text)
    if match is None:
        raise FactParseError("python_version", text, "expected 'Python X.Y[.Z]'")
    return match.group(1)


def parse_python_versions(text: str) -> tuple[PythonInterpreter, ...]:
    """Parse the facts script's interpreter lines: path, real path, exit code, --version output.

    An interpreter whose ``--version`` exits non-zero is broken (a pyenv shim without that
    version, macOS's /usr/bin/python3 stub) and is left out; one that exits 0 but prints no
    version is output we do not understand, and raises.
    """
    found = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 4 or not fields[0].startswith("/") or not fields[2].isdigit():
            raise FactParseError("pythons", text, f"bad interpreter line {line!r}")
        path, _real, exit_code, output = fields
        if exit_code != "0":
            continue
        try:
            version = parse_python_version(output)
        except FactParseError:
            raise FactParseError("pythons", text, f"{path} --version printed no version") from None
        found.append(PythonInterpreter(path=path, version=version))
    return tuple(found)


def parse_brew_path(text: str, section: str = "brew") -> Optional[str]:
    """Parse where ``brew`` (or MacPorts' ``port``) is; empty output means it is absent."""
    path = text.strip()
    if not path:
        return None
    if not path.startswith("/") or "\n" in path:
        raise FactParseError(section, text, "expected one absolute path")
    return path


def parse_git(text: str) -> Optional[str]:
    """Parse the git section: ``path<TAB>git version ...`` of the first git that works, or
    nothing when there is none."""
    line = text.strip()
    if not line:
        return None
    path, _, version = line.partition("\t")
    if not path.startswith("/") or "\n" in line or not version.startswith("git version"):
        raise FactParseError("git", text, "expected '<path><TAB>git version X'")
    return path


def parse_identity(text: str) -> Identity:
    """Parse three lines: ``id -u``, ``id -un``, ``$HOME``."""
    lines = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
    if len(lines) != 3:
        raise FactParseError("identity", text, "expected uid, user name and home on three lines")
    uid, user, home = lines
    if not uid.isdigit() or not user or not home.startswith("/"):
        raise FactParseError("identity", text, "expected a numeric uid, a name, an absolute home")
    return Identity(uid=int(uid), user=user, home=home)
