"""The download preflight: before any byte moves, know exactly what is still to fetch.

``preflight_downloads`` resolves the exact size and sha256 of every model file not yet on the
node (the Hub, via ``hub.resolve``, which also refuses a gated repo the token may not read;
a HEAD of its URL, without the token, for a node.yaml ``url:`` file) and checks the node's
disk has room for them (``check_disk_room``, pure). It counts only the bytes still to fetch,
so a re-run after the models landed is not refused for the space they now take.
"""

from __future__ import annotations

from typing import Optional

from ..core.config import NodeConfig
from ..core.errors import DownloadError
from ..core.units import format_bytes
from ..node.facts import NodeFacts
from . import hub
from .steps.download import DownloadStep

# The bytes still to fetch, 10% for the filesystem and the partial-file rename, and a fixed
# headroom so the node is not left with a full disk.
DOWNLOAD_DISK_FACTOR = 1.10
DOWNLOAD_DISK_HEADROOM = 2 * 10**9


def disk_needed(remaining: int) -> int:
    """Return the free disk a download of ``remaining`` bytes asks for."""
    return int(remaining * DOWNLOAD_DISK_FACTOR) + DOWNLOAD_DISK_HEADROOM


def check_disk_room(facts: NodeFacts, remaining: int) -> None:
    """Refuse, with the numbers, when the node's disk cannot take ``remaining`` more bytes."""
    needed = disk_needed(remaining)
    if needed > facts.disk_free_bytes:
        raise DownloadError(
            f"not enough free disk on {facts.disk_path} for the models: need "
            f"{format_bytes(needed)} ({format_bytes(remaining)} still to fetch + 10% + "
            f"{format_bytes(DOWNLOAD_DISK_HEADROOM)}), have {format_bytes(facts.disk_free_bytes)}, "
            f"short by {format_bytes(needed - facts.disk_free_bytes)}; nothing was downloaded",
            "free space on the node, or choose a smaller quality: in node.yaml",
        )


def preflight_downloads(cfg: NodeConfig, facts: NodeFacts, steps: list, probed: dict[int, str],
                        token: Optional[str]) -> list:
    """Before any byte moves: resolve exact sizes and sha256 of the files still to fetch,
    check the token may read gated repos, and check the node's disk has room for them.

    ``probed`` holds the steps' probe outputs (``engine.probe_steps``). Return the steps with
    each download step's pending files resolved; the other steps are returned as they are."""
    checked = []
    for index, step in enumerate(steps):
        if not isinstance(step, DownloadStep) or not step.when:
            checked.append(step)
            continue
        todo, partial = step.pending(probed.get(index))
        resolved = hub.resolve([step.files[i] for i in todo], step.endpoint, token, cfg.hf.token_env)
        files = list(step.files)
        for i, spec in zip(todo, resolved):
            files[i] = spec
        remaining = sum(max((files[i].size or 0) - partial.get(i, 0), 0) for i in todo)
        if todo:
            check_disk_room(facts, remaining)
        checked.append(step.model_copy(update={"files": files}))
    return checked
