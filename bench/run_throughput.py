"""Throughput of `provision run`: the same batch on one node and on a 2-node fleet.

    python bench/run_throughput.py [--jobs 24] [--steps 4] [--step-seconds 0.25] [--depth 1,2]

Two Linux loopback nodes (real sshd, tests/harness) are brought up from the stand-ins (fake
ComfyUI + ComfyUI-GGUF, a wheelhouse), with stand-in model files named like the plan's. The
fake sampler sleeps --step-seconds per step, so a job costs roughly steps x step-seconds on
the node plus what the tool spends around it (queueing, following the WebSocket, pulling and
verifying the image, the manifest). Each figure is a fresh batch (its own --out and seed), so
nothing is skipped or answered from ComfyUI's cache. Printed per run: wall time of the
command, the batch's own time and jobs/s (from its --json recap), each node's share; then the
fleet / one-node ratio of jobs/s (2.0 is the ceiling). The ideal is one job per
steps x step-seconds on each node.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import yaml
from common import cli, sshd  # noqa: F401 (common puts the repo on sys.path)
from fleet import stand_in_fields


def start_nodes(stack: ExitStack, base: Path, count: int, defaults: dict,
                step_seconds: float) -> list[dict]:
    """Start ``count`` nodes; return their fleet entries (each ComfyUI on its own port)."""
    entries = []
    for index in range(count):
        node = sshd.start_node(base, name=f"n{index + 1}", platform="linux")
        stack.callback(node.destroy)
        comfyui = dict(defaults["comfyui"], env={"FAKE_COMFYUI_STEP_SECONDS": str(step_seconds)})
        entries.append({"name": node.name, "host": node.host, "port": node.port, "user": node.user,
                        "identity_file": str(node.client_key), "host_key": node.host_key_fingerprint,
                        "tunnel": {"remote_port": sshd.free_port()}, "comfyui": comfyui,
                        "_node": node})
    return entries


def write_fleet(path: Path, entries: list[dict], defaults: dict) -> Path:
    nodes = [{key: value for key, value in entry.items() if key != "_node"} for entry in entries]
    fields = {key: value for key, value in defaults.items() if key != "comfyui"}
    path.write_text(yaml.safe_dump({"defaults": dict(fields, tunnel={"local_port": sshd.free_port()}),
                                    "nodes": nodes}), encoding="utf-8")
    return path


def check(result, what: str) -> None:
    if result.returncode != 0:
        raise SystemExit(f"{what} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                         f"{result.stderr[-3000:]}")


def place_models(fleet_yaml: Path, entries: list[dict], home: Path) -> None:
    plans = cli("fleet", "plan", str(fleet_yaml), "--json", home=home)
    check(plans, "fleet plan")
    for entry, line in zip(entries, json.loads(plans.stdout)["nodes"]):
        commands = []
        for spec in line["report"]["plan"]["files"]:
            folder = f"provision/ComfyUI/models/{spec['folder']}"
            name = spec["file"].rsplit("/", 1)[-1]
            commands.append(f"mkdir -p {shlex.quote(folder)} && "
                            f"printf 'stand-in model\\n' > {shlex.quote(folder + '/' + name)}")
        entry["_node"].ssh(" && ".join(commands))


def batch(target: Path, prompts: Path, out: Path, home: Path, steps: int, depth: int,
          seed: int) -> dict:
    """Run the batch; ``seed`` differs per batch: ComfyUI answers a prompt it has made before
    from its cache, in no time."""
    started = time.perf_counter()
    result = cli("run", str(target), "--prompts", str(prompts), "--steps", str(steps),
                 "--seeds", "1", "--seed", str(seed),
                 "--size", "256x256", "--depth", str(depth), "--out", str(out), "--json", home=home)
    wall = time.perf_counter() - started
    check(result, f"run on {target.name}")
    report = json.loads(result.stdout)
    report["wall"] = wall
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=24, help="prompts in the batch")
    parser.add_argument("--steps", type=int, default=4, help="sampler steps per job")
    parser.add_argument("--step-seconds", type=float, default=0.25,
                        help="the fake sampler's time per step")
    parser.add_argument("--depth", default="1,2", help="--depth values to measure, comma-separated")
    args = parser.parse_args()
    shared = sshd.shared_dir()
    base = Path(tempfile.mkdtemp(prefix="provision-bench-run-"))
    home = base / "laptop"
    (home / ".ssh").mkdir(parents=True)
    prompts = base / "prompts.txt"
    prompts.write_text("\n".join(f"prompt {i}: a lighthouse at dusk" for i in range(args.jobs)),
                       encoding="utf-8")
    try:
        defaults = stand_in_fields(shared)
        with ExitStack() as stack:
            entries = start_nodes(stack, base, 2, defaults, args.step_seconds)
            fleet_yaml = write_fleet(base / "fleet.yaml", entries, defaults)
            one_yaml = write_fleet(base / "one.yaml", entries[:1], defaults)
            check(cli("fleet", "up", str(fleet_yaml), "--no-models", "--no-tunnel", home=home),
                  "fleet up")
            place_models(fleet_yaml, entries, home)
            batch(one_yaml, prompts, base / "warm-up", home, args.steps, 2, seed=1)  # uncounted
            seeds = iter(range(1000, 10**6, 1000))
            ideal_one = 1 / (args.steps * args.step_seconds)
            print(f"{args.jobs} jobs, {args.steps} steps x {args.step_seconds:g}s (fake sampler), "
                  f"Linux loopback nodes; ideal {ideal_one:.3f} jobs/s per node")
            print(f"{'nodes':>5} {'depth':>5} {'wall':>8} {'batch':>8} {'jobs/s':>8} "
                  f"{'of ideal':>8}  shares")
            for depth in [int(value) for value in args.depth.split(",")]:
                rates = {}
                for label, target, count in (("one", one_yaml, 1), ("fleet", fleet_yaml, 2)):
                    report = batch(target, prompts, base / f"{label}-{depth}", home, args.steps,
                                   depth, seed=next(seeds))
                    rate = report["jobs_per_s"] or 0.0
                    rates[label] = rate
                    shares = ", ".join(f"{share['node']} {share['jobs']}" for share in report["nodes"])
                    print(f"{count:>5} {depth:>5} {report['wall']:>7.2f}s {report['seconds']:>7.2f}s "
                          f"{rate:>8.3f} {rate / (ideal_one * count):>8.2f}  {shares}", flush=True)
                print(f"depth {depth}: fleet / one node = {rates['fleet'] / rates['one']:.2f}x "
                      "(2.00x is the ceiling)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)


if __name__ == "__main__":
    main()
