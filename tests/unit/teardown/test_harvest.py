"""Harvest decisions (pure): which node files to pull, where, and what the listing says."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from provisioner.node.layout import NodePaths
from provisioner.teardown.harvest import (
    HarvestError,
    HarvestRoot,
    LocalFile,
    ManifestEntry,
    RemoteFile,
    alt_name,
    harvest_roots,
    inventory_spec,
    local_view,
    parse_inventory,
    plan_harvest,
    read_manifest,
    unsafe_reason,
    write_manifest,
)

SHA_A = "a" * 64
SHA_B = "b" * 64


def remote(path: str, sha: str = SHA_A, size: int = 10, label: str = "output") -> RemoteFile:
    return RemoteFile(label=label, path=path, remote=f"/n/ComfyUI/{label}/{path}", bytes=size,
                      mtime_ns=1_700_000_000_000_000_000, sha256=sha)


# -- plan_harvest: a table of cases ---------------------------------------------------------

CASES = [
    # (what the node has, what the laptop has, expected (dest, action) per node file, refused)
    ("new file", [remote("a.png")], {}, [("output/a.png", "pull")], []),
    ("identical copy already pulled", [remote("a.png")],
     {"output/a.png": LocalFile(bytes=10, sha256=SHA_A)}, [("output/a.png", "skip")], []),
    ("same name, other bytes locally: never overwritten", [remote("a.png")],
     {"output/a.png": LocalFile(bytes=10, sha256=SHA_B)},
     [(f"output/a.{SHA_A[:8]}.png", "pull")], []),
    ("same sha256, other size: different", [remote("a.png", size=11)],
     {"output/a.png": LocalFile(bytes=10, sha256=SHA_A)}, [(f"output/a.{SHA_A[:8]}.png", "pull")], []),
    ("the renamed copy was pulled before", [remote("a.png")],
     {"output/a.png": LocalFile(bytes=10, sha256=SHA_B),
      f"output/a.{SHA_A[:8]}.png": LocalFile(bytes=10, sha256=SHA_A)},
     [(f"output/a.{SHA_A[:8]}.png", "skip")], []),
    ("both names taken by other files", [remote("a.png")],
     {"output/a.png": LocalFile(bytes=10, sha256=SHA_B),
      f"output/a.{SHA_A[:8]}.png": LocalFile(bytes=9, sha256=SHA_B)}, [], ["output/a.png"]),
    ("subfolders kept", [remote("sub/deeper/b.png")], {}, [("output/sub/deeper/b.png", "pull")], []),
    ("a name with '..' is refused", [remote("../escape.png")], {}, [], ["output/../escape.png"]),
    ("a hidden .part name is refused", [remote(".a.png.part")], {}, [], ["output/.a.png.part"]),
    ("labels keep roots apart", [remote("x.json", label="user"), remote("x.json")], {},
     [("output/x.json", "pull"), ("user/x.json", "pull")], []),
]


@pytest.mark.parametrize("name, files, local, expected, refused", CASES, ids=[c[0] for c in CASES])
def test_plan_harvest(name, files, local, expected, refused):
    plan = plan_harvest(files, local)
    assert [(item.dest, item.action) for item in plan.items] == expected
    assert [r.file for r in plan.refused] == refused


def test_plan_counts_only_what_it_pulls():
    files = [remote("a.png", size=100), remote("b.png", SHA_B, size=50)]
    plan = plan_harvest(files, {"output/a.png": LocalFile(bytes=100, sha256=SHA_A)})
    assert plan.bytes_to_pull == 50
    assert [i.dest for i in plan.to_pull] == ["output/b.png"]
    assert [i.dest for i in plan.to_skip] == ["output/a.png"]


def test_plan_is_sorted_and_stable():
    files = [remote("z.png"), remote("a.png"), remote("m/b.png")]
    assert [i.dest for i in plan_harvest(files, {}).items] == \
        ["output/a.png", "output/m/b.png", "output/z.png"]


@pytest.mark.parametrize("rel, expected", [
    ("output/a.png", "output/a.12345678.png"),
    ("output/a.tar.gz", "output/a.tar.12345678.gz"),
    ("output/noext", "output/noext.12345678"),
    ("output/.hidden", "output/.hidden.12345678"),
    ("logs/comfyui.log", "logs/comfyui.12345678.log"),
])
def test_alt_name(rel, expected):
    assert alt_name(rel, "12345678" + "0" * 56) == expected


@pytest.mark.parametrize("rel, bad", [
    ("output/a.png", False), ("output/sub/a b.png", False), ("/etc/passwd", True),
    ("output/../x", True), ("output//x", True), ("output/./x", True), ("output\\x", True),
    ("output/a\0b", True), ("", True),
])
def test_unsafe_reason(rel, bad):
    assert (unsafe_reason(rel) is not None) is bad


# -- the node's listing ---------------------------------------------------------------------

ROOTS = [HarvestRoot(label="output", path="/n/ComfyUI/output", removable=True),
         HarvestRoot(label="logs", path="/n/logs/comfyui.log", kind="file")]


def test_parse_inventory_reads_files_problems_models_and_sizes():
    text = "\n".join(json.dumps(record) for record in [
        {"kind": "file", "label": "output", "path": "sub/a.png", "bytes": 3, "mtime_ns": 5, "sha256": SHA_A},
        {"kind": "file", "label": "logs", "path": "comfyui.log", "bytes": 7, "mtime_ns": 6, "sha256": SHA_B},
        {"kind": "file", "label": "elsewhere", "path": "x", "bytes": 1, "mtime_ns": 1, "sha256": SHA_A},
        {"kind": "problem", "label": "output", "path": "locked.png", "error": "Permission denied"},
        {"kind": "model", "path": "/n/models/unet/x.gguf", "bytes": 99},
        {"kind": "size", "path": "/n", "bytes": 1234, "files": 3},
        {"kind": "done"},
    ]) + "\n"
    found = parse_inventory("noise before\n" + text, ROOTS)
    assert [(f.rel, f.remote) for f in found["files"]] == [
        ("output/sub/a.png", "/n/ComfyUI/output/sub/a.png"),
        ("logs/comfyui.log", "/n/logs/comfyui.log")]
    assert [(p.file, p.reason) for p in found["problems"]] == [("output/locked.png", "Permission denied")]
    assert found["models"] == [("/n/models/unet/x.gguf", 99)]
    assert found["sizes"] == {"/n": (1234, 3)}


def test_a_listing_cut_short_is_an_error_not_an_empty_harvest():
    text = json.dumps({"kind": "file", "label": "output", "path": "a.png", "bytes": 3,
                       "mtime_ns": 5, "sha256": SHA_A}) + "\n"
    with pytest.raises(HarvestError, match="cut short"):
        parse_inventory(text, ROOTS)
    with pytest.raises(HarvestError):
        parse_inventory("", ROOTS)


def test_roots_take_outputs_workflows_and_the_log():
    paths = NodePaths(**{field: f"/w/{field}" for field in NodePaths.model_fields})
    roots = {root.label: root for root in harvest_roots(paths)}
    assert roots["output"].path == paths.output and roots["output"].removable
    assert roots["user"].path == paths.user_dir and roots["user"].only_under == "workflows"
    assert roots["logs"].kind == "file" and not roots["logs"].removable
    spec = inventory_spec(list(roots.values()), models="/w/models", sizes=["/w"])
    assert spec["exclude_names"] == ["_output_images_will_be_put_here"]
    assert spec["models"] == "/w/models" and spec["sizes"] == ["/w"]


# -- the laptop's side ----------------------------------------------------------------------


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
