"""``download``: the planned model files, fetched by the node itself from the Hub.

One step for all files so independent files download in parallel (bounded). The node runs
``templates/hf_fetch.py``: bytes go to ``<dest>.partial`` and are moved into place only when
size and sha256 match; a cut download resumes from the bytes on disk with a Range request.
A verified file leaves a record (size, mtime, sha256), so a re-run skips it without hashing
12 GB again; a file whose size or mtime no longer match its record is re-verified.

The fetcher runs on a channel of its own (``node.spawn``) with the node's base interpreter, so
the step can start before the venv exists and run in the background (``background: true``)
while the installs go on. Its stdin carries the manifest, then the Hub token: the token is
never written on the node nor put on a command line. The fetcher exits as soon as that stdin
closes, so ``stop`` (or a lost connection) ends it at once.
"""

from __future__ import annotations

import json
import posixpath
from typing import Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict

from ...core.errors import DownloadError, StepFailed
from ...core.redact import redact
from ...core.units import format_bytes
from ...node.shell import q, sections, sh
from .base import Change, Step, StepContext

QUIET_WAIT = 5.0  # s between looks at a quiet fetcher (a retry's backoff prints nothing)
RESUME_HINT = "re-run `provision up`: downloads resume from the bytes already on the node"
CHECKSUM_HINT = ("check sha256: of that url: entry in node.yaml (`sha256sum` of the file you "
                 "meant), or whether the file at the URL changed; then re-run `provision up`")
DISK_FULL_HINT = ("free space on the node (`provision status` shows the disk; `df -h` on the node "
                  "says which volume), then re-run `provision up`: it resumes from the bytes kept")


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
    url: Optional[str] = None  # a user's file off the Hub: fetched from here, never with the token
    entry: Optional[str] = None  # the node.yaml field a user's file comes from, e.g. loras[0]

    @property
    def record(self) -> str:
        return self.dest + ".verified"


def parse_record(text: str) -> Optional[dict]:
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


# The fetcher is a program in three files (templates/): the main one imports the other two.
FETCHER_PARTS = ("hf_fetch_io.py", "hf_fetch_ranges.py", "hf_fetch_guard.py")


def fetcher_bundle(main_name: str = "hf_fetch.py") -> bytes:
    """Return the fetcher's files as one tar, the main program named ``main_name``: one
    command unpacks them on the node, beside each other."""
    import io
    import tarfile
    import time

    from ...core.resources import data_file

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as bundle:
        for source, name in [("hf_fetch.py", main_name), *((part, part) for part in FETCHER_PARTS)]:
            data = data_file("templates", source).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            bundle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ranged_bytes(sidecar: str) -> Optional[int]:
    """Return the bytes a ``.partial.ranges`` sidecar says are on disk, or None without one."""
    record = parse_record(sidecar)
    try:
        spans = [(int(start), int(end)) for start, end in (record or {})["done"]]
    except (KeyError, TypeError, ValueError):
        return None
    return sum(max(end - start, 0) for start, end in spans)


