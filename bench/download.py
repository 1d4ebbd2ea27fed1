"""Download throughput of the node's downloader (templates/hf_fetch.py) next to curl's, and
the time the `models` step takes to skip a file that is already verified.

    python bench/download.py [--size-gb 2] [--runs 3] [--fetcher PATH]

A FakeHub on 127.0.0.1 serves one GGUF of --size-gb (zero padding after real tensors). On a
harness node (real sshd, its own user) both fetch it over loopback, each run ON the node over
ssh and timed on the node (`date` around the command, so ssh set-up is not counted):

- hf_fetch.py exactly as `up` runs it: manifest on stdin, `<dest>.partial`, sha256 while
  streaming, size + sha256 + GGUF quant verified, fsync, rename, `.verified` record;
- `curl -sS --fail -o FILE URL` (no hashing, no fsync): the target is hf_fetch >= 0.9x curl.
  `curl` then `sync FILE` (as durable as hf_fetch leaves its file) and `curl` then `sha256sum`
  (download, then verify) are printed too, for reference.

Runs alternate (tool, curl, tool, ...) so neither gets a warmer page cache. Then the skip:
the `models` step's probe (one SSH round trip on an open connection) + decide for the
verified file, as `up` runs them; target < 0.5 s. Figures only: nothing here asserts time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import REPO, loopback_node, summary

from tests.harness.fake_hub import FakeHub
from tests.harness.hub_files import make_gguf, sha256_file

REPO_ID, FILE = "city96/FLUX.1-dev-gguf", "flux1-dev-Q8_0.gguf"


def timed_on_node(node, command: str) -> tuple[float, float]:
    """Run ``command`` on the node; return its wall time and CPU time (user + sys) as
    measured there (`date` around it, the shell's `times` for its children)."""
    script = (f"t0=$(date +%s.%N); {command}; rc=$?; t1=$(date +%s.%N); "
              f"echo \"@@timing $t0 $t1 $rc\"; times")
    out = node.ssh(script, timeout=3600).stdout
    lines = out.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("@@timing "))
    _, t0, t1, rc = lines[index].split()
    if rc != "0":
        raise SystemExit(f"`{command}` failed on the node (exit {rc}):\n{out[-2000:]}")
    children = lines[index + 2].split()  # `times`: the shell's line, then its children's
    cpu = sum(int(m) * 60 + float(sec.rstrip("s")) for m, sec in (t.split("m") for t in children))
    return float(t1) - float(t0), cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-runs", type=int, default=10)
    parser.add_argument("--fetcher", type=Path, default=REPO / "templates" / "hf_fetch.py",
                        help="the downloader to measure (e.g. an older hf_fetch.py, for before/after)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="provision-bench-hub-"))
    try:
        run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args, scratch: Path) -> None:
    source = make_gguf(scratch / "big.gguf", quant="Q8_0", size_hint_bytes=int(args.size_gb * 1e9))
    size, sha256 = source.stat().st_size, sha256_file(source)
    with FakeHub() as hub, loopback_node(name="bench", platform="linux") as (node, base, home):
        # A Linux node: the transfer is the same on a macOS node (no shim is involved).
        hub.add_file(REPO_ID, FILE, source, sha256=sha256)
        commit = hub.commit(REPO_ID)
        url = f"{hub.url}/{REPO_ID}/resolve/{commit}/{FILE}"
        work = f"{node.home}/bench"
        dest = f"{work}/models/unet/{FILE}"
        fetcher = f"{work}/hf_fetch.py"
        node.ssh(f"mkdir -p {shlex.quote(work)}/models/unet")
        node.ssh(f"cat > {shlex.quote(fetcher)}", input=args.fetcher.read_text())
        for part in ("hf_fetch_io.py", "hf_fetch_ranges.py"):  # imported by hf_fetch.py
            if (args.fetcher.parent / part).exists():
                node.ssh(f"cat > {shlex.quote(work)}/{part}", input=(args.fetcher.parent / part).read_text())
        item = {"repo": REPO_ID, "file": FILE, "revision": commit, "dest": dest, "size": size,
                "sha256": sha256, "quant": "Q8_0", "record": dest + ".verified"}
        manifest = {"endpoint": hub.url, "parallel": 1, "retries": 0,
                    "backoff": 0, "files": [item]}
        node.ssh(f"cat > {shlex.quote(work)}/manifest.json", input=json.dumps(manifest))
        python = "/usr/bin/python3"
        clean = f"rm -f {shlex.quote(dest)} {shlex.quote(dest)}.partial {shlex.quote(dest)}.verified " \
                f"{shlex.quote(work)}/curl.out"
        fetch = f"{python} {shlex.quote(fetcher)} < {shlex.quote(work)}/manifest.json > /dev/null"
        curl = f"curl -sS --fail -o {shlex.quote(work)}/curl.out {shlex.quote(url)}"
        curl_sync = f"{curl} && sync {shlex.quote(work)}/curl.out"
        curl_hash = f"{curl} && sha256sum {shlex.quote(work)}/curl.out > /dev/null"

        runs = {name: [] for name in ("tool", "curl", "curl_sync", "curl_hash")}
        for _ in range(args.runs):
            for name, command in (("tool", fetch), ("curl", curl), ("curl_sync", curl_sync),
                                  ("curl_hash", curl_hash)):
                node.ssh(clean)
                node.ssh("sync")  # start each run with no dirty pages of the previous one
                runs[name].append(timed_on_node(node, command))
        node.ssh(clean)
        timed_on_node(node, fetch)  # leave the file verified for the skip figure
        got = node.ssh(f"sha256sum {shlex.quote(dest)}").stdout.split()[0]
        assert got == sha256, "hf_fetch.py wrote a file that does not match"

        skip_times, connect_times = skip_figures(node, base, home, hub, item, args.skip_runs)

    wall = {name: [w for w, _ in values] for name, values in runs.items()}
    cpu = {name: statistics.median(c for _, c in values) for name, values in runs.items()}
    tool_times, curl_times = wall["tool"], wall["curl"]
    curl_sync_times = wall["curl_sync"]
    rate = lambda times: size / statistics.median(times) / 1e6  # noqa: E731 - MB/s
    print(f"downloader: {args.fetcher}")
    print(f"file: {size / 1e9:.2f} GB from a FakeHub on 127.0.0.1, fetched on a loopback node "
          f"(curl and hf_fetch.py both run on the node over ssh, timed there)")
    for label, name in (("hf_fetch.py (sha256 + verify)", "tool"), ("curl -o", "curl"),
                        ("curl -o && sync FILE", "curl_sync"), ("curl -o && sha256sum", "curl_hash")):
        print(f"{label:30s} {rate(wall[name]):8.1f} MB/s   {summary(wall[name])}   "
              f"cpu {cpu[name]:.2f}s")
    print(f"ratio hf_fetch / curl: {rate(tool_times) / rate(curl_times):.2f} median, "
          f"{min(curl_times) / min(tool_times):.2f} best of each (target >= 0.9)")
    print(f"ratio hf_fetch / (curl + fsync, as durable as hf_fetch leaves it): "
          f"{rate(tool_times) / rate(curl_sync_times):.2f} median")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(the hub, the node and the tools share them: a busy machine lowers every figure)")
    print(f"skip a verified {size / 1e9:.2f} GB file (models step probe + decide, open connection): "
          f"{summary(skip_times)} (target < 0.5 s)")
    print(f"  the same with a fresh SSH connection first: {summary(connect_times)}")


