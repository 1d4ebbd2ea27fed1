"""``template``: a file rendered locally, uploaded only when its sha256 or mode differs."""

from __future__ import annotations

import hashlib
from typing import Literal, Optional

from ...node.shell import mode_of, q, sections, sh, sha256_of
from .base import Change, Step, StepContext


class TemplateStep(Step):
    kind: Literal["template"] = "template"
    src: str  # template name under templates/, recorded for the recap
    dest: str
    content: str  # rendered by the playbook loader, locally
    mode: str = "0644"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()

    def describe(self) -> str:
        return self.description or f"{self.src} -> {self.dest}"

    def probe(self) -> Optional[str]:
        return f"echo @@sha; {sha256_of(self.dest)}; echo @@mode; {mode_of(self.dest)}"

    def decide(self, output: Optional[str]) -> Optional[Change]:
        found = sections(output or "")
        if not found.get("sha"):
            return Change(f"{self.dest} does not exist yet", {"upload": True})
        if found["sha"] != self.sha256:
            return Change(f"{self.dest} differs from the template", {"upload": True})
        if found.get("mode", "").lstrip("0") != self.mode.lstrip("0"):
            return Change(f"{self.dest} has mode {found.get('mode')}, wanted {self.mode}")
        return None

    def apply(self, ctx: StepContext, change: Change) -> str:
        mode = int(self.mode, 8)
        if change.data.get("upload"):
            ctx.node.run(sh(f"mkdir -p \"$(dirname {q(self.dest)})\""))
            ctx.node.put(self.content.encode(), self.dest, mode)
            return f"uploaded ({len(self.content.encode())} bytes)"
        ctx.node.run(sh(f"chmod {self.mode} {q(self.dest)}"))
        return f"mode set to {self.mode}"
