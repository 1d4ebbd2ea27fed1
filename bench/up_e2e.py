"""Wall time of a full `provision up` from empty and of a no-op `up`, on a loopback
fake-macOS node with local stand-ins, and the tool's own overhead.

    python bench/up_e2e.py [--runs 5]

Overhead = total wall time minus the time the node spent in pip, git, venv creation and
downloads (the steps' own durations, from `up --json`): what provision itself costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from common import cli, loopback_node, summary

from tests.e2e.conftest import HF_TOKEN, populate_hub
from tests.harness import sshd
from tests.harness.fake_comfyui import build_comfyui_repo, build_gguf_repo
from tests.harness.fake_hub import FakeHub
from tests.harness.wheelhouse import build_wheelhouse

WORK_KINDS = {"pip", "git", "venv", "download"}


def timed_up(node_yaml, home, env) -> tuple[float, dict]:
    started = time.perf_counter()
    result = cli("up", node_yaml, "--no-tunnel", "--json", home=home, env=env)
    elapsed = time.perf_counter() - started
    report = json.loads(result.stdout)
    assert report["ok"], result.stderr
    return elapsed, report


def overhead(elapsed: float, report: dict) -> float:
    work = sum(step["duration"] for step in report["steps"] if step["kind"] in WORK_KINDS)
    return elapsed - work


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    shared = sshd.shared_dir()
    gguf, gguf_ref = build_gguf_repo(shared / "gguf")
    comfy = build_comfyui_repo(shared / "comfy")
    wheels = build_wheelhouse(shared / "wheels")
    with FakeHub() as hub, loopback_node(name="upe2e", platform="macos", memory_gb=64) as (node, base, home):
        populate_hub(hub, base / "hub")
        node_yaml = node.write_node_yaml(
            base / "node.yaml", comfyui={"repo": str(comfy), "ref": "v0.3.64"},
            gguf_node={"repo": str(gguf), "ref": gguf_ref},
            pip={"no_index": True, "find_links": [str(wheels)]}, hf={"endpoint": hub.url},
            tunnel={"remote_port": sshd.free_port()})
        env = {"HF_TOKEN": HF_TOKEN}
        first, first_report = timed_up(node_yaml, home, env)
        reruns = [timed_up(node_yaml, home, env) for _ in range(args.runs)]
    print(f"full up from empty (fake macOS, launch + health): {first:.2f}s, "
          f"of which provision's own overhead {overhead(first, first_report):.2f}s")
    for step in first_report["steps"]:
        print(f"    {step['name']:<22} {step['status']:<8} {step['duration']:6.2f}s")
    times = [elapsed for elapsed, _ in reruns]
    print(f"no-op up (launch + health checked)        {summary(times)}")
    print(f"no-op overhead (no pip/git/download work)   median "
          f"{statistics.median(overhead(e, r) for e, r in reruns):.3f}s")
    cost = reruns[-1][1]["cost"]
    print(f"no-op SSH cost: {cost['connections']} connection, {cost['commands']} commands, "
          f"{cost['transfers']} transfers")


if __name__ == "__main__":
    main()
