"""``pip``: install packages and/or a requirements file into the venv, under the constraints.

Every install call on the node passes the constraints file, so no requirements file can move
torch off its pin (ComfyUI v0.3.64's requirements would upgrade it: FACTS.md). A marker
holding the sha256 of the exact command and of the files it read makes a re-run a no-op
without asking pip anything.

With ``installer: uv`` the same install runs as ``uv pip install --python <venv python>``
(same options, same constraints) once the venv step has installed uv; while uv is not there
(it could not be installed) pip does it. A marker written by either command counts, so
switching from pip to uv reinstalls nothing.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Literal, Optional

from ...core.errors import StepFailed
from ...node.shell import q, sections, sh, sha256_of
from .base import Change, StepContext
from .installer import InstallerStep, uv_binary, uv_cache, uv_state_probe

# One interpreter start reads every expected version; absent distributions print None.
_VERSIONS = ("import json, sys, importlib.metadata as m\n"
             "def v(n):\n"
             "    try: return m.version(n)\n"
             "    except m.PackageNotFoundError: return None\n"
             "print(json.dumps({n: v(n) for n in sys.argv[1:]}))")


def installed_versions(listing: str) -> dict[str, str]:
    """Map normalised distribution names to versions from ``*.dist-info`` folder names."""
    versions = {}
    for line in listing.splitlines():
        folder = line.strip().rsplit("/", 1)[-1]
        if not folder.endswith(".dist-info") or "-" not in folder:
            continue
        name, version = folder[: -len(".dist-info")].rsplit("-", 1)
        versions[_normalise(name)] = version
    return versions


def _normalise(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


class PipStep(InstallerStep):
    kind: Literal["pip"] = "pip"
    venv: str
    packages: list[str] = []
    requirements: Optional[str] = None  # a file on the node
    # A checkout without that file has nothing to install (a custom node without
    # requirements.txt); the step waits for its folder, not for the file.
    requirements_optional: bool = False
    constraints: Optional[str] = None  # a file on the node
    pip_options: str = ""  # already shell-quoted (index/find-links)
    expect: dict[str, str] = {}  # distribution -> version that must be installed afterwards
    marker_dir: str


    @property
    def python(self) -> str:
        return posixpath.join(self.venv, "bin", "python")

    @property
    def marker(self) -> str:
        return posixpath.join(self.marker_dir, f"pip-{self.name}.sha256")

    def command(self, uv: bool = False) -> str:
        """Return the install command: pip's, or with ``uv`` uv's (same options and files)."""
        if uv:
            uv_dir = str(self.uv_dir)
            parts = [q(uv_binary(uv_dir)), "pip install --python", q(self.python),
                     "--cache-dir", q(uv_cache(uv_dir))]
        else:
            parts = [q(self.python), "-m pip install --disable-pip-version-check --progress-bar off"]
        if self.pip_options:
            parts.append(self.pip_options)
        if self.constraints:
            parts.append(f"-c {q(self.constraints)}")
        if self.requirements:
            parts.append(f"-r {q(self.requirements)}")
        parts.extend(q(package) for package in self.packages)
        return " ".join(parts)

    def describe(self) -> str:
        if self.description:
            return self.description
        what = " ".join(self.packages)
        if self.requirements:
            what = (f"-r {self.requirements} " + what).strip()
        return f"{'uv pip' if self.installer == 'uv' else 'pip'} install {what}"

    def probe(self) -> Optional[str]:
        script = f"echo @@marker; cat {q(self.marker)} 2>/dev/null"
        if self.installer == "uv" and self.uv_dir:
            script += f"; {uv_state_probe(self.uv_dir)}"
        for label, path in (("req", self.requirements), ("con", self.constraints)):
            if path:
                script += f"; echo @@{label}; {sha256_of(path)}"
        if self.requirements and self.requirements_optional:
            script += f"; echo @@folder; test -d {q(posixpath.dirname(self.requirements))} && echo yes"
        if self.expect:
            # The dist-info folder names carry the versions: no interpreter start needed.
            script += (f"; echo @@distinfo; cd {q(self.venv)}/lib 2>/dev/null && "
                       "ls -d python*/site-packages/*.dist-info 2>/dev/null")
        return script

    def wanted_marker(self, found: dict[str, str], uv: bool = False) -> str:
        digest = hashlib.sha256(self.command(uv).encode())
        for label in ("req", "con"):
            digest.update(b"\0" + found.get(label, "").encode())
        return digest.hexdigest()

    def decide(self, output: Optional[str]) -> Optional[Change]:
        found = sections(output or "")
        # uv when the venv step installed it; "absent" before it ran (a dry run) or when it
        # could not install uv on this run; "unavailable" when the index has none.
        uv_state = found.get("uv", "absent") if self.installer == "uv" else None
        use_uv = uv_state == "ready"
        how = {None: "", "ready": " (uv)", "absent": " (uv)",
               "unavailable": " (pip: uv is not on this node's index)"}.get(uv_state, "")
        if self.requirements and not found.get("req"):
            if self.requirements_optional and found.get("folder") and not self.packages:
                return None  # the checkout is there and has no requirements.txt
            return Change(f"{self.requirements} is not there yet{how}", {"uv": use_uv})
        wanted = self.wanted_marker(found, use_uv)
        done = {self.wanted_marker(found)}
        if self.installer == "uv":
            done.add(self.wanted_marker(found, uv=True))
        if found.get("marker") not in done:
            reason = "not installed yet" if not found.get("marker") else \
                "packages, requirements or constraints changed"
            return Change(reason + how, {"marker": wanted, "uv": use_uv})
        drift = self._drift(json.dumps(installed_versions(found.get("distinfo", ""))))
        if drift:
            return Change(f"installed versions drifted: {drift}{how}", {"marker": wanted, "uv": use_uv})
        return None

    def _drift(self, versions_json: str) -> str:
        if not self.expect:
            return ""
        try:
            have = json.loads(versions_json)
        except ValueError:
            return "cannot read installed versions"
        have = {_normalise(name): version for name, version in have.items()}
        wrong = [f"{name} {have.get(_normalise(name))} != {want}" for name, want in self.expect.items()
                 if have.get(_normalise(name)) != want]
        return ", ".join(wrong)

    def repair(self) -> str:
        """Return a snippet removing what an install cut short leaves: a dist-info folder
        without its METADATA or RECORD, which uv refuses ("Failed to read metadata") and
        pip skips as invalid. The package then counts as absent and is installed again."""
        return (f"for d in {q(self.venv)}/lib/python*/site-packages/*.dist-info; do "
                "[ -d \"$d\" ] || continue; "
                "[ -f \"$d/METADATA\" ] && [ -f \"$d/RECORD\" ] || rm -rf \"$d\"; done")

    def apply(self, ctx: StepContext, change: Change) -> str:
        use_uv = bool(change.data.get("uv"))
        ctx.node.run(sh(f"{self.repair()}; {self.command(use_uv)}"), on_output=ctx.on_output)
        if self.expect:
            names = " ".join(q(name) for name in self.expect)
            result = ctx.node.run(sh(f"{q(self.python)} -c {q(_VERSIONS)} {names}"))
            drift = self._drift(result.stdout.strip())
            if drift:
                raise StepFailed(f"step {self.name}: after {'uv ' if use_uv else ''}pip install, {drift}",
                                 "check the constraints file and the pip index in node.yaml")
        marker = change.data.get("marker")
        if marker is None:  # a requirements file appeared since the probe: hash it now
            found = {}
            for label, path in (("req", self.requirements), ("con", self.constraints)):
                if path:
                    found[label] = ctx.node.run(sh(sha256_of(path))).stdout.strip()
            marker = self.wanted_marker(found, use_uv)
        ctx.node.put((marker + "\n").encode(), self.marker, 0o644)
        if self.installer == "uv":
            return "installed with uv" if use_uv else "installed with pip (uv is not installed)"
        return "installed"
