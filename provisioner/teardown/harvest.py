"""Harvest: copy what ComfyUI made on the node to the laptop, verified, before anything goes.

One round trip lists the files (ComfyUI's ``output/``, the workflows under ``user/``, the
ComfyUI log) with size, mtime and sha256 computed on the node (templates/node_inventory.py).
``plan_harvest`` (pure) compares that with what the laptop already holds; the files to pull
come over SFTP on the run's one SSH connection, several at once, each into a hidden
``.<name>.part`` that a re-run resumes, hashed on the way and renamed into place only when
its sha256 equals the node's. ``manifest.json`` records every file (file, bytes, sha256,
pulled_at). A local file is never overwritten by different bytes: a different file of the
same name lands beside it as ``name.<sha8>.ext``.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import json
import os
import posixpath
import threading
import time
from pathlib import Path
from typing import AbstractSet, Callable, Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict

from ..core.errors import ProvisionError

MANIFEST = "manifest.json"
# ComfyUI's own placeholder in output/ (a file of its git checkout, not a user's output).
EXCLUDED_NAMES = ("_output_images_will_be_put_here",)
WORKERS = 4  # SFTP sessions in parallel on the one connection
# Pipelined SFTP reads of 255 KiB (OpenSSH's sftp-server serves up to 256 KiB - 1 KiB; a
# server that serves less just answers short reads), in channel packets that fit one reply.
READ_REQUEST = 255 * 1024
MAX_PACKET = 256 * 1024 + 1024
WINDOW = 16 * 1024 * 1024
PREFETCH_REQUESTS = 64  # reads in flight per file: ~16 MB, whatever the file's size
CHUNK = 1 << 20


class HarvestError(ProvisionError):
    """The node's file listing could not be read."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------------------- pure


class HarvestRoot(_Frozen):
    """One place on the node whose files are harvested, and where they go locally."""

    label: str  # the local folder: output, user, logs
    path: str  # absolute, on the node
    kind: Literal["tree", "file"] = "tree"
    only_under: Optional[str] = None  # keep only files below a folder of this name
    removable: bool = False  # user content: removed from the node once verified locally


class RemoteFile(_Frozen):
    """A file on the node, as the inventory saw it."""

    label: str
    path: str  # relative to its root, '/'-separated
    remote: str  # absolute path on the node
    bytes: int
    mtime_ns: int
    sha256: str

    @property
    def rel(self) -> str:
        """Its path under the local harvest folder."""
        return f"{self.label}/{self.path}"


class LocalFile(_Frozen):
    """What the laptop holds at one path of the harvest folder."""

    bytes: int
    sha256: str


class HarvestItem(_Frozen):
    source: RemoteFile
    dest: str  # relative to the harvest folder
    action: Literal["pull", "skip"]
    reason: str


class Refused(_Frozen):
    file: str
    reason: str


class HarvestPlan(_Frozen):
    items: list[HarvestItem] = []
    refused: list[Refused] = []

    @property
    def to_pull(self) -> list[HarvestItem]:
        return [item for item in self.items if item.action == "pull"]

    @property
    def to_skip(self) -> list[HarvestItem]:
        return [item for item in self.items if item.action == "skip"]

    @property
    def bytes_to_pull(self) -> int:
        return sum(item.source.bytes for item in self.to_pull)


def harvest_roots(paths) -> list[HarvestRoot]:
    """Return what a harvest takes from a node laid out as ``paths`` (a ``NodePaths``)."""
    return [
        HarvestRoot(label="output", path=paths.output, removable=True),
        HarvestRoot(label="user", path=paths.user_dir, only_under="workflows", removable=True),
        HarvestRoot(label="logs", path=paths.comfyui_log, kind="file"),
    ]


def alt_name(rel: str, sha256: str) -> str:
    """Return where a different file of the same name goes: ``a/b.png`` -> ``a/b.<sha8>.png``."""
    folder, name = posixpath.split(rel)
    stem, dot, ext = name.rpartition(".")
    renamed = f"{stem}.{sha256[:8]}.{ext}" if dot and stem else f"{name}.{sha256[:8]}"
    return posixpath.join(folder, renamed)


def unsafe_reason(rel: str) -> Optional[str]:
    """Say why a path must not be written under the harvest folder, or None."""
    if not rel or rel.startswith("/") or "\0" in rel or "\\" in rel:
        return "not a plain relative path"
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, '.' or '..' component"
    if parts[-1] == MANIFEST and len(parts) == 1:
        return "would overwrite the manifest"
    if parts[-1].startswith(".") and parts[-1].endswith(".part"):
        return "looks like a partial download of provision's own"
    return None


