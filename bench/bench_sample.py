"""Make docs/bench.md's sample table and plot from a run against a STAND-IN node.

    python bench/bench_sample.py [--out docs]

Starts a loopback "macOS" node from the test harness (real sshd, emulated macOS userland,
64 GB), brings the fake ComfyUI up on it (tests/harness/fake_comfyui: it sleeps per sampler
step and runs no model), places stand-in model files, raises memory pressure and swap while
the bench runs (as a starved Mac would show them), and writes the terminal table, the JSON
and the plot. Every number in them comes from the stand-in, not from a Mac.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import threading
from pathlib import Path

from common import REPO, cli, loopback_node

from tests.harness.fake_comfyui import build_comfyui_repo, build_gguf_repo  # noqa: E402
from tests.harness.sshd import shared_dir  # noqa: E402
from tests.harness.wheelhouse import build_wheelhouse  # noqa: E402

STEP_SECONDS = "0.25"


def ramp(node, stop: threading.Event) -> None:
    """Yellow after the warm-up's image, red with swap growing after the first run's."""
    stages = [(1, dict(pressure_level=2, swap_used_mb=900, swapouts=4000)),
              (2, dict(pressure_level=4, swap_used_mb=3100, swapouts=60000)),
              (3, dict(pressure_level=4, swap_used_mb=4700, swapouts=150000))]
    for images, values in stages:
        while not stop.is_set():
            listed = node.ssh("ls provision/ComfyUI/output/bench 2>/dev/null", check=False).stdout.split()
            if len(listed) >= images:
                break
            stop.wait(0.1)
        if stop.is_set():
            return
        node.fake_macos_set(**values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    base = shared_dir()
    try:
        gguf_repo, gguf_ref = build_gguf_repo(base / "ComfyUI-GGUF")
        fields = {
            "comfyui": {"repo": str(build_comfyui_repo(base / "ComfyUI")), "ref": "v0.3.64",
                        "env": {"FAKE_COMFYUI_STEP_SECONDS": STEP_SECONDS}},
            "gguf_node": {"repo": str(gguf_repo), "ref": gguf_ref},
            "pip": {"no_index": True, "find_links": [str(build_wheelhouse(base / "wheelhouse"))]},
        }
        with loopback_node(name="m4pro-64", platform="macos", memory_gb=64) as (node, work, home):
            node_yaml = node.write_node_yaml(work / "node.yaml", **fields)
            up = cli("up", node_yaml, "--no-models", "--no-tunnel", home=home)
            assert up.returncode == 0, up.stderr
            plan = json.loads(cli("plan", node_yaml, "--json", home=home).stdout)["plan"]
            for entry in plan["files"]:
                folder = f"provision/ComfyUI/models/{entry['folder']}"
                target = f"{folder}/{entry['file'].rsplit('/', 1)[-1]}"
                node.ssh(f"mkdir -p {shlex.quote(folder)} && echo stand-in > {shlex.quote(target)}")
            node.fake_macos_set(pressure_level=1, swap_used_mb=0, swapouts=0)
            stop = threading.Event()
            thread = threading.Thread(target=ramp, args=(node, stop), daemon=True)
            thread.start()
            plot = work / "bench.png"
            result = cli("bench", node_yaml, "--compare", "seed", "--seed", "1000", "--plot", plot,
                         home=home, env={"COLUMNS": "150"})
            stop.set()
            thread.join(timeout=10)
            assert result.returncode == 0, result.stderr
            args.out.mkdir(parents=True, exist_ok=True)
            # The last lines name this run's temporary folders: not worth keeping.
            lines = [line.rstrip() for line in result.stdout.splitlines()
                     if not line.startswith(("images:", "history:", "plot:"))]
            (args.out / "bench-sample.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
            shutil.copyfile(plot, args.out / "bench-sample.png")
            print(result.stdout)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