class DownloadStep(Step):
    kind: Literal["download"] = "download"
    files: list[FileSpec]
    endpoint: str
    fetcher: str  # where hf_fetch.py goes on the node
    python: str  # the node's base interpreter: the download may start before the venv exists
    parallel: int = 3
    retries: int = 5
    backoff: float = 2.0
    connections: int = 8  # byte ranges fetched at once for one large file
    max_connections: int = 16  # connections at once over all files
    range_threshold: int = 256 << 20  # bytes: a larger file is fetched in ranges

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
                f"echo @@partial{index}; wc -c < {q(spec.dest + '.partial')} 2>/dev/null | tr -d ' '; "
                f"echo @@ranges{index}; cat {q(spec.dest + '.partial.ranges')} 2>/dev/null; echo")
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
                ranged = ranged_bytes(found.get(f"ranges{index}", ""))
                if ranged is not None:  # a ranged .partial is preallocated: its size says nothing
                    partial[index] = ranged
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

    def manifest(self, todo: list[int]) -> dict:
        """Return what the fetcher reads on its first line of stdin (never a secret)."""
        files = []
        for index in todo:
            spec = self.files[index]
            item = {"repo": spec.repo, "file": spec.file, "revision": spec.revision,
                    "dest": spec.dest, "size": spec.size if spec.resolved else None,
                    "sha256": spec.sha256, "quant": spec.quant, "record": spec.record}
            if spec.url:  # the fetcher sends no token with it
                item.update(url=spec.url, entry=spec.entry)
            files.append(item)
        return {"endpoint": self.endpoint, "stop_on_eof": True, "parallel": self.parallel,
                "retries": self.retries, "backoff": self.backoff, "connections": self.connections,
                "max_connections": self.max_connections, "range_threshold": self.range_threshold,
                "files": files}

    def start(self, ctx: StepContext, change: Change) -> "Fetch":
        """Upload the fetcher, start it on a channel of its own and return at once."""
        node = ctx.node
        # Through the command's stdin, not SFTP: start may run beside another step's upload.
        folder = posixpath.dirname(self.fetcher)
        node.run(sh(f"mkdir -p {q(folder)} && tar -xf - -C {q(folder)}"),
                 stdin=fetcher_bundle(posixpath.basename(self.fetcher)))
        spawned = node.spawn(f"{q(self.python)} {q(self.fetcher)}")
        token = (ctx.secrets.get("hf_token") or "").strip()
        try:
            # Line 1 the manifest, line 2 the token (empty: none); stdin stays open: closing
            # it stops the fetcher.
            spawned.write(json.dumps(self.manifest(change.data["todo"])) + "\n" + token + "\n")
        except Exception as error:  # paramiko raises several kinds once the link is gone
            spawned.close()
            raise StepFailed(f"step {self.name}: could not start the fetcher ({type(error).__name__})",
                             RESUME_HINT) from None
        return Fetch(self.name, spawned, ctx.on_progress, ctx.on_output)

    def apply(self, ctx: StepContext, change: Change) -> str:
        return self.start(ctx, change).wait()


class Fetch:
    """The node's fetcher, running: ``wait`` streams its events and says how it ended."""

    def __init__(self, name: str, spawned, on_progress: Callable[[dict], None],
                 on_output: Callable[[str], None]) -> None:
        self.name = name
        self._spawned = spawned
        self._on_progress = on_progress
        self._on_output = on_output
        self._stopped = False

    def wait(self) -> str:
        """Read the fetcher's events until it ends; return the detail, or raise ``StepFailed``."""
        events: list[dict] = []
        spawned = self._spawned
        stderr = ""
        while True:
            stderr = (stderr + spawned.stderr())[-65536:]  # read as it comes: it shares the window
            try:
                line = spawned.readline(timeout=QUIET_WAIT)
            except TimeoutError:
                continue
            if not line:
                if spawned.finished:
                    break
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                self._on_output(redact(line))
                continue
            events.append(event)
            self._on_progress(event)
        exit_code = spawned.exit_code()
        stderr = redact(" | ".join((stderr + spawned.stderr()).strip().splitlines()[-3:]))
        spawned.close()
        done = [e for e in events if e.get("event") == "done"]
        fetched = sum(e.get("bytes", 0) - e.get("resumed_from", 0) for e in done)
        if self._stopped:
            raise StepFailed(f"step {self.name}: stopped with {len(done)} file(s) verified; the "
                             "bytes fetched are kept on the node", RESUME_HINT)
        errors = [f"{posixpath.basename(e['dest'])}: {e.get('message')}" for e in events
                  if e.get("event") == "error"]
        if exit_code != 0:
            ended = (f"exit code {exit_code}" if exit_code >= 0
                     else "the fetcher ended without an exit code (killed, or the connection was lost)")
            reasons = {e.get("reason") for e in events if e.get("event") == "error"}
            hint = (DISK_FULL_HINT if "disk_full" in reasons
                    else CHECKSUM_HINT if "checksum" in reasons else RESUME_HINT)
            raise StepFailed(f"step {self.name}: {'; '.join(errors) or stderr or ended}", hint)
        return f"{len(done)} file(s) verified, {format_bytes(fetched)} fetched"

    def stop(self) -> None:
        """Close the fetcher's stdin: it exits at once; ``wait`` then raises, naming the stop."""
        self._stopped = True
        self._spawned.end_input()


__all__ = ["DownloadStep", "FileSpec", "Fetch", "DownloadError"]
