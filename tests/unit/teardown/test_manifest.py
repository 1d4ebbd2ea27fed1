"""The laptop's side of a harvest: the manifest, and what the harvest folder holds."""

from __future__ import annotations

import hashlib
import json
import os

from provisioner.teardown.harvest_plan import LocalFile
from provisioner.teardown.manifest import (
    ManifestEntry,
    local_view,
    read_manifest,
    write_manifest,
)
from tests.unit.teardown.cases import SHA_A, SHA_B, remote


def test_manifest_round_trip(tmp_path):
    entry = ManifestEntry(file="output/a.png", bytes=3, sha256=SHA_A, pulled_at="2025-01-01T00:00:00+00:00",
                          mtime_ns=5)
    path = write_manifest(tmp_path, "n1", {entry.file: entry})
    document = json.loads(path.read_text())
    assert document["node"] == "n1"
    assert document["files"] == [{"file": "output/a.png", "bytes": 3, "sha256": SHA_A,
                                  "pulled_at": "2025-01-01T00:00:00+00:00", "mtime_ns": 5}]
    assert read_manifest(tmp_path) == {"output/a.png": entry}
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_unreadable_manifest_is_empty_not_fatal(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    assert read_manifest(tmp_path) == {}
    assert read_manifest(tmp_path / "missing") == {}


def test_local_view_trusts_the_manifest_only_while_size_and_mtime_match(tmp_path):
    data = b"hello"
    target = tmp_path / "output" / "a.png"
    target.parent.mkdir()
    target.write_bytes(data)
    os.utime(target, ns=(5, 5))
    real = hashlib.sha256(data).hexdigest()
    lying = ManifestEntry(file="output/a.png", bytes=5, sha256=SHA_B, pulled_at="x", mtime_ns=5)
    source = remote("a.png", real, size=5)
    # Same size and mtime as recorded: the manifest's sha256 is trusted (no re-hash).
    assert local_view(tmp_path, {"output/a.png": lying}, [source])["output/a.png"].sha256 == SHA_B
    # The file changed since (mtime differs): it is hashed again.
    os.utime(target, ns=(6, 6))
    assert local_view(tmp_path, {"output/a.png": lying}, [source])["output/a.png"].sha256 == real
    # Not in the manifest at all (a copy from elsewhere): hashed, so it can be adopted.
    assert local_view(tmp_path, {}, [source]) == {"output/a.png": LocalFile(bytes=5, sha256=real)}


def test_local_view_ignores_symlinks_and_missing_files(tmp_path):
    (tmp_path / "output").mkdir()
    (tmp_path / "elsewhere.png").write_bytes(b"x")
    (tmp_path / "output" / "a.png").symlink_to(tmp_path / "elsewhere.png")
    assert local_view(tmp_path, {}, [remote("a.png"), remote("b.png")]) == {}
