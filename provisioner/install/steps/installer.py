"""uv or pip: the installer that fills the venv, and the pinned uv the venv step installs.

Not a step kind: what the ``venv`` and ``pip`` steps share. With ``installer: uv`` (node.yaml)
the venv step installs uv ``UV_VERSION`` from the node's package index into ``uv_dir``
(``<python> -m pip install --target``: no root, nothing outside the work folder), creates the
venv with ``uv venv``, and the pip steps install with ``uv pip install``: the same packages,
the same constraints file, the same index options (uv reads pip's ``--index-url``,
``--extra-index-url``, ``--find-links`` and ``--no-index``).

When uv cannot be installed the venv step says so in its detail and every step uses pip. If the
index answered but has no uv for this node (no wheel, or the interpreter has no pip), a marker
``<uv_dir>/unavailable`` holding ``uv_key`` keeps re-runs from asking again until the pin, the
interpreter or the index options change; a network failure is not remembered.
"""

from __future__ import annotations

import hashlib
import posixpath
from typing import Literal, Optional

from pydantic import model_validator

from ...node.shell import q
from .base import Step

# uv 0.13.9 (2026-11-17): the newest release when the pin was set, three weeks without a
# follow-up fix; wheels for macOS arm64 and manylinux x86_64/aarch64. Raise it deliberately.
UV_VERSION = "0.13.9"

Installer = Literal["uv", "pip"]


class InstallerStep(Step):
    """A step that installs into the venv with uv or pip (the ``venv`` and ``pip`` kinds)."""

    installer: Installer = "pip"
    uv_dir: Optional[str] = None  # where the venv step installs uv (installer: uv)

    @model_validator(mode="after")
    def _uv_needs_a_place(self) -> "InstallerStep":
        if self.installer == "uv" and not self.uv_dir:
            raise ValueError("installer uv needs uv_dir: (the folder uv is installed into)")
        return self

# What pip prints when the index could not be reached (retries, timeouts): worth a retry on
# the next run, unlike "No matching distribution found" from an index that answered.
_TRANSIENT = ("retrying", "timed out", "timeout", "connection", "temporary failure",
              "name resolution", "could not fetch url")


def uv_binary(uv_dir: str) -> str:
    """Return the path of the uv executable that ``pip install --target uv_dir`` puts there."""
    return posixpath.join(uv_dir, "bin", "uv")


def uv_cache(uv_dir: str) -> str:
    """Return uv's cache folder: next to uv in the work folder, so ``down`` removes it too."""
    return posixpath.join(posixpath.dirname(uv_dir.rstrip("/")), "uv-cache")


def unavailable_marker(uv_dir: str) -> str:
    """Return the file that records "this index has no uv for this node"."""
    return posixpath.join(uv_dir, "unavailable")


def uv_key(version: str, python: str, pip_options: str) -> str:
    """Return what an unavailable marker holds: the pin, interpreter and index options tried."""
    return hashlib.sha256("\0".join((version, python, pip_options)).encode()).hexdigest()


def uv_state_probe(uv_dir: str) -> str:
    """Return a sh snippet printing ``@@uv`` then ``ready``, ``unavailable`` or ``absent``."""
    return (f"echo @@uv; if test -x {q(uv_binary(uv_dir))}; then echo ready; "
            f"elif test -f {q(unavailable_marker(uv_dir))}; then echo unavailable; "
            "else echo absent; fi")


def parse_uv_version(output: str) -> Optional[str]:
    """Return the version from ``uv --version`` output (``uv 0.13.9 (x86_64-...)``)."""
    words = output.strip().split()
    return words[1] if len(words) >= 2 and words[0] == "uv" else None


def install_uv_command(python: str, uv_dir: str, version: str, pip_options: str) -> str:
    """Return the sh that installs uv ``version`` into ``uv_dir`` with the interpreter's pip.

    It installs into a fresh folder and moves it in place only when pip succeeded, so a
    failed attempt leaves no uv behind (the steps then use pip).
    """
    staging = uv_dir.rstrip("/") + ".new"
    parts = [q(python), "-m pip install --disable-pip-version-check --no-warn-script-location",
             "--progress-bar off -q --target", q(staging)]
    if pip_options:
        parts.append(pip_options)
    parts.append(q(f"uv=={version}"))
    return (f"rm -rf {q(staging)} {q(uv_dir)} && mkdir -p {q(posixpath.dirname(uv_dir.rstrip('/')))}"
            f" && {{ {' '.join(parts)} || {{ status=$?; rm -rf {q(staging)}; exit $status; }}; }}"
            f" && mv {q(staging)} {q(uv_dir)}")


def mark_unavailable_command(uv_dir: str, key: str) -> str:
    """Return the sh that records that uv could not be installed with ``key``'s settings."""
    return (f"mkdir -p {q(uv_dir)} && printf '%s\\n' {q(key)} > {q(unavailable_marker(uv_dir))}")


def failure_note(output: str) -> tuple[str, bool]:
    """Return pip's reason for not installing uv (its last error line) and whether it looks
    transient (the index could not be reached) rather than "this index has no uv"."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:") or "No module named pip" in line]
    reason = (errors or lines or ["pip failed without a message"])[-1]
    reason = reason.removeprefix("ERROR: ").removeprefix("ERROR:").strip()
    text = output.lower()
    transient = "no module named pip" not in text and any(word in text for word in _TRANSIENT)
    return reason[:200], transient