def plan_file(source: RemoteFile, local: dict[str, LocalFile],
              taken: AbstractSet[str] = frozenset()) -> HarvestItem | Refused:
    """Decide whether to pull one node file and where, given what is already local.

    ``local`` maps paths under the harvest folder to what is there; ``taken`` holds the
    destinations already given to other files of this harvest. A file whose identical copy
    exists (at its name, or at its ``alt_name``) is skipped; a free name is pulled to; a
    name holding different bytes sends the file to its ``alt_name``.
    """
    rel = source.rel
    why = unsafe_reason(rel)
    if why:
        return Refused(file=rel, reason=why)
    here = local.get(rel)
    if here is not None and here.sha256 == source.sha256 and here.bytes == source.bytes:
        return HarvestItem(source=source, dest=rel, action="skip", reason="already pulled")
    if here is None and rel not in taken:
        return HarvestItem(source=source, dest=rel, action="pull", reason="new")
    alt = alt_name(rel, source.sha256)
    there = local.get(alt)
    if there is not None and there.sha256 == source.sha256 and there.bytes == source.bytes:
        return HarvestItem(source=source, dest=alt, action="skip", reason="already pulled")
    if there is not None or alt in taken:
        return Refused(file=rel, reason=f"both {rel} and {alt} hold other files locally")
    return HarvestItem(source=source, dest=alt, action="pull",
                       reason=f"{rel} holds a different file locally")


def plan_harvest(remote_files: list[RemoteFile], local: dict[str, LocalFile]) -> HarvestPlan:
    """Plan every node file (``plan_file``), in path order."""
    items: list[HarvestItem] = []
    refused: list[Refused] = []
    taken: set[str] = set()
    for source in sorted(remote_files, key=lambda f: f.rel):
        decision = plan_file(source, local, taken)
        if isinstance(decision, Refused):
            refused.append(decision)
        else:
            taken.add(decision.dest)
            items.append(decision)
    return HarvestPlan(items=items, refused=refused)


def inventory_spec(roots: list[HarvestRoot], models: Optional[str] = None,
                   model_files: Sequence[str] = (), sizes: Sequence[str] = ()) -> dict:
    """Return the input of templates/node_inventory.py."""
    return {"roots": [root.model_dump() for root in roots], "exclude_names": list(EXCLUDED_NAMES),
            "models": models, "model_files": list(model_files), "sizes": list(sizes)}


def remote_file(record: dict, root: HarvestRoot) -> RemoteFile:
    """Return the ``RemoteFile`` of one ``file`` record of the inventory, under ``root``."""
    remote = root.path if root.kind == "file" else posixpath.join(root.path, record["path"])
    return RemoteFile(label=root.label, path=record["path"], remote=remote,
                      bytes=int(record["bytes"]), mtime_ns=int(record["mtime_ns"]),
                      sha256=str(record["sha256"]))


def parse_inventory(text: str, roots: list[HarvestRoot]) -> dict:
    """Parse node_inventory.py's JSON lines into files, problems, models and folder sizes.

    Raises ``HarvestError`` when the listing is cut short (no final ``done`` line).
    """
    by_label = {root.label: root for root in roots}
    files: list[RemoteFile] = []
    problems: list[Refused] = []
    models: list[tuple[str, int]] = []
    sizes: dict[str, tuple[int, int]] = {}
    done = False
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        kind = record.get("kind")
        if kind == "file" and record.get("label") in by_label:
            files.append(remote_file(record, by_label[record["label"]]))
        elif kind == "problem":
            problems.append(Refused(file=f"{record.get('label')}/{record.get('path')}",
                                    reason=str(record.get("error"))))
        elif kind == "model":
            models.append((str(record["path"]), int(record["bytes"])))
        elif kind == "size":
            sizes[str(record["path"])] = (int(record["bytes"]), int(record["files"]))
        elif kind == "done":
            done = True
    if not done:
        raise HarvestError("the node's file listing was cut short",
                           "re-run; if it persists, check the node's disk and its python3")
    return {"files": files, "problems": problems, "models": models, "sizes": sizes}


# ---------------------------------------------------------------------------- manifest


class ManifestEntry(_Frozen):
    file: str  # relative to the harvest folder
    bytes: int
    sha256: str
    pulled_at: str  # ISO 8601, UTC
    mtime_ns: int
    node_file: Optional[str] = None  # its path on the node's side when it was renamed


