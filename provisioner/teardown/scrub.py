"""Steps 6-7 of ``down``: delete what ``cleanup.plan_removals`` chose, in one round trip
(templates/node_clean.py), then search what remains for the token by its sha256."""

from __future__ import annotations

import json
from typing import Callable, Optional

from ..core.units import format_bytes
from ..node.programs import run_program
from .cleanup import SCAN_MAX_BYTES, Removal, token_probe
from .report import SecretsReport, TeardownIncomplete


def clean(node, paths, removals: list[Removal], roots, plist: Optional[str], token: Optional[str],
          token_env: str, candidates: list[str],
          note: Callable[[str], None]) -> tuple[list[Removal], SecretsReport]:
    """Delete ``removals`` on the node, then search what remains for the token's hash."""
    scan = None
    if token:
        scan = dict(token_probe(token), roots=[paths.workdir] + ([plist] if plist else []),
                    skip=[paths.models], max_bytes=SCAN_MAX_BYTES)
    spec = {
        "workdir": paths.workdir, "plist": plist,
        "remove": [{"path": r.path, "tree": r.tree,
                    "keep_last": paths.state_dir if r.what == "workdir" else None} for r in removals],
        "prune": [root.path for root in roots if root.removable],
        "scan": scan,
    }
    if removals:
        total = sum(r.bytes for r in removals)
        note(f"deleting {len(removals)} item(s) on the node ({format_bytes(total)})")
    result = run_program(node, "node_clean.py", spec, candidates)
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise TeardownIncomplete(f"the node's clean-up did not finish: {result.tail(3)}",
                                 "re-run `provision down`: it finishes what is left") from None
    outcome = {item["path"]: item for item in data.get("removed", [])}
    done: list[Removal] = []
    for removal in removals:
        item = outcome.get(removal.path, {})
        if not item.get("existed") and not item.get("error"):
            continue  # already gone: nothing was removed, nothing to report
        done.append(removal.model_copy(update={"done": not item.get("error"),
                                               "bytes": int(item.get("bytes") or removal.bytes),
                                               "error": item.get("error")}))
    found = data.get("scan")
    if not token:
        secrets = SecretsReport(check="not-checked",
                                note=f"${token_env} is not set on this machine, so the node could "
                                     "not be searched for the token")
    else:
        hits = list(found.get("found", [])) if found else []
        secrets = SecretsReport(
            check="found" if hits else "clean", found_in=hits,
            files_searched=int(found.get("files", 0)) if found else 0,
            bytes_searched=int(found.get("bytes", 0)) if found else 0,
            not_searched=list(found.get("skipped", [])) if found else [],
            note="model files (downloaded from the Hub as they are) were not searched")
    return done, secrets
