"""`provision up --no-launch` with LoRA / ControlNet entries at plain URLs (`url:` + `sha256:`),
on real sshd nodes: fetched by the node's fetcher from a web host on loopback that is not the
Hub, sha256-verified, and never sent the Hub token (the web host's own request log says)."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.e2e.test_up_models import (
    PLANNED,
    VAE,
    assert_verified,
    dest,
    file_requests,
    node_exists,
    node_sha256,
    statuses,
    up,
    write_yaml,
)
from tests.harness.fake_hub import FakeHub
from tests.harness.hub_files import make_safetensors, sha256_file

pytestmark = pytest.mark.e2e

LORA_PATH = "/loras/detail%20tweaker.safetensors"  # its file name on the node: "detail tweaker..."
LORA_NAME = "detail tweaker.safetensors"
CONTROLNET_PATH = "/dl/7"


@pytest.fixture
def web(tmp_path):
    """A web host off the Hub, on its own port, that logs whether requests carried a token."""
    with FakeHub() as fake:
        yield fake


def test_url_files_are_fetched_in_ranges_verified_and_never_sent_the_token(
        node_factory, laptop_home, tmp_path, stand_ins, hub, web):
    lora = make_safetensors(tmp_path / "lora.safetensors", dtype="bf16", n_bytes=3_000_000, seed=3)
    controlnet = make_safetensors(tmp_path / "cn.safetensors", dtype="fp16", n_bytes=200_000, seed=4)
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = write_yaml(
        node, tmp_path, stand_ins, hub,
        downloads={"retries": 1, "backoff_seconds": 0, "range_threshold_mb": 1},
        # No size_gb for the LoRA: up asks the web host with a HEAD, so it knows the size
        # exactly and the fetcher may use ranges (above 1 MiB here).
        loras=[{"url": web.add_plain_file(LORA_PATH, lora), "sha256": sha256_file(lora)}],
        controlnet={"url": web.add_plain_file(CONTROLNET_PATH, controlnet),
                    "sha256": sha256_file(controlnet).upper(), "file": "canny.safetensors",
                    "size_gb": 0.0002})
    result, report = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert node_sha256(node, dest("loras", f"'{LORA_NAME}'")) == sha256_file(lora)
    assert node_sha256(node, dest("controlnet", "canny.safetensors")) == sha256_file(controlnet)
    record = json.loads(node.ssh(f"cat {dest('loras', repr(LORA_NAME + '.verified'))}").stdout)
    assert record["sha256"] == sha256_file(lora) and record["size"] == lora.stat().st_size
    assert_verified(node, hub)  # the Hub's files beside them

    requests = web.requests
    assert not any(r.has_authorization for r in requests), "the Hub token reached the web host"
    assert file_requests(hub, "GET", VAE)[0].has_authorization, "the token was there to leak"
    heads = sorted(r.path for r in requests if r.method == "HEAD")
    assert heads == [CONTROLNET_PATH, LORA_PATH], "up asks each url's size from the laptop"
    # Ranged (Range + 206) only because the HEAD gave the exact size (a guess is never ranged).
    lora_gets = [r for r in requests if r.method == "GET" and r.path == LORA_PATH]
    assert lora_gets and all(r.range and r.status == 206 for r in lora_gets), lora_gets
    assert sum(r.bytes_sent for r in lora_gets) == lora.stat().st_size
    assert not hub.requests or all("/loras/" not in r.path for r in hub.requests)
    plan_files = {f["entry"]: f for f in report["plan"]["files"] if f.get("entry")}
    assert plan_files["loras[0]"]["url"] == web.url + LORA_PATH
    assert plan_files["loras[0]"]["repo"] == web.url.split("//")[1]

    web.clear_requests()
    hub.clear_requests()
    again, report = up(node_yaml, laptop_home)
    assert again.returncode == 0, again.stderr
    assert report["changed"] == 0 and statuses(report)["models"] == "ok"
    assert web.requests == [] and file_requests(hub) == [], "verified files are not asked again"


def test_a_wrong_sha256_fails_that_file_naming_the_entry_and_both_hashes(
        node_factory, laptop_home, tmp_path, stand_ins, hub, web):
    lora = make_safetensors(tmp_path / "lora.safetensors", dtype="bf16", n_bytes=100_000, seed=5)
    wrong = hashlib.sha256(b"not the file").hexdigest()
    node = node_factory(platform="linux")
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub, quality="q8",
                           loras=[{"url": web.add_plain_file("/l.safetensors", lora), "sha256": wrong}])
    result, report = up(node_yaml, laptop_home)
    assert result.returncode != 0
    message = " ".join(result.stderr.split())
    assert f"loras[0]: the file from {web.url}/l.safetensors has sha256 {sha256_file(lora)}" in message
    assert f"node.yaml says sha256 {wrong}" in message, message
    assert "check sha256: of that url: entry in node.yaml" in message, message
    assert statuses(report)["models-ready"] == "failed"
    assert not node_exists(node, dest("loras", "l.safetensors"))
    assert not node_exists(node, dest("loras", "l.safetensors") + ".partial")
    assert_verified(node, hub, PLANNED), "only that file failed"
    assert not any(r.has_authorization for r in web.requests)
