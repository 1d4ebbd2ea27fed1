"""``venv``: a Python virtual environment built from a chosen interpreter, by uv or by pip.

With ``installer: uv`` the step first installs the pinned uv into ``uv_dir`` (see
``installer.py``) and creates the venv with ``uv venv``, which holds a ``python`` and no pip:
the pip steps install with ``uv pip install``. When uv cannot be installed the detail says so,
and the venv is made as with ``installer: pip``: ``python -m venv``, pip upgraded.
"""

from __future__ import annotations

import posixpath
import re
from typing import Literal, Optional

from ...node.shell import q, sections, sh
from .base import Change, StepContext
from .installer import (
    UV_VERSION,
    InstallerStep,
    failure_note,
    install_uv_command,
    mark_unavailable_command,
    parse_uv_version,
    unavailable_marker,
    uv_binary,
    uv_cache,
    uv_key,
)

_VERSION = re.compile(r"^version(?:_info)?\s*=\s*(\d+)\.(\d+)", re.MULTILINE)


class VenvStep(InstallerStep):
    kind: Literal["venv"] = "venv"
    path: str
    python: str
    python_version: str  # "3.11.2": the venv is rebuilt when its minor version differs
    pip_options: str = ""  # already shell-quoted (index/find-links), see playbook
    uv_version: str = UV_VERSION


    @property
    def venv_python(self) -> str:
        return posixpath.join(self.path, "bin", "python")

    @property
    def uv_key(self) -> str:
        return uv_key(self.uv_version, self.python, self.pip_options)

    def describe(self) -> str:
        if self.description:
            return self.description
        if self.installer == "uv":
            return (f"virtual environment at {self.path}, made by uv {self.uv_version} "
                    f"(installed into {self.uv_dir}; pip if it cannot be installed)")
        return f"virtual environment at {self.path} (python -m venv), pip upgraded"

    def probe(self) -> Optional[str]:
        cfg = posixpath.join(self.path, "pyvenv.cfg")
        script = (f"echo @@cfg; cat {q(cfg)} 2>/dev/null; echo @@exe; "
                  f"test -x {q(self.venv_python)} && echo yes || echo no; echo @@pip; "
                  f"test -x {q(posixpath.join(self.path, 'bin', 'pip'))} && echo yes || echo no")
        if self.installer == "uv" and self.uv_dir:
            script += (f"; echo @@uv; {q(uv_binary(self.uv_dir))} --version 2>/dev/null; "
                       f"echo @@uvmiss; cat {q(unavailable_marker(self.uv_dir))} 2>/dev/null")
        return script

    def decide(self, output: Optional[str]) -> Optional[Change]:
        found = sections(output or "")
        uv_wanted = self.installer == "uv"
        uv_found = parse_uv_version(found.get("uv", "")) if uv_wanted else None
        uv_ready = uv_found == self.uv_version
        # The index had no uv for these settings last time: pip, without asking again.
        uv_refused = uv_wanted and not uv_ready and found.get("uvmiss") == self.uv_key
        data = {"install_uv": uv_wanted and not uv_ready and not uv_refused,
                "use_uv": uv_wanted and not uv_refused, "has_pip": found.get("pip") == "yes"}
        how = ""
        if uv_wanted:
            how = (f" (uv {self.uv_version})" if not uv_refused else
                   f" (pip: uv {self.uv_version} is not on this node's index)")
        match = _VERSION.search(found.get("cfg", ""))
        if found.get("exe") != "yes" or not match:
            return Change(f"no virtual environment yet{how}", dict(data, create=True))
        have = f"{match.group(1)}.{match.group(2)}"
        want = ".".join(self.python_version.split(".")[:2])
        if have != want:
            return Change(f"venv runs Python {have}, wanted {want}: rebuilt{how}",
                          dict(data, create=True, rebuild=True))
        if data["install_uv"]:
            found_text = f" (found {uv_found})" if uv_found else ""
            return Change(f"uv {self.uv_version} is not installed yet{found_text}", data)
        if not data["use_uv"] and not data["has_pip"]:
            return Change("the venv has no pip (uv made it), and pip installs now", data)
        return None

    def apply(self, ctx: StepContext, change: Change) -> str:
        data = change.data
        use_uv = bool(data.get("use_uv"))
        notes = []
        if data.get("install_uv"):
            use_uv, note = self._install_uv(ctx)
            notes.append(note)
        if data.get("create"):
            script = f"rm -rf {q(self.path)} && " if data.get("rebuild") else ""
            if use_uv:
                uv_dir = str(self.uv_dir)
                script += (f"{q(uv_binary(uv_dir))} venv --no-project --allow-existing "
                           f"--cache-dir {q(uv_cache(uv_dir))} --python {q(self.python)} "
                           f"{q(self.path)}")
            else:
                script += f"{q(self.python)} -m venv {q(self.path)} && {self._upgrade_pip()}"
            ctx.node.run(sh(script), on_output=ctx.on_output)
            done = "rebuilt" if data.get("rebuild") else "created"
            notes.insert(0, f"{done} with uv" if use_uv else done)
        elif not use_uv and not data.get("has_pip"):
            script = f"{q(self.venv_python)} -m ensurepip --upgrade --default-pip && {self._upgrade_pip()}"
            ctx.node.run(sh(script), on_output=ctx.on_output)
            notes.append("pip added to the venv")
        return "; ".join(notes)

    def _upgrade_pip(self) -> str:
        return (f"{q(self.venv_python)} -m pip install --disable-pip-version-check -q --upgrade pip "
                f"{self.pip_options}")

    def _install_uv(self, ctx: StepContext) -> tuple[bool, str]:
        """Install the pinned uv; on failure say why, remember a lasting one, use pip."""
        uv_dir = str(self.uv_dir)
        command = install_uv_command(self.python, uv_dir, self.uv_version, self.pip_options)
        result = ctx.node.run(sh(command), check=False, on_output=ctx.on_output)
        if result.ok:
            return True, f"uv {self.uv_version} installed into {uv_dir}"
        reason, transient = failure_note(result.stdout + "\n" + result.stderr)
        if not transient:
            ctx.node.run(sh(mark_unavailable_command(uv_dir, self.uv_key)), check=False)
        later = "tried again on the next run" if transient else \
            "not tried again until the pin or the index options change"
        return False, (f"warning: uv {self.uv_version} could not be installed ({reason}); "
                       f"pip installs instead ({later})")
