"""Pulling node files (``Harvester``): verified, resumable, never overwriting other bytes.

The node is a folder here and its SFTP sessions open files in it, so every pull, resume and
refusal runs for real on the laptop's side.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from provisioner.node.remote import NodeStats
from provisioner.teardown.harvest import Harvester, HarvestEvent, harvest, part_path
from provisioner.teardown.harvest_plan import RemoteFile

MTIME_NS = 1_700_000_000_123_456_789


class FolderFile:
    """A node file opened over (fake) SFTP: the calls ``_pull_one`` makes, on a local file."""

    MAX_REQUEST_SIZE = 32768

    def __init__(self, path: str) -> None:
        self._handle = open(path, "rb")  # noqa: SIM115 - closed in __exit__
        self.prefetched = None

    def __enter__(self) -> FolderFile:
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()

    def seek(self, offset: int) -> None:
        self._handle.seek(offset)

    def prefetch(self, size: int, max_concurrent_requests: int) -> None:
        self.prefetched = size

    def read(self, size: int) -> bytes:
        return self._handle.read(size)


class FolderSFTP:
    def __init__(self) -> None:
        self.closed = False

    def open(self, path: str, mode: str) -> FolderFile:
        assert mode == "rb"
        return FolderFile(path)

    def close(self) -> None:
        self.closed = True


class FolderNode:
    def __init__(self) -> None:
        self.stats = NodeStats()
        self.sessions: list[FolderSFTP] = []

    def open_sftp(self, window_size=None, max_packet_size=None) -> FolderSFTP:
        self.sessions.append(FolderSFTP())
        return self.sessions[-1]


def on_node(root: Path, name: str, data: bytes, sha256: str | None = None) -> RemoteFile:
    """Write ``data`` as a node file under ``root``; return it as the inventory lists it."""
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return RemoteFile(label="output", path=name, remote=str(path), bytes=len(data),
                      mtime_ns=MTIME_NS, sha256=sha256 or hashlib.sha256(data).hexdigest())


def test_a_new_file_is_pulled_verified_and_recorded(tmp_path):
    node, events = FolderNode(), []
    source = on_node(tmp_path / "node", "sub/a.png", b"pixels" * 1000)
    dest = tmp_path / "harvest"
    outcome = harvest(node, [source], dest, node_name="n1", on_event=events.append)
    target = dest / "output" / "sub" / "a.png"
    assert target.read_bytes() == b"pixels" * 1000
    assert target.stat().st_mtime_ns == MTIME_NS
    assert not part_path(target).exists()
    assert [(p.file, p.bytes, p.resumed_from) for p in outcome.pulled] == [("output/sub/a.png", 6000, 0)]
    assert not outcome.failed and outcome.verified() == {"output/sub/a.png"}
    manifest = json.loads((dest / "manifest.json").read_text())
    assert [entry["file"] for entry in manifest["files"]] == ["output/sub/a.png"]
    assert manifest["files"][0]["sha256"] == source.sha256
    assert node.stats.transfers == 1
    assert all(session.closed for session in node.sessions)
    kinds = [event.kind for event in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and "queued" in kinds and "file" in kinds
    assert sum(e.bytes for e in events if e.kind == "bytes") == 6000


def test_a_partial_download_is_resumed_from_where_it_stopped(tmp_path):
    data = bytes(range(256)) * 100
    source = on_node(tmp_path / "node", "a.bin", data)
    dest = tmp_path / "harvest"
    part = part_path(dest / "output" / "a.bin")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    outcome = harvest(FolderNode(), [source], dest, node_name="n1")
    assert [(p.file, p.resumed_from) for p in outcome.pulled] == [("output/a.bin", 1000)]
    assert (dest / "output" / "a.bin").read_bytes() == data and not part.exists()


def test_a_stale_partial_is_dropped_and_the_whole_file_fetched_again(tmp_path):
    data = b"fresh bytes " * 500
    source = on_node(tmp_path / "node", "a.bin", data)
    dest = tmp_path / "harvest"
    part = part_path(dest / "output" / "a.bin")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"something else entirely")
    outcome = harvest(FolderNode(), [source], dest, node_name="n1")
    assert [(p.file, p.resumed_from) for p in outcome.pulled] == [("output/a.bin", 0)]
    assert (dest / "output" / "a.bin").read_bytes() == data


def test_a_copy_whose_sha256_differs_from_the_nodes_is_a_failure_and_left_nowhere(tmp_path):
    events: list[HarvestEvent] = []
    source = on_node(tmp_path / "node", "a.png", b"changed since it was listed", sha256="0" * 64)
    dest = tmp_path / "harvest"
    outcome = harvest(FolderNode(), [source], dest, node_name="n1", on_event=events.append)
    assert not outcome.pulled and outcome.verified() == set()
    assert [f.file for f in outcome.failed] == ["output/a.png"]
    assert "sha256 on the laptop differs" in outcome.failed[0].error
    assert not (dest / "output" / "a.png").exists()
    assert not part_path(dest / "output" / "a.png").exists()
    assert [e.file for e in events if e.kind == "failed"] == ["output/a.png"]


def test_an_identical_local_copy_is_adopted_not_pulled_and_other_bytes_never_overwritten(tmp_path):
    node = FolderNode()
    same = on_node(tmp_path / "node", "same.png", b"same")
    other = on_node(tmp_path / "node", "other.png", b"node's bytes")
    dest = tmp_path / "harvest"
    (dest / "output").mkdir(parents=True)
    (dest / "output" / "same.png").write_bytes(b"same")
    (dest / "output" / "other.png").write_bytes(b"the laptop's own file")
    harvester = Harvester(node, dest, node_name="n1")
    for source in (same, other):
        harvester.offer(source)
    outcome = harvester.finish()
    alt = f"output/other.{other.sha256[:8]}.png"
    assert [p.file for p in outcome.pulled] == [alt]
    assert [i.dest for i in outcome.plan.to_skip] == ["output/same.png"]
    assert (dest / "output" / "other.png").read_bytes() == b"the laptop's own file"
    assert (dest / alt).read_bytes() == b"node's bytes"
    manifest = json.loads((dest / "manifest.json").read_text())
    assert {entry["file"] for entry in manifest["files"]} == {"output/same.png", alt}
    assert node.stats.transfers == 1


def test_a_harvest_folder_that_cannot_be_made_is_a_failure_not_an_exception(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    source = on_node(tmp_path / "node", "a.png", b"x")
    outcome = harvest(FolderNode(), [source], blocker / "harvest", node_name="n1")
    assert not outcome.pulled and outcome.manifest is None
    assert {f.file for f in outcome.failed} == {str(blocker / "harvest"), "output/a.png"}