def skip_figures(node, base, home, hub, item, runs):
    """Time the `models` step's probe + decide on the verified file, as `up` runs them."""
    os.environ["HOME"] = str(home)
    os.environ["PROVISION_HOME"] = str(home / ".config" / "provision")
    from provisioner.core.config import load_node
    from provisioner.install.engine import probe_steps
    from provisioner.install.steps.download import DownloadStep, FileSpec
    from provisioner.node.connect import connect, target_of

    cfg = load_node(str(node.write_node_yaml(base / "node.yaml")))
    spec = FileSpec(role="unet", repo=item["repo"], file=item["file"], revision=item["revision"],
                    dest=item["dest"], size=item["size"], sha256=item["sha256"], quant="Q8_0",
                    resolved=True)
    step = DownloadStep(name="models", kind="download", files=[spec], endpoint=hub.url,
                        fetcher=f"{node.home}/bench/hf_fetch.py", python="/usr/bin/python3")

    def skip(remote) -> None:
        if step.decide(probe_steps(remote, [step]).get(0)) is not None:
            raise SystemExit("the verified file was not recognised as verified")

    remote = connect(target_of(cfg))
    try:
        skip(remote)  # warm: paramiko's first channel
        skip_times = []
        for _ in range(runs):
            started = time.perf_counter()
            skip(remote)
            skip_times.append(time.perf_counter() - started)
    finally:
        remote.close()
    connect_times = []
    for _ in range(max(3, runs // 3)):
        started = time.perf_counter()
        remote = connect(target_of(cfg))
        try:
            skip(remote)
        finally:
            remote.close()
        connect_times.append(time.perf_counter() - started)
    return skip_times, connect_times


if __name__ == "__main__":
    main()
