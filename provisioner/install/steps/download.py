"""``download``: the planned model files, fetched by the node itself from the Hub.

One step for all files so independent files download in parallel (bounded). The node runs
``templates/hf_fetch.py``: bytes go to ``<dest>.partial`` and are moved into place only when
size and sha256 match; a cut download resumes from the bytes on disk with a Range request.
A verified file leaves a record (size, mtime, sha256), so a re-run skips it without hashing
12 GB again; a file whose size or mtime no longer match its record is re-verified.
"""

from __future__ import annotations

import json
import posixpath
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict

from ...core.errors import DownloadError, StepFailed
from ...core.units import format_bytes
from ...node.shell import q, sections, sh
from .base import Change, Step, StepContext


class FileSpec(BaseModel):
    """One file to fetch; size and sha256 are exact once the Hub preflight resolved them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str
    repo: str
    file: str
    revision: str = "main"
    dest: str
    size: Optional[int] = None
    sha256: Optional[str] = None
    quant: Optional[str] = None
    gated: bool = False
    licence_url: Optional[str] = None
    resolved: bool = False  # size/sha256 come from the Hub, not the catalog's listing

    @property
    def record(self) -> str:
        return self.dest + ".verified"


def parse_record(text: str) -> Optional[dict]:
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class DownloadStep(Step):
    kind: Literal["download"] = "download"
    files: list[FileSpec]
    endpoint: str
    fetcher: str  # where hf_fetch.py goes on the node
    python: str
    token_file: str
    parallel: int = 3
    retries: int = 5
    backoff: float = 2.0

    def describe(self) -> str:
        total = sum(spec.size or 0 for spec in self.files)
        return self.description or f"{len(self.files)} model files, {format_bytes(total)}"

    def probe(self) -> Optional[str]:
        parts = []
        for index, spec in enumerate(self.files):
            dest = q(spec.dest)
            parts.append(
                f"echo @@stat{index}; {{ stat -c '%s %Y' {dest} 2>/dev/null || "
                f"stat -f '%z %m' {dest} 2>/dev/null; }}; "
                f"echo @@record{index}; cat {q(spec.record)} 2>/dev/null; echo; "
                f"echo @@partial{index}; wc -c < {q(spec.dest + '.partial')} 2>/dev/null | tr -d ' '")
        return "; ".join(parts) or None

    def pending(self, output: Optional[str]) -> tuple[list[int], dict[int, int]]:
        """Return the indexes of files still to fetch and the bytes of their partial files."""
        found = sections(output or "")
        todo, partial = [], {}
        for index, spec in enumerate(self.files):
            if not self._verified(spec, found.get(f"stat{index}", ""), found.get(f"record{index}", "")):
                todo.append(index)
                partial_bytes = found.get(f"partial{index}", "")
                partial[index] = int(partial_bytes) if partial_bytes.isdigit() else 0
        return todo, partial

    @staticmethod
    def _verified(spec: FileSpec, stat: str, record_text: str) -> bool:
        fields = stat.split()
        record = parse_record(record_text)
        if len(fields) != 2 or record is None:
            return False
        size, mtime = int(fields[0]), int(fields[1])
        if record.get("size") != size or record.get("mtime") != mtime:
            return False  # changed since it was verified: verify again
        if spec.size is not None and spec.resolved and size != spec.size:
            return False
        return not (spec.sha256 and record.get("sha256") != spec.sha256)

    def decide(self, output: Optional[str]) -> Optional[Change]:
        todo, partial = self.pending(output)
        if not todo:
            return None
        remaining = sum(max((self.files[i].size or 0) - partial.get(i, 0), 0) for i in todo)
        resumed = sum(partial.values())
        reason = f"{len(todo)} of {len(self.files)} file(s) to fetch, {format_bytes(remaining)}"
        if resumed:
            reason += f" (resuming {format_bytes(resumed)} already on the node)"
        return Change(reason, {"todo": todo})

    def manifest(self, todo: list[int], with_token: bool) -> dict:
        files = []
        for index in todo:
            spec = self.files[index]
            files.append({"repo": spec.repo, "file": spec.file, "revision": spec.revision,
                          "dest": spec.dest, "size": spec.size if spec.resolved else None,
                          "sha256": spec.sha256, "quant": spec.quant, "record": spec.record})
        return {"endpoint": self.endpoint, "token_file": self.token_file if with_token else None,
                "parallel": self.parallel, "retries": self.retries, "backoff": self.backoff,
                "files": files}

    def apply(self, ctx: StepContext, change: Change) -> str:
        from ...core.resources import data_file

        node = ctx.node
        node.run(sh(f"mkdir -p {q(posixpath.dirname(self.fetcher))}"))
        node.put(data_file("templates", "hf_fetch.py").read_bytes(), self.fetcher, 0o644)
        token = ctx.secrets.get("hf_token")
        if token:
            node.put(token.encode() + b"\n", self.token_file, 0o600)
        events: list[dict] = []

        def on_line(line: str) -> None:
            try:
                event = json.loads(line)
            except ValueError:
                ctx.on_output(line)
                return
            events.append(event)
            ctx.on_progress(event)

        manifest = json.dumps(self.manifest(change.data["todo"], bool(token)))
        try:
            result = node.run(f"{q(self.python)} {q(self.fetcher)}", stdin=manifest, check=False,
                              on_output=on_line)
        finally:
            if token:
                # The token lives on the node only while files are being fetched.
                node.run(f"rm -f {q(self.token_file)}", check=False)
        errors = [f"{posixpath.basename(e['dest'])}: {e.get('message')}" for e in events
                  if e.get("event") == "error"]
        if result.exit_code != 0:
            detail = "; ".join(errors) or result.tail(3) or f"exit code {result.exit_code}"
            raise StepFailed(f"step {self.name}: {detail}",
                             "re-run `provision up`: downloads resume from the bytes already "
                             "on the node")
        done = [e for e in events if e.get("event") == "done"]
        fetched = sum(e.get("bytes", 0) - e.get("resumed_from", 0) for e in done)
        return f"{len(done)} file(s) verified, {format_bytes(fetched)} fetched"


__all__ = ["DownloadStep", "FileSpec", "DownloadError"]
