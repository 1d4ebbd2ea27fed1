"""The node-side programs (templates/node_*.py), run here on local folders with this Python.

They are stdlib programs that read their input from their own text; running them locally
checks what they list, what they refuse to delete and how they find a token they are never
given.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.node.programs import render_program
from provisioner.teardown.cleanup import token_probe
from provisioner.teardown.inventory import HarvestRoot, inventory_spec, parse_inventory

TOKEN = "hf_unitTestTokenNeverSent0123456789abc"


def run(name: str, payload: dict) -> str:
    program = render_program(name, payload)
    result = subprocess.run([sys.executable, "-"], input=program, capture_output=True, text=True,
                            check=True, timeout=60)
    return result.stdout


@pytest.fixture
def work(tmp_path) -> Path:
    work = tmp_path / "provision"
    output = work / "ComfyUI" / "output"
    (output / "sub").mkdir(parents=True)
    (output / "a.png").write_bytes(b"A" * 100)
    (output / "sub" / "b.png").write_bytes(b"B" * 50)
    (output / "_output_images_will_be_put_here").write_bytes(b"")
    workflows = work / "ComfyUI" / "user" / "default" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "flow.json").write_text("{}")
    (work / "ComfyUI" / "user" / "default" / "comfy.settings.json").write_text("{}")
    (work / "logs").mkdir()
    (work / "logs" / "comfyui.log").write_text("started\n")
    unet = work / "ComfyUI" / "models" / "unet"
    unet.mkdir(parents=True)
    (unet / "flux.gguf").write_bytes(b"G" * 30)
    (unet / "flux.gguf.verified").write_text("{}")
    (unet / "half.gguf.partial").write_bytes(b"G" * 5)
    (unet / "big.gguf.partial.ranges").write_text("{}")  # a ranged download's bookkeeping
    (unet / "mine.gguf").write_bytes(b"M" * 7)
    (work / "state").mkdir()
    return work


def roots(work: Path) -> list[HarvestRoot]:
    return [HarvestRoot(label="output", path=str(work / "ComfyUI/output"), removable=True),
            HarvestRoot(label="user", path=str(work / "ComfyUI/user"), only_under="workflows",
                        removable=True),
            HarvestRoot(label="logs", path=str(work / "logs/comfyui.log"), kind="file")]


def test_inventory_lists_outputs_workflows_and_log_with_sha256(work):
    found = parse_inventory(run("node_inventory.py", inventory_spec(roots(work))), roots(work))
    listed = {f.rel: (f.bytes, f.sha256) for f in found["files"]}
    assert listed == {
        "output/a.png": (100, hashlib.sha256(b"A" * 100).hexdigest()),
        "output/sub/b.png": (50, hashlib.sha256(b"B" * 50).hexdigest()),
        "user/default/workflows/flow.json": (2, hashlib.sha256(b"{}").hexdigest()),
        "logs/comfyui.log": (8, hashlib.sha256(b"started\n").hexdigest()),
    }
    a = next(f for f in found["files"] if f.rel == "output/a.png")
    assert a.mtime_ns == os.stat(work / "ComfyUI/output/a.png").st_mtime_ns
    assert found["models"] == [] and found["sizes"] == {}


def test_inventory_skips_symlinks(work, tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("not yours")
    (work / "ComfyUI/output/link.png").symlink_to(secret)
    found = parse_inventory(run("node_inventory.py", inventory_spec(roots(work))), roots(work))
    assert "output/link.png" not in {f.rel for f in found["files"]}


def test_inventory_lists_only_models_provision_downloaded(work):
    unet = work / "ComfyUI/models/unet"
    spec = inventory_spec(roots(work), models=str(work / "ComfyUI/models"), sizes=[str(work)])
    found = parse_inventory(run("node_inventory.py", spec), roots(work))
    assert dict(found["models"]) == {str(unet / "flux.gguf"): 30, str(unet / "flux.gguf.verified"): 2,
                                     str(unet / "half.gguf.partial"): 5,
                                     str(unet / "big.gguf.partial.ranges"): 2}
    total = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
    assert found["sizes"][str(work)][0] == total


def clean_spec(work: Path, remove: list, scan: dict | None = None, plist: str | None = None) -> dict:
    return {"workdir": str(work), "plist": plist, "remove": remove,
            "prune": [str(work / "ComfyUI/output")], "scan": scan}


def test_clean_removes_listed_files_and_prunes_emptied_folders(work):
    out = work / "ComfyUI/output"
    result = json.loads(run("node_clean.py", clean_spec(work, [
        {"path": str(out / "a.png")}, {"path": str(out / "sub/b.png")},
        {"path": str(out / "gone.png")}])))
    assert [(r["existed"], r["bytes"], r["error"]) for r in result["removed"]] == \
        [(True, 100, None), (True, 50, None), (False, 0, None)]
    assert sorted(p.name for p in out.iterdir()) == ["_output_images_will_be_put_here"]


def test_clean_refuses_paths_outside_the_work_folder(work, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.png").write_text("keep me too")
    # A folder inside the work folder that is a symlink to somewhere else.
    (work / "ComfyUI/output/escape").symlink_to(elsewhere)
    result = json.loads(run("node_clean.py", clean_spec(work, [
        {"path": str(victim)},
        {"path": str(work) + "/../victim.txt"},
        {"path": str(work / "ComfyUI/output/escape/precious.png")},
        {"path": str(work) + "-sibling"},
    ])))
    assert [r["error"] for r in result["removed"]] == ["refused: outside the work folder"] * 4
    assert victim.exists() and (elsewhere / "precious.png").exists()


def test_clean_removes_a_symlink_not_its_target(work, tmp_path):
    target = tmp_path / "target.png"
    target.write_text("keep")
    link = work / "ComfyUI/output/link.png"
    link.symlink_to(target)
    run("node_clean.py", clean_spec(work, [{"path": str(link)}]))
    assert not link.is_symlink() and target.exists()


def test_clean_wipes_the_whole_work_folder_and_the_plist(work, tmp_path):
    plist = tmp_path / "dev.provision.comfyui.plist"
    plist.write_text("<plist/>")
    other = tmp_path / "other.plist"
    other.write_text("<plist/>")
    result = json.loads(run("node_clean.py", clean_spec(work, [
        {"path": str(plist)}, {"path": str(other)},
        {"path": str(work), "tree": True, "keep_last": str(work / "state")}], plist=str(plist))))
    assert [r["error"] for r in result["removed"]] == [None, "refused: outside the work folder", None]
    assert not work.exists() and not plist.exists() and other.exists()


def scan(work: Path, token: str = TOKEN, **extra) -> dict:
    probe = dict(token_probe(token), roots=[str(work)], skip=[str(work / "ComfyUI/models")],
                 max_bytes=10 * 1024 * 1024, **extra)
    return json.loads(run("node_clean.py", clean_spec(work, [], scan=probe)))["scan"]


def test_the_scan_finds_the_token_by_its_hash_only(work):
    assert scan(work)["found"] == []
    leak = work / "logs" / "leak.txt"
    leak.write_text(f"Authorization: Bearer {TOKEN}\n")
    binary = work / "ComfyUI" / "blob.bin"
    binary.write_bytes(os.urandom(3000) + TOKEN.encode() + os.urandom(3000))
    decoy = work / "logs" / "decoy.txt"
    decoy.write_text("hf_" + "x" * (len(TOKEN) - 3) + " and " + TOKEN[:-1] + "!\n")
    result = scan(work)
    assert sorted(result["found"]) == sorted([str(leak), str(binary)])
    assert result["files"] >= 6


def test_the_scan_finds_a_token_across_read_blocks(work):
    big = work / "logs" / "big.log"
    offset = (1 << 22) - 10  # the token straddles the scanner's 4 MiB block boundary
    big.write_bytes(b"." * offset + TOKEN.encode() + b"." * 100)
    assert scan(work)["found"] == [str(big)]


def test_the_scan_skips_models_and_oversized_files(work):
    (work / "ComfyUI/models/unet/leak.gguf").write_bytes(TOKEN.encode())
    huge = work / "logs" / "huge.log"
    huge.write_bytes(TOKEN.encode() + b"." * 200)
    probe = dict(token_probe(TOKEN), roots=[str(work)], skip=[str(work / "ComfyUI/models")],
                 max_bytes=100)
    found = json.loads(run("node_clean.py", clean_spec(work, [], scan=probe)))["scan"]
    assert found["found"] == [] and str(huge) in found["skipped"]


def test_a_token_without_prefix_is_found_as_a_delimited_run(work):
    token = "Zq8sd7f6g5h4j3k2l1mnbvcxz0987654"
    (work / "logs" / "env").write_text(f"TOKEN={token}\nOTHER=1\n")
    assert scan(work, token=token)["found"] == [str(work / "logs" / "env")]
