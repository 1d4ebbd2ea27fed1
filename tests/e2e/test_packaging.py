"""The wheel carries its data: installed into a fresh venv outside the checkout, it plans."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_wheel_installs_and_plans_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
                   check=True, timeout=300)
    wheel = next(dist.glob("provision-*.whl"))
    venv = tmp_path / "venv"
    # The venv sees the test machine's site-packages for the dependencies only; the package
    # itself comes from the wheel (asserted below), so no network is needed for fabric & co.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                   check=True, timeout=300)
    work = tmp_path / "elsewhere"
    (work / "examples").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "node.yaml", work / "examples" / "node.yaml")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HOME"] = str(tmp_path)
    where = subprocess.run([str(python), "-c", "import provisioner; print(provisioner.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert str(venv) in where.stdout, f"provisioner imported from {where.stdout}, not the wheel"
    result = subprocess.run([str(venv / "bin" / "provision"), "plan", "examples/node.yaml", "--memory", "16GB"],
                            cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "flux1-dev-Q4_K_S.gguf" in result.stdout and "gguf-node" in result.stdout
