"""Wall time of `provision plan` against a loopback node next to a raw `ssh host true`.

    python bench/plan_overhead.py [--runs 10]

Prints both medians, their ratio, and the SSH cost of one plan as counted by sshd's log.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess

from common import cli, loopback_node, summary, timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with loopback_node(name="bench", platform="macos", memory_gb=64) as (node, base, home):
        node_yaml = node.write_node_yaml(base / "node.yaml")
        ssh_times = timed(lambda: subprocess.run(node.ssh_argv("true"), check=True), args.runs)
        before = node.connection_counts()
        result = cli("plan", node_yaml, home=home)
        assert result.returncode == 0, result.stderr
        after = node.connection_counts()
        plan_times = timed(lambda: cli("plan", node_yaml, home=home), args.runs)
        offline_times = timed(lambda: cli("plan", node_yaml, "--memory", "64GB", home=home), args.runs)
    cost = {key: after[key] - before[key] for key in ("connections", "exec", "sftp")}
    print(f"ssh host true         {summary(ssh_times)}")
    print(f"provision plan        {summary(plan_times)}")
    print(f"provision plan (offline, --memory) {summary(offline_times)}")
    ratio = statistics.median(plan_times) / statistics.median(ssh_times)
    print(f"ratio plan / ssh true: {ratio:.2f}x")
    print(f"one plan costs (sshd log): {cost['connections']} connection(s), {cost['exec']} exec "
          f"round trip(s), {cost['sftp']} sftp session(s)")


if __name__ == "__main__":
    main()
