"""``download``: one model file from the Hugging Face Hub into a ComfyUI models folder."""

from __future__ import annotations

import posixpath
from typing import Literal, Optional

from ..errors import StepFailed
from .base import Change, Step, StepContext, q, sections


class DownloadStep(Step):
    kind: Literal["download"] = "download"
    repo: str
    file: str
    revision: str = "main"
    dest: str  # final path on the node
    bytes: int  # expected size (approximate until preflight resolves it)
    sha256: Optional[str] = None
    gated: bool = False

    def describe(self) -> str:
        return self.description or f"{self.repo}/{self.file} -> {posixpath.dirname(self.dest)}"

    def probe(self) -> Optional[str]:
        return f"echo @@size; wc -c < {q(self.dest)} 2>/dev/null | tr -d ' '"

    def decide(self, output: Optional[str]) -> Optional[Change]:
        size = sections(output or "").get("size", "")
        if not size:
            return Change(f"{posixpath.basename(self.dest)} is not downloaded yet")
        return None

    def apply(self, ctx: StepContext, change: Change) -> str:
        raise StepFailed(f"step {self.name}: model downloads are not built yet",
                         "run up with --no-models for now")
