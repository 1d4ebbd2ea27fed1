"""``command``: run a shell command, guarded by ``creates:`` (a path) or ``unless:`` (a check)."""

from __future__ import annotations

from typing import Literal, Optional

from ...node.shell import q, sections, sh
from .base import Change, Step, StepContext


class CommandStep(Step):
    kind: Literal["command"] = "command"
    cmd: str
    creates: Optional[str] = None
    unless: Optional[str] = None

    def describe(self) -> str:
        return self.description or self.cmd.splitlines()[0][:80]

    def probe(self) -> Optional[str]:
        parts = []
        if self.creates:
            parts.append(f"echo @@creates; test -e {q(self.creates)} && echo present || echo absent")
        if self.unless:
            parts.append(f"echo @@unless; ( {self.unless} ) >/dev/null 2>&1 && echo pass || echo fail")
        return "; ".join(parts) or None

    def decide(self, output: Optional[str]) -> Optional[Change]:
        if output is None:
            return Change("has no creates:/unless: guard, so it always runs")
        found = sections(output)
        if self.creates and found.get("creates") != "present":
            return Change(f"{self.creates} does not exist yet")
        if self.unless and found.get("unless") != "pass":
            return Change("its unless: check fails")
        return None

    def apply(self, ctx: StepContext, change: Change) -> str:
        ctx.node.run(sh(self.cmd), on_output=ctx.on_output)
        return "ran"
