"""Shared fixtures: real sshd nodes on loopback (tests/harness/sshd.py), a laptop HOME.

SSH is never mocked. A missing sshd FAILS every test (it is never a skip).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from tests.harness import sshd


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: drives the CLI against real sshd nodes on loopback (tests/harness)"
    )


@pytest.fixture(scope="session", autouse=True)
def sshd_available() -> None:
    """Fail (never skip) when OpenSSH's sshd is missing; remove nodes left by killed runs."""
    try:
        sshd.require_sshd()
    except sshd.HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        sshd.cleanup_stale_nodes()
    except (sshd.HarnessError, OSError) as exc:
        # Leftovers of a killed run are a nuisance, not a reason to fail this run's tests.
        warnings.warn(f"could not remove stale harness nodes: {exc}")


@pytest.fixture
def node_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., sshd.SshNode]]:
    """Start nodes: ``node_factory(platform="macos", memory_gb=64, name=None, **kw)``.

    ``kw`` goes to ``start_node`` (chip, macos_version, fake_macos_values, shell,
    sshd_options). Every node is destroyed (sshd stopped, user deleted) at teardown, even
    when the test failed; a failed test's report shows each node's sshd log tail.
    """
    base = tmp_path_factory.mktemp("nodes")
    nodes: list[sshd.SshNode] = []
    request.node._harness_nodes = nodes

    def make(
        platform: str = "macos", memory_gb: float = 64, name: Optional[str] = None, **kw: Any
    ) -> sshd.SshNode:
        node = sshd.start_node(
            base,
            name=name or f"node{len(nodes) + 1}",
            platform=platform,  # type: ignore[arg-type]
            memory_gb=memory_gb,
            **kw,
        )
        nodes.append(node)
        return node

    yield make
    errors = []
    for node in reversed(nodes):
        try:
            node.destroy()
        except Exception as exc:  # noqa: BLE001 - destroy the others, then report
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """Return a folder node users can read (tmp_path is not: pytest keeps it 0700).

    Put what a node must read by path here (git repos to clone, a wheelhouse, model files);
    make the files world-readable. Removed at teardown.
    """
    folder = sshd.shared_dir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def laptop_home(tmp_path: Path) -> Path:
    """Return a HOME for the laptop side of a test, with an empty ``.ssh/`` (0700)."""
    home = tmp_path / "laptop"
    (home / ".ssh").mkdir(parents=True)
    os.chmod(home / ".ssh", 0o700)
    return home


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when == "call":
        for node in getattr(item, "_harness_nodes", []):
            lines = [
                line
                for line in node.log_tail(400).splitlines()
                if not line.startswith("debug1:")
            ][-20:]
            report.sections.append(
                (f"sshd log of {node.name} ({node.sshd_log}, non-debug tail)", "\n".join(lines))
            )
