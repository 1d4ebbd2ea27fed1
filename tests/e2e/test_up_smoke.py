"""`provision up` ends with a first image made on the node (the `smoke` step).

A full `up` (models from the fake Hub, ComfyUI launched) on a real sshd node: the stand-in
ComfyUI runs the bench workflow and saves a real PNG, which is pulled to the laptop and checked.
Its failure switches (tests/harness/fake_comfyui/README.md) stand for what a real Mac shows:
a black image, the MPS abort of ComfyUI-GGUF issue #107, an execution error in one node.
"""

from __future__ import annotations

import io
import json
import time

import pytest
from PIL import Image

from tests.e2e.conftest import HF_TOKEN
from tests.e2e.launch_helpers import listeners_of_node_user
from tests.harness.cli import run_cli

pytestmark = pytest.mark.e2e

SMOKE_OUTPUT = "provision/ComfyUI/output/provision-smoke"


def smoke_node(node_factory, tmp_path, stand_ins, hub, *, env=None, platform="linux", **fields):
    node = node_factory(platform=platform, memory_gb=64)
    comfyui = {"repo": str(stand_ins.comfyui_repo), "ref": "v0.3.64", "env": env or {}}
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        hf={"endpoint": hub.url}, comfyui=comfyui,
        downloads={"retries": 1, "backoff_seconds": 0}, **fields))
    return node, node_yaml


def up(node_yaml, home, *extra):
    result = run_cli("up", node_yaml, "--no-tunnel", *extra, home=home,
                     env={"HF_TOKEN": HF_TOKEN}, timeout=600)
    text = result.stdout.strip()
    return result, json.loads(text) if "--json" in extra and text.startswith("{") else None


def step_status(report) -> dict[str, str]:
    return {step["name"]: step["status"] for step in report["steps"]}


def smoke_images(node) -> list[str]:
    return node.ssh(f"ls {SMOKE_OUTPUT} 2>/dev/null", check=False).stdout.split()


def comfyui_answers(node_yaml, home, timeout=60.0) -> dict:
    """Poll `status --json` until ComfyUI is healthy again; return the report."""
    deadline = time.monotonic() + timeout
    while True:
        status = run_cli("status", node_yaml, "--json", home=home)
        report = json.loads(status.stdout) if status.stdout.strip().startswith("{") else {}
        if report.get("health", {}).get("healthy") or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


def test_up_makes_a_first_image_once_and_again_when_the_models_change(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    node, node_yaml = smoke_node(node_factory, tmp_path, stand_ins, hub, platform="macos")
    result, _ = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    shown = " ".join(result.stdout.split())
    assert "first image in " in shown and "(model load " in shown and "sampling " in shown, shown
    local = next((laptop_home / "outputs" / node.name / "smoke").glob("*.png"))
    assert str(local) in shown.replace("│", "").replace(" ", "") or local.name in shown
    with Image.open(local) as image:
        assert image.size == (512, 512)
        assert max(high for _, high in image.convert("RGB").getextrema()) > 0, "not black"
    assert len(smoke_images(node)) == 1

    # Nothing changed: no new image, no change at all.
    again, report = up(node_yaml, laptop_home, "--json")
    assert again.returncode == 0, again.stderr
    assert step_status(report)["smoke"] == "ok" and report["changed"] == 0
    assert report["first_image"]["ok"] and not report["first_image"]["made_this_run"]
    assert len(smoke_images(node)) == 1, "a no-op up makes no image"

    status = run_cli("status", node_yaml, "--json", home=laptop_home)
    first = json.loads(status.stdout)["first_image"]
    assert first["ok"] and first["made_with"]["versions"]["torch"] == "2.3.1"
    assert first["load_s"] is not None and first["sampling_s"] is not None
    assert "first image" in run_cli("status", node_yaml, home=laptop_home).stdout

    # Another model plan: new files, so a new first image made with them.
    node_yaml.write_text(node_yaml.read_text() + "quality: q4\n")
    changed, report = up(node_yaml, laptop_home, "--json")
    assert changed.returncode == 0, changed.stderr
    assert step_status(report)["smoke"] == "changed"
    assert report["first_image"]["made_with"]["models"]["unet"][0] == "flux1-dev-Q4_K_S.gguf"
    assert len(smoke_images(node)) == 2


def test_a_black_image_fails_with_the_fp32_vae_hint_and_no_smoke_gets_past_it(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    node, node_yaml = smoke_node(node_factory, tmp_path, stand_ins, hub,
                                 env={"FAKE_COMFYUI_BLACK_IMAGE": "1"})
    result, _ = up(node_yaml, laptop_home)
    assert result.returncode == 1
    said = " ".join(result.stderr.split())
    assert "all black" in said and "--fp32-vae" in said and "ComfyUI runs: " in said, said
    black = next((laptop_home / "outputs" / node.name / "smoke").glob("*.png"))
    with Image.open(io.BytesIO(black.read_bytes())) as image:
        assert max(high for _, high in image.convert("RGB").getextrema()) == 0
    report = comfyui_answers(node_yaml, laptop_home)
    assert report["health"]["healthy"], "ComfyUI is left running"
    assert report["first_image"]["ok"] is False and "all black" in report["first_image"]["error"]

    skipped, report = up(node_yaml, laptop_home, "--json", "--no-smoke")
    assert skipped.returncode == 0, skipped.stderr
    assert step_status(report)["smoke"] == "skipped"


def test_an_mps_abort_names_the_versions_and_the_torch_note_and_comfyui_comes_back(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    node, node_yaml = smoke_node(node_factory, tmp_path, stand_ins, hub, platform="macos",
                                 env={"FAKE_COMFYUI_MPS_ABORT": "1"})
    result, _ = up(node_yaml, laptop_home)
    assert result.returncode == 1
    said = " ".join(result.stderr.split())
    assert "MPS assertion" in said and "buffer is not large enough" in said, said
    assert "torch 2.3.1" in said and "macOS 15" in said and "ComfyUI-GGUF" in said
    assert 'torch: "2.4.1"' in said and 'torchvision: "0.19.1"' in said
    report = comfyui_answers(node_yaml, laptop_home)
    assert report["health"]["healthy"], "launchd brought ComfyUI back"
    assert len(listeners_of_node_user(node)) == 1, "exactly one ComfyUI"


def test_an_execution_error_names_the_node_class_and_its_message(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    _, node_yaml = smoke_node(node_factory, tmp_path, stand_ins, hub,
                              env={"FAKE_COMFYUI_FAIL_CLASS": "VAEDecode",
                                   "FAKE_COMFYUI_FAIL_MESSAGE": "MPS backend out of memory"})
    result, report = up(node_yaml, laptop_home, "--json")
    assert result.returncode == 1
    assert step_status(report)["smoke"] == "failed"
    said = " ".join(result.stderr.split())
    assert "failed in VAEDecode" in said and "MPS backend out of memory" in said, said
    assert report["first_image"]["ok"] is False
    assert comfyui_answers(node_yaml, laptop_home)["health"]["healthy"]


