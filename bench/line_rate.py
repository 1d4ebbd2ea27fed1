"""Bare node to ComfyUI healthy, with the Hub capping each connection: `provision up` against
the seed recipe's commands run in order, on the same fake-macOS node and the same hub.

    python bench/line_rate.py [--scale 50] [--rate-mb 4] [--installer uv|pip] [--connections 8]

The model files are the 64 GB plan's (dev, Q8_0) at 1/scale of their real sizes, and so is
the range threshold. The hub serves each connection at most --rate-mb MB/s, as the CDN does on
many links. Printed: `up`'s wall time, its download time (first to last byte the hub sent),
its install time (the venv, torch, ComfyUI and GGUF steps), the ideal, which is
max(download bytes / what all connections carry, install) + launch, the ratio wall / ideal,
then the seed recipe's time on the same node and the ratio between the two.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

from common import cli, loopback_node

from tests.e2e.conftest import HF_TOKEN
from tests.harness import sshd
from tests.harness.fake_comfyui import build_comfyui_repo, build_gguf_repo
from tests.harness.fake_hub import FakeHub
from tests.harness.hub_files import make_gguf, make_safetensors
from tests.harness.wheelhouse import build_wheelhouse

INSTALL_STEPS = {"venv", "constraints", "torch", "comfyui", "comfyui-requirements", "gguf-node",
                 "gguf-requirements"}
LAUNCH_STEPS = {"launch", "health"}
RANGE_THRESHOLD_MB = 256


def planned_files(node_yaml: Path, home: Path) -> tuple[list[dict], dict]:
    result = cli("plan", node_yaml, "--json", home=home)
    report = json.loads(result.stdout)
    return report["plan"]["files"], report


def serve_scaled(hub: FakeHub, files: list[dict], scale: int, folder: Path) -> int:
    """Put each planned file on the hub at 1/scale of its size; return the total bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for spec in files:
        path = folder / spec["file"]
        size = max(spec["bytes"] // scale, 1 << 20)
        if spec["file"].endswith(".gguf"):
            arch = "t5encoder" if spec["role"] == "t5" else "flux"
            make_gguf(path, quant=spec.get("quant") or "Q8_0", arch=arch, size_hint_bytes=size)
        else:
            make_safetensors(path, dtype="fp32" if spec["role"] == "vae" else "fp16", n_bytes=size)
        hub.add_file(spec["repo"], spec["file"], path)
        total += path.stat().st_size
    return total


def run_up(node_yaml: Path, home: Path, hub: FakeHub) -> tuple[float, dict, float]:
    hub.clear_requests()
    started = time.perf_counter()
    result = cli("up", node_yaml, "--no-tunnel", "--json", home=home, env={"HF_TOKEN": HF_TOKEN})
    wall = time.perf_counter() - started
    report = json.loads(result.stdout)
    if not report.get("ok"):
        raise SystemExit(f"up failed: {result.stderr[-2000:]}")
    bodies = [r for r in hub.requests if r.method == "GET" and r.status in (200, 206)]
    download = (max(r.ended or r.started for r in bodies) - min(r.started for r in bodies)
                if bodies else 0.0)
    return wall, report, download


def run_seed(node, work: str, python: str, wheels: Path, comfy: Path, gguf: Path, gguf_ref: str,
             hub: FakeHub, files: list[dict], port: int) -> float:
    models = "\n".join(f"{hub.url}/{f['repo']}/resolve/main/{f['file']} {f['folder']}/{f['file']}"
                       for f in files)
    env = {"WORK": work, "PYTHON": python, "PIP_ARGS": f"--no-index --find-links {wheels}",
           "COMFY_REPO": str(comfy), "COMFY_REF": "v0.3.64", "GGUF_REPO": str(gguf),
           "GGUF_REF": gguf_ref, "MODELS": models, "PORT": str(port)}
    exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
    script = (Path(__file__).parent / "seed_recipe.sh").read_text()
    node.ssh(f"rm -rf {shlex.quote(work)} && mkdir -p {shlex.quote(work)}")
    started = time.perf_counter()
    result = node.ssh(f"{exports} sh -s", input=script, check=False, timeout=3600)
    elapsed = time.perf_counter() - started
    node.ssh(f"kill $(cat {shlex.quote(work)}/comfyui.pid) 2>/dev/null; true", check=False)
    if result.returncode != 0:
        raise SystemExit(f"seed recipe failed: {result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=50, help="model files at 1/SCALE of real size")
    parser.add_argument("--rate-mb", type=float, default=4.0, help="MB/s per connection")
    parser.add_argument("--installer", choices=["uv", "pip"], default="uv")
    parser.add_argument("--connections", type=int, default=8, help="downloads.connections")
    args = parser.parse_args()
    rate = int(args.rate_mb * 1e6)
    shared = sshd.shared_dir()
    gguf, gguf_ref = build_gguf_repo(shared / "gguf")
    comfy = build_comfyui_repo(shared / "comfy")
    wheels = build_wheelhouse(shared / "wheels-uv", uv=True)
    with FakeHub() as hub, loopback_node(name="linerate", platform="macos", memory_gb=64) as (
            node, base, home):
        downloads = {"range_threshold_mb": max(1, RANGE_THRESHOLD_MB // args.scale),
                     "connections": args.connections}
        node_yaml = node.write_node_yaml(
            base / "node.yaml", comfyui={"repo": str(comfy), "ref": "v0.3.64"},
            gguf_node={"repo": str(gguf), "ref": gguf_ref}, installer=args.installer,
            pip={"no_index": True, "find_links": [str(wheels)]}, hf={"endpoint": hub.url},
            tunnel={"remote_port": sshd.free_port()}, downloads=downloads)
        files, plan_report = planned_files(node_yaml, home)
        total = serve_scaled(hub, files, args.scale, base / "hub")
        hub.set_token(HF_TOKEN)  # the catalog marks FLUX.1-dev's VAE gated; the seed's curl
        hub.throttle(rate)       # fetches these ungated copies without one
        wall, report, download = run_up(node_yaml, home, hub)
        steps = {step["name"]: step for step in report["steps"]}
        install = sum(steps[name]["duration"] for name in INSTALL_STEPS if name in steps)
        launch = sum(steps[name]["duration"] for name in LAUNCH_STEPS if name in steps)
        connections = 16  # downloads.max_connections' default: what all connections carry
        ideal = max(total / (connections * rate), install) + launch
        python = plan_report["facts"]["pythons"][0]["path"]
        cli("down", node_yaml, "--wipe", "all", "--discard-outputs", home=home)
        seed = run_seed(node, f"{node.home}/seed", python, wheels, comfy, gguf, gguf_ref, hub,
                        files, sshd.free_port())
    print(f"models: {len(files)} files, {total / 1e6:.0f} MB (1/{args.scale} of the 64 GB plan), "
          f"hub capped at {args.rate_mb:g} MB/s per connection, {args.connections} connections "
          f"per file (16 in all), installer {args.installer}")
    print(f"up, bare node to healthy   {wall:7.2f}s")
    print(f"  download (hub, first to last byte) {download:7.2f}s")
    print(f"  install (venv .. gguf-requirements) {install:6.2f}s")
    print(f"  launch + health              {launch:7.2f}s")
    print(f"  ideal = max({total / (connections * rate):.2f}, {install:.2f}) + {launch:.2f} "
          f"= {ideal:.2f}s   wall / ideal = {wall / ideal:.2f}   (target <= 1.15)")
    print(f"seed recipe, same node and hub {seed:7.2f}s   seed / up = {seed / wall:.2f}x "
          f"(target >= 2)")
    for step in report["steps"]:
        print(f"    {step['name']:<22} {step['status']:<8} {step['duration']:6.2f}s")


if __name__ == "__main__":
    main()
