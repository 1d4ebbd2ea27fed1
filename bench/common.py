"""Shared bits of the benchmark scripts: a loopback node from the test harness, timing."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import sshd  # noqa: E402
from tests.harness.cli import cli_env  # noqa: E402


@contextmanager
def loopback_node(**kw) -> Iterator[tuple]:
    """Start one harness node (real sshd on 127.0.0.1); yield (node, workdir, laptop_home)."""
    base = Path(tempfile.mkdtemp(prefix="provision-bench-"))
    home = base / "laptop"
    (home / ".ssh").mkdir(parents=True)
    node = sshd.start_node(base, **kw)
    try:
        yield node, base, home
    finally:
        node.destroy()


def cli(*args: str, home: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "provisioner", *map(str, args)],
                          env=cli_env(home, env), capture_output=True, text=True, cwd=str(home))


def timed(action: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def summary(times: list[float]) -> str:
    return (f"median {statistics.median(times):.3f}s  min {min(times):.3f}s  "
            f"max {max(times):.3f}s  (n={len(times)})")
