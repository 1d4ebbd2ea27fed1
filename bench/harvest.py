"""Harvest throughput against a loopback node, next to `scp -r` of the same folder.

    python bench/harvest.py [--files 200] [--mb 2] [--runs 3]

A node (real sshd on 127.0.0.1, tests/harness) gets FILES random files of MB megabytes in
ComfyUI's output folder. Each run, alternately: `scp -r` of that folder into a fresh local
folder, and provision's harvest into a fresh local folder: connect, list with sha256 computed
on the node (one round trip), pull over SFTP, verify every file's sha256 locally, write the
manifest. Prints both medians, the throughputs and their ratio (target >= 0.8), then the
time of a no-op second harvest (everything already pulled: connect, list, plan).

Node and laptop share this machine's CPUs here, so the node's hashing competes with the
transfer; on a real rental they run on two machines.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from common import loopback_node, summary

from provisioner.node.connect import Target, connect
from provisioner.node.programs import interpreters
from provisioner.teardown import harvest
from provisioner.teardown.inventory import HarvestRoot, inventory_spec
from provisioner.teardown.options import DownOptions
from provisioner.teardown.outputs import list_and_harvest


def scp_argv(node, source: str, dest: Path) -> list[str]:
    return ["scp", "-q", "-r", "-F", "/dev/null", "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={node.known_hosts}", "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none", "-i", str(node.client_key), "-P", str(node.port),
            f"{node.user}@127.0.0.1:{source}", str(dest)]


def tool_harvest(target: Target, roots, dest: Path):
    """What `down` does for its harvest: one listing round trip, files pulled as they come."""
    node = connect(target)
    try:
        _, report, _ = list_and_harvest(node, inventory_spec(roots), roots,
                                        interpreters("/usr/bin/python3"), dest, "bench",
                                        DownOptions(), lambda event: None)
    finally:
        node.close()
    assert report.ok, report
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--mb", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = int(args.mb * 1_000_000)
    total = args.files * size
    with loopback_node(name="bench", platform="linux") as (node, base, home):
        folder = "provision/ComfyUI/output"
        node.ssh(f"mkdir -p {folder}/batch && cd {folder}/batch && for i in $(seq 1 {args.files}); "
                 f"do head -c {size} /dev/urandom > img_$i.png; done", timeout=600)
        remote_home = node.ssh("echo $HOME").stdout.strip()
        roots = [HarvestRoot(label="output", path=f"{remote_home}/{folder}")]
        target = Target("127.0.0.1", node.port, node.user, str(node.client_key),
                        node.host_key_fingerprint, "bench")
        scp_times, tool_times = [], []
        for run in range(args.runs):
            dest = base / f"scp-{run}"
            started = time.perf_counter()
            subprocess.run(scp_argv(node, folder, dest), check=True)
            scp_times.append(time.perf_counter() - started)
            shutil.rmtree(dest)
            dest = base / f"tool-{run}"
            started = time.perf_counter()
            report = tool_harvest(target, roots, dest)
            tool_times.append(time.perf_counter() - started)
            assert len(report.pulled) == args.files
            if run < args.runs - 1:
                shutil.rmtree(dest)
        noop_times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            report = tool_harvest(target, roots, base / f"tool-{args.runs - 1}")
            noop_times.append(time.perf_counter() - started)
            assert not report.pulled and report.skipped == args.files
    scp_rate = total / statistics.median(scp_times) / 1e6
    tool_rate = total / statistics.median(tool_times) / 1e6
    print(f"{args.files} files x {args.mb:g} MB = {total / 1e6:.0f} MB on loopback, "
          f"{harvest.WORKERS} SFTP sessions")
    print(f"scp -r                 {summary(scp_times)}  {scp_rate:.1f} MB/s")
    print(f"provision harvest      {summary(tool_times)}  {tool_rate:.1f} MB/s "
          "(connect + list with sha256 on the node + pull + verify + manifest)")
    print(f"ratio harvest / scp throughput: {tool_rate / scp_rate:.2f} (target >= 0.8)")
    print(f"no-op second harvest   {summary(noop_times)}")


if __name__ == "__main__":
    main()
