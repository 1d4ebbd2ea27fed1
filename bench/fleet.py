"""Wall time of `provision fleet up` on 1, 4 and 8 loopback nodes, all at once vs one by one.

    python bench/fleet.py [--sizes 1,4,8] [--runs 3] [--no-launch]

Every node is a real sshd on 127.0.0.1 (tests/harness) running Linux; `up` installs from the
local stand-ins (fake ComfyUI and ComfyUI-GGUF git repos, a wheelhouse), without models, so
the figures are the tool's own cost plus venv and pip work, not the network's. For each size:
"from empty" is measured once on fresh nodes with --parallel N and once on other fresh nodes
with --parallel 1 (after one uncounted warm-up fleet, so neither pays for cold caches);
"no-op" is the median of --runs re-runs of each on the installed nodes. The speed-up is the
one-after-another time over the all-at-once time; expect it to be bounded by this machine's
CPUs, since every loopback node's venv and pip work runs here too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import yaml
from common import cli, sshd  # noqa: F401 (common puts the repo on sys.path)

from tests.harness.fake_comfyui import build_comfyui_repo, build_gguf_repo  # noqa: E402
from tests.harness.wheelhouse import build_wheelhouse  # noqa: E402


def stand_in_fields(shared: Path) -> dict:
    gguf, ref = build_gguf_repo(shared / "ComfyUI-GGUF")
    return {"comfyui": {"repo": str(build_comfyui_repo(shared / "ComfyUI")), "ref": "v0.3.64"},
            "gguf_node": {"repo": str(gguf), "ref": ref},
            "pip": {"no_index": True, "find_links": [str(build_wheelhouse(shared / "wheelhouse"))]}}


def start_fleet(stack: ExitStack, base: Path, size: int, label: str, defaults: dict) -> Path:
    """Start ``size`` nodes; return a fleet.yaml reaching them (each ComfyUI on its own port)."""
    entries = []
    for index in range(size):
        node = sshd.start_node(base, name=f"{label}{index + 1}", platform="linux")
        stack.callback(node.destroy)
        entries.append({"name": node.name, "host": node.host, "port": node.port, "user": node.user,
                        "identity_file": str(node.client_key), "host_key": node.host_key_fingerprint,
                        "tunnel": {"remote_port": sshd.free_port()}})
    path = base / f"{label}.yaml"
    path.write_text(yaml.safe_dump({"defaults": dict(defaults, tunnel={"local_port": sshd.free_port()}),
                                    "nodes": entries}), encoding="utf-8")
    return path


def fleet_up(fleet_yaml: Path, home: Path, parallel: int, launch: bool) -> float:
    args = ["fleet", "up", fleet_yaml, "--no-models", "--no-tunnel", "--parallel", str(parallel)]
    started = time.perf_counter()
    result = cli(*args, *([] if launch else ["--no-launch"]), home=home)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"fleet up failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds


def measure(size: int, runs: int, launch: bool, defaults: dict, root: Path) -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix=f"fleet-{size}-", dir=root))
    home = base / "laptop"
    (home / ".ssh").mkdir(parents=True)
    figures: dict[str, float] = {}
    with ExitStack() as stack:
        together = start_fleet(stack, base, size, "p", defaults)
        one_by_one = start_fleet(stack, base, size, "s", defaults)
        figures["empty_parallel"] = fleet_up(together, home, size, launch)
        figures["empty_serial"] = fleet_up(one_by_one, home, 1, launch)
        figures["noop_parallel"] = statistics.median(fleet_up(together, home, size, launch)
                                                     for _ in range(runs))
        figures["noop_serial"] = statistics.median(fleet_up(one_by_one, home, 1, launch)
                                                   for _ in range(runs))
    shutil.rmtree(base, ignore_errors=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,4,8", help="fleet sizes, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="no-op re-runs per figure (median)")
    parser.add_argument("--no-launch", action="store_true", help="install only; do not start ComfyUI")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    shared = sshd.shared_dir()
    root = Path(tempfile.mkdtemp(prefix="provision-bench-fleet-"))
    try:
        defaults = stand_in_fields(shared)
        measure(1, 1, not args.no_launch, defaults, root)  # warm-up, not shown: cold caches
        print(f"fleet up --no-models --no-tunnel{' --no-launch' if args.no_launch else ''}, "
              f"Linux loopback nodes, {os.cpu_count()} CPU(s) on this machine")
        print(f"{'nodes':>5}  {'from empty: all at once':>24} {'one by one':>11} {'speed-up':>9}"
              f"  {'no-op: all at once':>19} {'one by one':>11} {'speed-up':>9}")
        for size in sizes:
            f = measure(size, args.runs, not args.no_launch, defaults, root)
            print(f"{size:>5}  {f['empty_parallel']:>23.2f}s {f['empty_serial']:>10.2f}s "
                  f"{f['empty_serial'] / f['empty_parallel']:>8.2f}x  {f['noop_parallel']:>18.2f}s "
                  f"{f['noop_serial']:>10.2f}s {f['noop_serial'] / f['noop_parallel']:>8.2f}x", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)


if __name__ == "__main__":
    main()
