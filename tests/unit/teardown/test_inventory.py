"""The node's file listing: what node_inventory.py is asked for, and what its lines say."""

from __future__ import annotations

import json

import pytest

from provisioner.node.layout import NodePaths
from provisioner.teardown.inventory import (
    HarvestError,
    HarvestRoot,
    harvest_roots,
    inventory_spec,
    parse_inventory,
)

SHA_A = "a" * 64
SHA_B = "b" * 64

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
