"""The node's state as ``down`` sees it, read in one round trip: a script and its parser."""

from __future__ import annotations

import json
from typing import Optional

from pydantic import BaseModel, ConfigDict

from ..node.shell import q, sections


class NodeProbe(BaseModel):
    model_config = ConfigDict(frozen=True)

    state: dict = {}
    workdir_exists: bool = False
    workdir_ours: bool = False  # holds provision's state/ folder
    workdir_has_files: bool = False
    plist_exists: bool = False
    token_exists: bool = False
    service: dict = {}


def probe_script(paths, service, plist: Optional[str]) -> str:
    """Return the read-only sh script ``parse_probe`` reads (one round trip)."""
    from ..install.steps.service import status_script

    work = q(paths.workdir)
    lines = [
        f"echo @@state; cat {q(paths.state_file)} 2>/dev/null; echo",
        f"echo @@workdir; if [ -d {work} ]; then echo exists; "
        f"[ -d {q(paths.state_dir)} ] && echo ours; "
        f"[ -n \"$(find {work} -type f 2>/dev/null | head -n 1)\" ] && echo files; fi",
        "echo @@plist" + (f"; [ -f {q(plist)} ] && echo exists" if plist else ""),
        f"echo @@token; [ -e {q(paths.token_file)} ] && echo exists",
        f"echo @@service; {status_script(service)}",
        "true",
    ]
    return "\n".join(lines) + "\n"


def parse_probe(text: str) -> NodeProbe:
    """Parse ``probe_script``'s output."""
    from ..install.steps.service import parse_status

    found = sections(text)
    try:
        state = json.loads(found.get("state", "") or "{}")
    except ValueError:
        state = {}
    workdir = found.get("workdir", "").split()
    return NodeProbe(
        state=state if isinstance(state, dict) else {},
        workdir_exists="exists" in workdir, workdir_ours="ours" in workdir,
        workdir_has_files="files" in workdir, plist_exists=found.get("plist") == "exists",
        token_exists=found.get("token") == "exists", service=parse_status(found.get("service", "")),
    )
