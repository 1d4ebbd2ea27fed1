"""``pip``: install packages and/or a requirements file into the venv, under the constraints.

Every pip call on the node passes the constraints file, so no requirements file can move
torch off its pin (ComfyUI v0.3.64's requirements would upgrade it: FACTS.md). A marker
holding the sha256 of the exact command and of the files it read makes a re-run a no-op
without asking pip anything.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Literal, Optional

from ...core.errors import StepFailed
from ...node.shell import q, sections, sh, sha256_of
from .base import Change, Step, StepContext

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


class PipStep(Step):
    kind: Literal["pip"] = "pip"
    venv: str
    packages: list[str] = []
    requirements: Optional[str] = None  # a file on the node
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

    def command(self) -> str:
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
        return f"pip install {what}"

    def probe(self) -> Optional[str]:
        script = f"echo @@marker; cat {q(self.marker)} 2>/dev/null"
        for label, path in (("req", self.requirements), ("con", self.constraints)):
            if path:
                script += f"; echo @@{label}; {sha256_of(path)}"
        if self.expect:
            # The dist-info folder names carry the versions: no interpreter start needed.
            script += (f"; echo @@distinfo; cd {q(self.venv)}/lib 2>/dev/null && "
                       "ls -d python*/site-packages/*.dist-info 2>/dev/null")
        return script

    def wanted_marker(self, found: dict[str, str]) -> str:
        digest = hashlib.sha256(self.command().encode())
        for label in ("req", "con"):
            digest.update(b"\0" + found.get(label, "").encode())
        return digest.hexdigest()

    def decide(self, output: Optional[str]) -> Optional[Change]:
        found = sections(output or "")
        if self.requirements and not found.get("req"):
            return Change(f"{self.requirements} is not there yet")
        wanted = self.wanted_marker(found)
        if found.get("marker") != wanted:
            reason = "not installed yet" if not found.get("marker") else \
                "packages, requirements or constraints changed"
            return Change(reason, {"marker": wanted})
        drift = self._drift(json.dumps(installed_versions(found.get("distinfo", ""))))
        if drift:
            return Change(f"installed versions drifted: {drift}", {"marker": wanted})
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

    def apply(self, ctx: StepContext, change: Change) -> str:
        ctx.node.run(sh(self.command()), on_output=ctx.on_output)
        if self.expect:
            names = " ".join(q(name) for name in self.expect)
            result = ctx.node.run(sh(f"{q(self.python)} -c {q(_VERSIONS)} {names}"))
            drift = self._drift(result.stdout.strip())
            if drift:
                raise StepFailed(f"step {self.name}: after pip install, {drift}",
                                 "check the constraints file and the pip index in node.yaml")
        marker = change.data.get("marker")
        if marker is None:  # a requirements file appeared since the probe: hash it now
            found = {}
            for label, path in (("req", self.requirements), ("con", self.constraints)):
                if path:
                    found[label] = ctx.node.run(sh(sha256_of(path))).stdout.strip()
            marker = self.wanted_marker(found)
        ctx.node.put((marker + "\n").encode(), self.marker, 0o644)
        return "installed"
