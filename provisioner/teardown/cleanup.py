"""What a teardown deletes on the node, decided before anything is deleted: pure.

``plan_removals`` turns the wipe level, the harvest's outcome and the node's inventory into
exact paths; ``workdir_problem`` refuses work folders whose removal would hurt (``/``, the
home folder or one of its parents, a top-level folder). templates/node_clean.py checks each
path again on the node. Nothing outside the work folder is ever listed, except the one
LaunchAgent plist ``up`` wrote.
"""

from __future__ import annotations

import hashlib
import posixpath
from typing import Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict

Wipe = Literal["none", "models", "all"]
What = Literal["output", "token", "model", "launch-agent", "workdir"]

# Public prefixes of Hugging Face tokens: sending one to the node reveals nothing secret.
TOKEN_PREFIXES = ("hf_", "api_")
SCAN_MAX_BYTES = 512 * 1024 * 1024  # bigger files are listed as not searched
# System folders a work folder must never be (nor be a parent of).
PROTECTED = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/opt", "/opt/homebrew",
             "/private", "/private/tmp", "/private/var", "/proc", "/root", "/sbin", "/srv",
             "/sys", "/tmp", "/usr", "/usr/local", "/var", "/var/tmp", "/Applications",
             "/Library", "/System", "/Users", "/Volumes")


class Removal(BaseModel):
    """One path a teardown removes (or, in a dry run, would remove)."""

    model_config = ConfigDict(frozen=True)

    path: str
    what: What
    bytes: int = 0
    tree: bool = False
    done: bool = False
    error: Optional[str] = None


def workdir_problem(workdir: str, home: str) -> Optional[str]:
    """Say why ``workdir`` must not be deleted as a whole, or None when it may be."""
    if not workdir or not workdir.startswith("/"):
        return f"{workdir!r} is not an absolute path"
    normal = posixpath.normpath(workdir)
    home = posixpath.normpath(home)
    if normal != workdir.rstrip("/") or "/../" in f"{workdir}/" or "/./" in f"{workdir}/":
        return f"{workdir} is not a normalized path"
    if normal in PROTECTED or normal.count("/") < 2:
        return f"{normal} is a system or top-level folder"
    if normal == home or home.startswith(normal + "/"):
        return f"{normal} is the home folder or holds it"
    return None


def plist_problem(plist: str, home: str, label: str) -> Optional[str]:
    """Say why ``plist`` is not the LaunchAgent ``up`` wrote, or None."""
    wanted = posixpath.join(home, "Library", "LaunchAgents", f"{label}.plist")
    return None if plist == wanted else f"{plist} is not {wanted}"


def plan_removals(*, wipe: Wipe, workdir: str, workdir_bytes: int = 0,
                  outputs: Sequence[tuple[str, int]] = (), keep_outputs_remote: bool = False,
                  models: Sequence[tuple[str, int]] = (),
                  plist: Optional[str] = None, wipe_allowed: bool = True) -> list[Removal]:
    """Return what to delete, in order: the outputs already verified on the laptop, then
    the wipe level's models, or the LaunchAgent plist and the work folder (when
    ``wipe_allowed``). The token file is not here: ``down`` removes it first, always."""
    removals: list[Removal] = []
    wiping = wipe != "none" and wipe_allowed
    if not keep_outputs_remote and not (wiping and wipe == "all"):
        removals += [Removal(path=path, what="output", bytes=size) for path, size in outputs]
    if not wiping:
        return removals
    if wipe == "models":
        return removals + [Removal(path=path, what="model", bytes=size) for path, size in models]
    if plist:
        removals.append(Removal(path=plist, what="launch-agent"))
    removals.append(Removal(path=workdir, what="workdir", bytes=workdir_bytes, tree=True))
    return removals


def token_probe(token: str) -> dict:
    """Return what the node needs to recognise the token without being sent it: its sha256,
    its length and its public prefix."""
    prefix = next((p for p in TOKEN_PREFIXES if token.startswith(p)), "")
    return {"sha256": hashlib.sha256(token.encode()).hexdigest(), "length": len(token.encode()),
            "prefix": prefix}
