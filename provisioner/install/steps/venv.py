"""``venv``: a Python virtual environment built from a chosen interpreter, pip upgraded."""

from __future__ import annotations

import posixpath
import re
from typing import Literal, Optional

from ...node.shell import q, sections, sh
from .base import Change, Step, StepContext

_VERSION = re.compile(r"^version(?:_info)?\s*=\s*(\d+)\.(\d+)", re.MULTILINE)


class VenvStep(Step):
    kind: Literal["venv"] = "venv"
    path: str
    python: str
    python_version: str  # "3.11.2": the venv is rebuilt when its minor version differs
    pip_options: str = ""  # already shell-quoted (index/find-links), see playbook

    def describe(self) -> str:
        return self.description or f"venv at {self.path} from {self.python}"

    def probe(self) -> Optional[str]:
        cfg = posixpath.join(self.path, "pyvenv.cfg")
        python = posixpath.join(self.path, "bin", "python")
        return (f"echo @@cfg; cat {q(cfg)} 2>/dev/null; echo @@exe; "
                f"test -x {q(python)} && echo yes || echo no")

    def decide(self, output: Optional[str]) -> Optional[Change]:
        found = sections(output or "")
        match = _VERSION.search(found.get("cfg", ""))
        if found.get("exe") != "yes" or not match:
            return Change("no virtual environment yet")
        have = f"{match.group(1)}.{match.group(2)}"
        want = ".".join(self.python_version.split(".")[:2])
        if have != want:
            return Change(f"venv runs Python {have}, wanted {want}: rebuilt", {"rebuild": True})
        return None

    def apply(self, ctx: StepContext, change: Change) -> str:
        python = posixpath.join(self.path, "bin", "python")
        script = ""
        if change.data.get("rebuild"):
            script += f"rm -rf {q(self.path)} && "
        script += (f"{q(self.python)} -m venv {q(self.path)} && "
                   f"{q(python)} -m pip install --disable-pip-version-check -q --upgrade pip "
                   f"{self.pip_options}")
        ctx.node.run(sh(script), on_output=ctx.on_output)
        return "created" if not change.data.get("rebuild") else "rebuilt"