def read_manifest(folder: Path) -> dict[str, ManifestEntry]:
    """Return the manifest's entries by file; {} when there is none (or it is unreadable)."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return {entry["file"]: ManifestEntry(**entry) for entry in data.get("files", [])}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def write_manifest(folder: Path, node: str, entries: dict[str, ManifestEntry]) -> Path:
    """Write the manifest atomically (a temporary file renamed over it)."""
    path = folder / MANIFEST
    document = {"schema_version": 1, "node": node,
                "files": [entries[key].model_dump(exclude_none=True) for key in sorted(entries)]}
    temporary = folder / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(CHUNK)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def local_view(folder: Path, manifest: dict[str, ManifestEntry],
               remote_files: list[RemoteFile]) -> dict[str, LocalFile]:
    """Return what the harvest folder holds at the paths the node's files could go to.

    A file the manifest describes (same size and mtime) is trusted; any other is hashed.
    """
    view: dict[str, LocalFile] = {}
    for source in remote_files:
        for rel in (source.rel, alt_name(source.rel, source.sha256)):
            if rel in view or unsafe_reason(rel):
                continue
            path = folder / rel
            try:
                if path.is_symlink() or not path.is_file():
                    continue
                info = path.stat()
                entry = manifest.get(rel)
                if entry and entry.bytes == info.st_size and entry.mtime_ns == info.st_mtime_ns:
                    view[rel] = LocalFile(bytes=entry.bytes, sha256=entry.sha256)
                else:
                    view[rel] = LocalFile(bytes=info.st_size, sha256=sha256_file(path))
            except OSError:
                continue
    return view


# ---------------------------------------------------------------------------- pulling


class PulledFile(_Frozen):
    file: str
    bytes: int
    sha256: str
    resumed_from: int = 0


class HarvestFailure(_Frozen):
    file: str
    error: str


class HarvestEvent(BaseModel):
    """Progress for the CLI: ``start``; ``queued`` (a file to pull, its bytes); ``bytes``
    copied; a ``file`` done or ``failed``; ``end`` (files and bytes pulled)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["start", "queued", "bytes", "file", "failed", "end"]
    file: str = ""
    bytes: int = 0
    total_files: int = 0
    total_bytes: int = 0
    error: str = ""


HarvestSink = Callable[[HarvestEvent], None]


class HarvestOutcome(BaseModel):
    """What one harvest did: its plan, the files pulled and the ones that failed."""

    model_config = ConfigDict(frozen=True)

    plan: HarvestPlan
    pulled: list[PulledFile] = []
    failed: list[HarvestFailure] = []
    manifest: Optional[str] = None

    def verified(self) -> set[str]:
        """Return the local paths whose copy now matches the node (pulled or already there)."""
        return {p.file for p in self.pulled} | {i.dest for i in self.plan.to_skip}


def part_path(target: Path) -> Path:
    """Return the hidden partial file a pull writes before renaming it to ``target``."""
    return target.with_name(f".{target.name}.part")


