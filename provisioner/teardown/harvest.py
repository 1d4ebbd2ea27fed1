"""Harvest: copy what ComfyUI made on the node to the laptop, verified, before anything goes.

The node lists its files with their sha256 (``inventory.py``); ``plan_harvest`` (pure,
``harvest_plan.py``) compares each with what the laptop already holds (``manifest.py``).
Here the files to pull come over SFTP on the run's one SSH connection, several at once,
each into a hidden ``.<name>.part`` that a re-run resumes, hashed on the way and renamed
into place only when its sha256 equals the node's; ``manifest.json`` then records it.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict

from .harvest_plan import MANIFEST, HarvestItem, HarvestPlan, Refused, RemoteFile, plan_file
from .manifest import CHUNK, ManifestEntry, local_view, now_iso, read_manifest, write_manifest

WORKERS = 4  # SFTP sessions in parallel on the one connection
# Pipelined SFTP reads of 255 KiB (OpenSSH's sftp-server serves up to 256 KiB - 1 KiB; a
# server that serves less just answers short reads), in channel packets that fit one reply.
READ_REQUEST = 255 * 1024
MAX_PACKET = 256 * 1024 + 1024
WINDOW = 16 * 1024 * 1024
PREFETCH_REQUESTS = 64  # reads in flight per file: ~16 MB, whatever the file's size


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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
