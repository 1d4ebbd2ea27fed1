"""The laptop's side of a harvest: ``manifest.json`` and what the harvest folder holds.

The manifest records every file pulled (file, bytes, sha256, pulled_at, mtime); a file it
describes, unchanged since, is trusted without hashing it again.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict

from .harvest_plan import MANIFEST, LocalFile, RemoteFile, alt_name, unsafe_reason

CHUNK = 1 << 20


class ManifestEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str  # relative to the harvest folder
    bytes: int
    sha256: str
    pulled_at: str  # ISO 8601, UTC
    mtime_ns: int
    node_file: Optional[str] = None  # its path on the node's side when it was renamed


def read_manifest(folder: Path) -> dict[str, ManifestEntry]:
    """Return the manifest's entries by file; {} when there is none (or it is unreadable)."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return {entry["file"]: ManifestEntry(**entry) for entry in data.get("files", [])}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def write_manifest(folder: Path, node: str, entries: dict[str, ManifestEntry]) -> Path:
    """Write the manifest atomically (a temporary file renamed over it)."""
    path = folder / MANIFEST
    document = {"schema_version": 1, "node": node,
                "files": [entries[key].model_dump(exclude_none=True) for key in sorted(entries)]}
    temporary = folder / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(CHUNK)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def local_view(folder: Path, manifest: dict[str, ManifestEntry],
               remote_files: list[RemoteFile]) -> dict[str, LocalFile]:
    """Return what the harvest folder holds at the paths the node's files could go to.

    A file the manifest describes (same size and mtime) is trusted; any other is hashed.
    """
    view: dict[str, LocalFile] = {}
    for source in remote_files:
        for rel in (source.rel, alt_name(source.rel, source.sha256)):
            if rel in view or unsafe_reason(rel):
                continue
            path = folder / rel
            try:
                if path.is_symlink() or not path.is_file():
                    continue
                info = path.stat()
                entry = manifest.get(rel)
                if entry and entry.bytes == info.st_size and entry.mtime_ns == info.st_mtime_ns:
                    view[rel] = LocalFile(bytes=entry.bytes, sha256=entry.sha256)
                else:
                    view[rel] = LocalFile(bytes=info.st_size, sha256=sha256_file(path))
            except OSError:
                continue
    return view