class Harvester:
    """Pull node files into ``folder`` as they are offered, several at once, verified.

    ``offer`` plans one file against the folder and, if it must be copied, queues it on a
    pool of SFTP sessions of the one connection; so pulling starts while the node is still
    hashing the next files. ``finish`` waits, writes the manifest and returns the outcome.
    The manifest is also written every half second, so a killed run loses nothing it
    finished; a local error (a folder that cannot be made) is a failure, never an exception.
    """

    def __init__(self, node, folder: Path, *, node_name: str,
                 on_event: HarvestSink = lambda event: None, workers: int = WORKERS) -> None:
        self.node = node
        self.folder = folder
        self.node_name = node_name
        self.on_event = on_event
        self.manifest = read_manifest(folder)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._sessions: list = []
        self._items: list[HarvestItem] = []
        self._refused: list[Refused] = []
        self._taken: set[str] = set()
        self._pulled: list[PulledFile] = []
        self._failed: list[HarvestFailure] = []
        self._futures: list = []
        self._last_write = time.monotonic()
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, workers),
                                                           thread_name_prefix="harvest")
        self._ready: Optional[bool] = None
        on_event(HarvestEvent(kind="start"))

    def _folder_ready(self) -> bool:
        if self._ready is None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._ready = True
            except OSError as error:
                self._failed.append(HarvestFailure(file=str(self.folder), error=_describe(error)))
                self._ready = False
        return self._ready

    def offer(self, source: RemoteFile) -> None:
        """Plan ``source`` and, when it must be copied, start pulling it."""
        try:
            local = local_view(self.folder, self.manifest, [source])
        except OSError:
            local = {}
        with self._lock:
            decision = plan_file(source, local, self._taken)
            if isinstance(decision, Refused):
                self._refused.append(decision)
                return
            self._taken.add(decision.dest)
            self._items.append(decision)
        if decision.action == "skip":
            if decision.dest not in self.manifest:  # an identical copy from elsewhere: adopt it
                self._remember(decision)
            return
        if not self._folder_ready():
            self._failed.append(HarvestFailure(file=decision.dest, error="the folder cannot be made"))
            return
        self.on_event(HarvestEvent(kind="queued", file=decision.dest, bytes=source.bytes))
        self._futures.append(self._pool.submit(self._pull, decision))

    def finish(self) -> HarvestOutcome:
        """Wait for every pull, write the manifest, return what happened."""
        try:
            for future in self._futures:
                future.result()
        finally:
            self._pool.shutdown(wait=True)
            for session in self._sessions:
                try:
                    session.close()
                except Exception:  # noqa: BLE001
                    pass
        path = None
        if self._items and self._folder_ready():
            try:
                path = str(write_manifest(self.folder, self.node_name, self.manifest))
            except OSError as error:
                self._failed.append(HarvestFailure(file=MANIFEST, error=_describe(error)))
        plan = HarvestPlan(items=sorted(self._items, key=lambda i: i.dest),
                           refused=sorted(self._refused, key=lambda r: r.file))
        pulled = sorted(self._pulled, key=lambda p: p.file)
        self.on_event(HarvestEvent(kind="end", total_files=len(pulled),
                                   total_bytes=sum(p.bytes for p in pulled)))
        return HarvestOutcome(plan=plan, pulled=pulled, failed=sorted(self._failed, key=lambda f: f.file),
                              manifest=path)

    def _sftp(self):
        if getattr(self._local, "sftp", None) is None:
            self._local.sftp = self.node.open_sftp(window_size=WINDOW, max_packet_size=MAX_PACKET)
            with self._lock:
                self._sessions.append(self._local.sftp)
        return self._local.sftp

    def _remember(self, item: HarvestItem) -> None:
        source = item.source
        with self._lock:
            self.manifest[item.dest] = ManifestEntry(
                file=item.dest, bytes=source.bytes, sha256=source.sha256, pulled_at=now_iso(),
                mtime_ns=source.mtime_ns, node_file=source.rel if item.dest != source.rel else None)
            if time.monotonic() - self._last_write > 0.5 and self._folder_ready():
                write_manifest(self.folder, self.node_name, self.manifest)
                self._last_write = time.monotonic()

    def _pull(self, item: HarvestItem) -> None:
        try:
            result = _pull_one(self._sftp(), item, self.folder, self.on_event)
        except Exception as error:  # noqa: BLE001 - every failure is reported per file
            message = _describe(error)
            with self._lock:
                self._failed.append(HarvestFailure(file=item.dest, error=message))
            self.on_event(HarvestEvent(kind="failed", file=item.dest, error=message))
            return
        self.node.stats.transfers += 1
        with self._lock:
            self._pulled.append(result)
        self._remember(item)
        self.on_event(HarvestEvent(kind="file", file=item.dest, bytes=result.bytes))


def harvest(node, files: list[RemoteFile], folder: Path, *, node_name: str,
            on_event: HarvestSink = lambda event: None, workers: int = WORKERS) -> HarvestOutcome:
    """Harvest ``files`` (already listed) into ``folder``; see ``Harvester``."""
    harvester = Harvester(node, folder, node_name=node_name, on_event=on_event, workers=workers)
    for source in sorted(files, key=lambda f: f.rel):
        harvester.offer(source)
    return harvester.finish()


def _describe(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}"
    return str(error) or type(error).__name__


class _Mismatch(Exception):
    pass


def _pull_one(sftp, item: HarvestItem, folder: Path, on_event: HarvestSink) -> PulledFile:
    source = item.source
    target = folder / item.dest
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    for attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        if offset > source.bytes or attempt:
            offset = 0
        digest = hashlib.sha256()
        if offset:
            with open(part, "rb") as handle:
                for block in iter(lambda: handle.read(CHUNK), b""):
                    digest.update(block)
            on_event(HarvestEvent(kind="bytes", file=item.dest, bytes=offset))
        with open(part, "ab" if offset else "wb") as out, sftp.open(source.remote, "rb") as remote:
            remote.MAX_REQUEST_SIZE = READ_REQUEST
            if offset:
                remote.seek(offset)
            remote.prefetch(source.bytes, max_concurrent_requests=PREFETCH_REQUESTS)
            while True:
                block = remote.read(READ_REQUEST)
                if not block:
                    break
                digest.update(block)
                out.write(block)
                on_event(HarvestEvent(kind="bytes", file=item.dest, bytes=len(block)))
        size = part.stat().st_size
        if size == source.bytes and digest.hexdigest() == source.sha256:
            os.utime(part, ns=(source.mtime_ns, source.mtime_ns))
            os.replace(part, target)
            return PulledFile(file=item.dest, bytes=size, sha256=source.sha256, resumed_from=offset)
        part.unlink(missing_ok=True)
        if attempt == 0 and offset:
            continue  # the partial was stale: fetch the whole file once more
        raise _Mismatch(f"sha256 on the laptop differs from the node's ({size} of "
                        f"{source.bytes} bytes): the file changed or the copy is damaged")
    raise AssertionError("unreachable")
