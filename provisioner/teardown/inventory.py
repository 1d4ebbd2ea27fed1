"""The node's file listing: what templates/node_inventory.py is asked to list, and its parser.

One round trip lists the harvest's files (ComfyUI's ``output/``, the workflows under
``user/``, the ComfyUI log) with size, mtime and sha256 computed on the node, and, for a
wipe, the model files and the work folder's size.
"""

from __future__ import annotations

import json
import posixpath
from typing import Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict

from ..core.errors import ProvisionError
from .harvest_plan import Refused, RemoteFile

# ComfyUI's own placeholder in output/ (a file of its git checkout, not a user's output).
EXCLUDED_NAMES = ("_output_images_will_be_put_here",)


class HarvestError(ProvisionError):
    """The node's file listing could not be read."""


class HarvestRoot(BaseModel):
    """One place on the node whose files are harvested, and where they go locally."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str  # the local folder: output, user, logs
    path: str  # absolute, on the node
    kind: Literal["tree", "file"] = "tree"
    only_under: Optional[str] = None  # keep only files below a folder of this name
    removable: bool = False  # user content: removed from the node once verified locally


def harvest_roots(paths) -> list[HarvestRoot]:
    """Return what a harvest takes from a node laid out as ``paths`` (a ``NodePaths``)."""
    return [
        HarvestRoot(label="output", path=paths.output, removable=True),
        HarvestRoot(label="user", path=paths.user_dir, only_under="workflows", removable=True),
        HarvestRoot(label="logs", path=paths.comfyui_log, kind="file"),
    ]


def inventory_spec(roots: list[HarvestRoot], models: Optional[str] = None,
                   model_files: Sequence[str] = (), sizes: Sequence[str] = ()) -> dict:
    """Return the input of templates/node_inventory.py."""
    return {"roots": [root.model_dump() for root in roots], "exclude_names": list(EXCLUDED_NAMES),
            "models": models, "model_files": list(model_files), "sizes": list(sizes)}


def remote_file(record: dict, root: HarvestRoot) -> RemoteFile:
    """Return the ``RemoteFile`` of one ``file`` record of the inventory, under ``root``."""
    remote = root.path if root.kind == "file" else posixpath.join(root.path, record["path"])
    return RemoteFile(label=root.label, path=record["path"], remote=remote,
                      bytes=int(record["bytes"]), mtime_ns=int(record["mtime_ns"]),
                      sha256=str(record["sha256"]))


def parse_inventory(text: str, roots: list[HarvestRoot]) -> dict:
    """Parse node_inventory.py's JSON lines into files, problems, models and folder sizes.

    Raises ``HarvestError`` when the listing is cut short (no final ``done`` line).
    """
    by_label = {root.label: root for root in roots}
    files: list[RemoteFile] = []
    problems: list[Refused] = []
    models: list[tuple[str, int]] = []
    sizes: dict[str, tuple[int, int]] = {}
    done = False
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        kind = record.get("kind")
        if kind == "file" and record.get("label") in by_label:
            files.append(remote_file(record, by_label[record["label"]]))
        elif kind == "problem":
            problems.append(Refused(file=f"{record.get('label')}/{record.get('path')}",
                                    reason=str(record.get("error"))))
        elif kind == "model":
            models.append((str(record["path"]), int(record["bytes"])))
        elif kind == "size":
            sizes[str(record["path"])] = (int(record["bytes"]), int(record["files"]))
        elif kind == "done":
            done = True
    if not done:
        raise HarvestError("the node's file listing was cut short",
                           "re-run; if it persists, check the node's disk and its python3")
    return {"files": files, "problems": problems, "models": models, "sizes": sizes}
