"""Bare node to ComfyUI healthy, with the Hub capping each connection: `provision up` against
the seed recipe's commands run in order, on the same fake-macOS node and the same hub.

    python bench/line_rate.py [--scale 50] [--rate-mb 4] [--installer uv|pip] [--connections 8]
                              [--no-seed]

The model files are the 64 GB plan's (dev, Q8_0) at 1/scale of their real sizes, and so is
the range threshold. `up` runs with --no-smoke: to healthy, not to the first image. The hub serves each connection at most --rate-mb MB/s, as the CDN does on
many links. Printed: `up`'s wall time, its download time (first to last byte the hub sent),
its install time (the venv, torch, ComfyUI and GGUF steps), the ideal, which is
max(download bytes / what all connections carry, install) + launch, the ratio wall / ideal,
then the seed recipe's time on the same node and the ratio between the two (--no-seed skips
it). Also printed, to see where the time goes: `up`'s timeline (CLI start, first and last byte
the hub sent, each step's start and end) and the CPU time spent meanwhile by the hub (this
process), the fetcher, the node's sshd sessions and the node's other processes (installs), read
from /proc every 0.1 s (approximate: a process that lives less than that is missed), and how
busy the machine's cores were (other work on the machine counts there too).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import threading
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


class CpuSampler:
    """CPU seconds by kind of process while `up` runs, from /proc (Linux; else nothing)."""

    def __init__(self, node_user: str, node_uid: int) -> None:
        self.user, self.uid = node_user, node_uid
        self.ticks: dict[int, tuple[str, int]] = {}  # pid -> (kind, CPU ticks last seen)
        self.busy: list[int] = []  # /proc/stat: all ticks, idle ticks at start; then at end
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.available = Path("/proc/stat").exists()
        self.own = 0.0

    def _kind(self, pid: int, uid: int, cmdline: str) -> str | None:
        if pid == os.getpid():
            return "hub"
        if "hf_fetch" in cmdline:
            return "fetcher"
        if cmdline.startswith("sshd") and self.user in cmdline:
            return "sshd"
        return "node other" if uid == self.uid else None

    def _sample(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                uid = os.stat(f"/proc/{pid}").st_uid
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace")
            except OSError:
                continue
            known = self.ticks.get(pid)
            kind = known[0] if known else self._kind(pid, uid, cmdline)
            if kind is not None:
                self.ticks[pid] = (kind, int(stat[11]) + int(stat[12]))

    def _machine(self) -> list[int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return [sum(fields), fields[3] + fields[4]]

    def _run(self) -> None:
        started = time.thread_time()
        while not self._stop.wait(0.1):
            self._sample()
        self.own = time.thread_time() - started  # this thread's CPU: not the hub's

    def __enter__(self) -> "CpuSampler":
        if self.available:
            self._sample()
            self.base = {pid: ticks for pid, (_, ticks) in self.ticks.items()}
            self.busy = self._machine()
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()
            self._sample()
            self.busy = [now - then for now, then in zip(self._machine(), self.busy)]

    def seconds(self) -> dict[str, float]:
        hz = os.sysconf("SC_CLK_TCK")
        out: dict[str, float] = {}
        for pid, (kind, ticks) in self.ticks.items():
            out[kind] = out.get(kind, 0.0) + (ticks - self.base.get(pid, 0)) / hz
        out["hub"] = out.get("hub", 0.0) - self.own
        return out

    def machine_busy(self) -> float:
        total, idle = self.busy
        return (total - idle) / total * (os.cpu_count() or 1) if total else 0.0


def run_up(node_yaml: Path, home: Path, hub: FakeHub) -> tuple[float, dict, dict]:
    """Run `up`; return its wall time, its report and its timeline (s from the CLI start)."""
    hub.clear_requests()
    started = time.perf_counter()
    mono0, unix0 = time.monotonic(), time.time()
    # To healthy, as issue 12 measures it: not the smoke image `up` makes after (--no-smoke).
    result = cli("up", node_yaml, "--no-tunnel", "--no-smoke", "--json", home=home,
                 env={"HF_TOKEN": HF_TOKEN})
    wall = time.perf_counter() - started
    report = json.loads(result.stdout)
    if not report.get("ok"):
        raise SystemExit(f"up failed: {result.stderr[-2000:]}")
    bodies = [r for r in hub.requests if r.method == "GET" and r.status in (200, 206)]
    timeline = {"first byte": min(r.started for r in bodies) - mono0,
                "last byte": max(r.ended or r.started for r in bodies) - mono0,
                "requests": len(bodies)}
    for step in report["steps"]:
        if step.get("started"):
            timeline[step["name"]] = (step["started"] - unix0,
                                      step["started"] - unix0 + step["duration"])
    return wall, report, timeline


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
    parser.add_argument("--no-seed", action="store_true", help="skip the seed recipe's run")
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
        with CpuSampler(node.user, node.uid) as sampler:
            wall, report, timeline = run_up(node_yaml, home, hub)
        download = timeline["last byte"] - timeline["first byte"]
        steps = {step["name"]: step for step in report["steps"]}
        install = sum(steps[name]["duration"] for name in INSTALL_STEPS if name in steps)
        launch = sum(steps[name]["duration"] for name in LAUNCH_STEPS if name in steps)
        connections = 16  # downloads.max_connections' default: what all connections carry
        ideal = max(total / (connections * rate), install) + launch
        python = plan_report["facts"]["pythons"][0]["path"]
        seed = None
        if not args.no_seed:
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
    if seed is not None:
        print(f"seed recipe, same node and hub {seed:7.2f}s   seed / up = {seed / wall:.2f}x "
              f"(target >= 2)")
    print(f"timeline of up (s from the CLI start): first byte {timeline['first byte']:.2f}, "
          f"last byte {timeline['last byte']:.2f} ({timeline['requests']} ranged/whole GETs), "
          f"CLI exit {wall:.2f}")
    ready, installed = timeline.get("models-ready"), timeline.get("gguf-requirements")
    if ready and installed:
        joined = ready[1] - max(timeline["last byte"], installed[1])
        print(f"  not in the ideal: CLI start to first byte {timeline['first byte']:.2f}s; from the "
              f"later of last byte and installs' end to models-ready's end {joined:.2f}s (the "
              f"fetcher's sha256 of the last file, its exit, the join); download / its ideal "
              f"{download / (total / (connections * rate)):.2f}")
    for step in report["steps"]:
        span = timeline.get(step["name"])
        when = f"{span[0]:6.2f} -> {span[1]:6.2f}" if span else " " * 16
        print(f"    {step['name']:<22} {step['status']:<8} {step['duration']:6.2f}s   {when}")
    if sampler.available:
        cpu = sampler.seconds()
        print("CPU during up (s): " + ", ".join(f"{kind} {cpu.get(kind, 0.0):.2f}" for kind in
                                                  ("hub", "fetcher", "sshd", "node other"))
              + f"; the machine's {os.cpu_count()} cores were busy {sampler.machine_busy():.2f} "
              f"cores on average over the {wall:.1f} s (all processes, other work included)")


if __name__ == "__main__":
    main()
