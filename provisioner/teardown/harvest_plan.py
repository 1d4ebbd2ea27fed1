"""Harvest decisions, pure: which node files to pull and where, given what the laptop holds.

``plan_harvest`` compares the node's files (as the inventory listed them, with their sha256)
with the harvest folder. A local file is never overwritten by different bytes: a different
file of the same name goes beside it as ``name.<sha8>.ext``; a path that could escape the
folder, or clash with the manifest or a partial download, is refused.
"""

from __future__ import annotations

import posixpath
from typing import AbstractSet, Literal, Optional

from pydantic import BaseModel, ConfigDict

MANIFEST = "manifest.json"  # written by manifest.py; no node file may take its place


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RemoteFile(_Frozen):
    """A file on the node, as the inventory saw it."""

    label: str
    path: str  # relative to its root, '/'-separated
    remote: str  # absolute path on the node
    bytes: int
    mtime_ns: int
    sha256: str

    @property
    def rel(self) -> str:
        """Its path under the local harvest folder."""
        return f"{self.label}/{self.path}"


class LocalFile(_Frozen):
    """What the laptop holds at one path of the harvest folder."""

    bytes: int
    sha256: str


class HarvestItem(_Frozen):
    source: RemoteFile
    dest: str  # relative to the harvest folder
    action: Literal["pull", "skip"]
    reason: str


class Refused(_Frozen):
    file: str
    reason: str


class HarvestPlan(_Frozen):
    items: list[HarvestItem] = []
    refused: list[Refused] = []

    @property
    def to_pull(self) -> list[HarvestItem]:
        return [item for item in self.items if item.action == "pull"]

    @property
    def to_skip(self) -> list[HarvestItem]:
        return [item for item in self.items if item.action == "skip"]

    @property
    def bytes_to_pull(self) -> int:
        return sum(item.source.bytes for item in self.to_pull)


def alt_name(rel: str, sha256: str) -> str:
    """Return where a different file of the same name goes: ``a/b.png`` -> ``a/b.<sha8>.png``."""
    folder, name = posixpath.split(rel)
    stem, dot, ext = name.rpartition(".")
    renamed = f"{stem}.{sha256[:8]}.{ext}" if dot and stem else f"{name}.{sha256[:8]}"
    return posixpath.join(folder, renamed)


def unsafe_reason(rel: str) -> Optional[str]:
    """Say why a path must not be written under the harvest folder, or None."""
    if not rel or rel.startswith("/") or "\0" in rel or "\\" in rel:
        return "not a plain relative path"
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, '.' or '..' component"
    if parts[-1] == MANIFEST and len(parts) == 1:
        return "would overwrite the manifest"
    if parts[-1].startswith(".") and parts[-1].endswith(".part"):
        return "looks like a partial download of provision's own"
    return None


def plan_file(source: RemoteFile, local: dict[str, LocalFile],
              taken: AbstractSet[str] = frozenset()) -> HarvestItem | Refused:
    """Decide whether to pull one node file and where, given what is already local.

    ``local`` maps paths under the harvest folder to what is there; ``taken`` holds the
    destinations already given to other files of this harvest. A file whose identical copy
    exists (at its name, or at its ``alt_name``) is skipped; a free name is pulled to; a
    name holding different bytes sends the file to its ``alt_name``.
    """
    rel = source.rel
    why = unsafe_reason(rel)
    if why:
        return Refused(file=rel, reason=why)
    here = local.get(rel)
    if here is not None and here.sha256 == source.sha256 and here.bytes == source.bytes:
        return HarvestItem(source=source, dest=rel, action="skip", reason="already pulled")
    if here is None and rel not in taken:
        return HarvestItem(source=source, dest=rel, action="pull", reason="new")
    alt = alt_name(rel, source.sha256)
    there = local.get(alt)
    if there is not None and there.sha256 == source.sha256 and there.bytes == source.bytes:
        return HarvestItem(source=source, dest=alt, action="skip", reason="already pulled")
    if there is not None or alt in taken:
        return Refused(file=rel, reason=f"both {rel} and {alt} hold other files locally")
    return HarvestItem(source=source, dest=alt, action="pull",
                       reason=f"{rel} holds a different file locally")


def plan_harvest(remote_files: list[RemoteFile], local: dict[str, LocalFile]) -> HarvestPlan:
    """Plan every node file (``plan_file``), in path order."""
    items: list[HarvestItem] = []
    refused: list[Refused] = []
    taken: set[str] = set()
    for source in sorted(remote_files, key=lambda f: f.rel):
        decision = plan_file(source, local, taken)
        if isinstance(decision, Refused):
            refused.append(decision)
        else:
            taken.add(decision.dest)
            items.append(decision)
    return HarvestPlan(items=items, refused=refused)
