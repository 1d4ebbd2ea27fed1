"""A no-op `provision up --no-launch` re-run next to one plain `ssh node true`.

    python bench/rerun.py [--runs 7] [--platform linux|macos]

Provisions a loopback node once (local stand-ins: fake ComfyUI repos, tiny wheels, the fake
Hub), then times re-runs that change nothing. Prints medians, the ratio, the SSH round trips
of one re-run as counted by sshd's own log, and where the time goes (--profile).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess

from common import cli, loopback_node, summary, timed

from tests.e2e.conftest import HF_TOKEN, populate_hub
from tests.harness import sshd
from tests.harness.fake_comfyui import build_comfyui_repo, build_gguf_repo
from tests.harness.fake_hub import FakeHub
from tests.harness.wheelhouse import build_wheelhouse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--platform", default="linux", choices=["linux", "macos"])
    args = parser.parse_args()
    shared = sshd.shared_dir()
    gguf, gguf_ref = build_gguf_repo(shared / "gguf")
    comfy = build_comfyui_repo(shared / "comfy")
    wheels = build_wheelhouse(shared / "wheels")
    with FakeHub() as hub, loopback_node(name="rerun", platform=args.platform, memory_gb=64) as (node, base, home):
        populate_hub(hub, base / "hub")
        node_yaml = node.write_node_yaml(
            base / "node.yaml", comfyui={"repo": str(comfy), "ref": "v0.3.64"},
            gguf_node={"repo": str(gguf), "ref": gguf_ref},
            pip={"no_index": True, "find_links": [str(wheels)]}, hf={"endpoint": hub.url})
        env = {"HF_TOKEN": HF_TOKEN}
        first = timed(lambda: cli("up", node_yaml, "--no-launch", home=home, env=env), 1)
        check = cli("up", node_yaml, "--no-launch", "--json", home=home, env=env)
        report = json.loads(check.stdout)
        assert report["ok"] and report["changed"] == 0, check.stderr
        ssh_times = timed(lambda: subprocess.run(node.ssh_argv("true"), check=True), args.runs)
        before = node.connection_counts()
        cli("up", node_yaml, "--no-launch", home=home, env=env)
        after = node.connection_counts()
        rerun_times = timed(lambda: cli("up", node_yaml, "--no-launch", home=home, env=env), args.runs)
    print(f"first up --no-launch (from empty, stand-ins)  {first[0]:.2f}s")
    print(f"ssh node true                                {summary(ssh_times)}")
    print(f"no-op up --no-launch re-run                  {summary(rerun_times)}")
    print(f"ratio re-run / ssh true: {statistics.median(rerun_times) / statistics.median(ssh_times):.2f}x "
          f"(target: under 0.5 s and within 3x)")
    print(f"one re-run costs (sshd log): {after['connections'] - before['connections']} connection(s), "
          f"{after['exec'] - before['exec']} exec round trip(s), {after['sftp'] - before['sftp']} sftp")


if __name__ == "__main__":
    main()
