"""The stand-in wheelhouse: valid wheels, real pip installs them, the torch-upgrade trap is real."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.harness.fake_comfyui.builder import COMFYUI_SRC, GGUF_SRC
from tests.harness.wheelhouse import (
    Dist,
    build_wheelhouse,
    constraints_text,
    isolated_pip_env,
    wheel_filename,
)

PINS = ["torch==2.3.1", "torchvision==0.18.1", "torchaudio==2.3.1"]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, **kw)


def _venv(path: Path, with_pip: bool) -> list[str]:
    """Create a real venv; return the pip command that installs into it."""
    args = [sys.executable, "-m", "venv", str(path)] + ([] if with_pip else ["--without-pip"])
    done = _run(args)
    assert done.returncode == 0, done.stderr
    if with_pip:
        return [str(path / "bin" / "python"), "-m", "pip"]
    # pip >= 22.3 installs into another interpreter's environment: the same resolver, no
    # 6 s ensurepip per venv.
    return [sys.executable, "-m", "pip", "--python", str(path / "bin" / "python")]


def _pip(pip: list[str], *args: str) -> subprocess.CompletedProcess:
    done = _run([*pip, *args], env=isolated_pip_env())
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _py(venv: Path, code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return _run([venv / "bin" / "python", "-c", code], env=env)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    return build_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))


@pytest.fixture(scope="module")
def requirements() -> list[str]:
    return ["-r", str(COMFYUI_SRC / "requirements.txt"), "-r", str(GGUF_SRC / "requirements.txt")]


def test_wheels_are_well_formed_and_deterministic(tmp_path, wheels):
    again = build_wheelhouse(tmp_path / "again")
    names = sorted(p.name for p in wheels.glob("*.whl"))
    assert names == sorted(p.name for p in again.glob("*.whl"))
    assert wheel_filename("torch", "2.3.1") in names and wheel_filename("kornia", "0.9.0") in names
    for name in names:
        assert (wheels / name).read_bytes() == (again / name).read_bytes(), name
        with zipfile.ZipFile(wheels / name) as zf:
            info = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
            assert len(info) == 1
            rows = [line.split(",") for line in zf.read(info[0]).decode().splitlines()]
            assert {r[0] for r in rows} == set(zf.namelist())
            for path, digest, size in rows:
                if path.endswith("RECORD"):
                    assert digest == size == ""
                    continue
                data = zf.read(path)
                expect = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert digest == "sha256=" + expect and int(size) == len(data), path
            wheel_meta = zf.read(info[0].replace("RECORD", "WHEEL")).decode()
            assert "Tag: py3-none-any" in wheel_meta and "Root-Is-Purelib: true" in wheel_meta
    metadata = zipfile.ZipFile(wheels / wheel_filename("torchvision", "0.18.1")).read(
        "torchvision-0.18.1.dist-info/METADATA").decode()
    assert "Requires-Dist: torch==2.3.1" in metadata
    assert "Requires-Python: >=3.8,<3.13" in metadata  # upstream has no cp313 wheel


def test_reuse_and_extra(tmp_path):
    start = time.perf_counter()
    first = build_wheelhouse(tmp_path / "w")
    built = time.perf_counter() - start
    mtime = (first / wheel_filename("torch", "2.3.1")).stat().st_mtime_ns
    start = time.perf_counter()
    build_wheelhouse(tmp_path / "w")
    reused = time.perf_counter() - start
    assert (first / wheel_filename("torch", "2.3.1")).stat().st_mtime_ns == mtime
    assert built < 1.0 and reused < built
    build_wheelhouse(tmp_path / "w", extra={"comfy-kitchen": "0.1.0",
                                           "hf-stub": Dist("hf-stub", "2.0", requires=("requests",))})
    assert (tmp_path / "w" / "comfy_kitchen-0.1.0-py3-none-any.whl").exists()
    assert (tmp_path / "w" / "hf_stub-2.0-py3-none-any.whl").exists()
    assert len(list((tmp_path / "w").glob(".wheelhouse-*"))) == 1
    build_wheelhouse(tmp_path / "w")  # back to the standard set: the extra wheels go
    assert not (tmp_path / "w" / "comfy_kitchen-0.1.0-py3-none-any.whl").exists()


def test_pip_in_a_venv_installs_pins_and_requirements_with_constraints(tmp_path, wheels, requirements):
    venv = tmp_path / "venv"
    pip = _venv(venv, with_pip=True)  # as the tool does on a node: the venv's own pip
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(constraints_text())
    source = ["--no-index", "--find-links", str(wheels), "-c", str(constraints)]
    _pip(pip, "install", *source, *PINS)
    _pip(pip, "install", *source, *requirements)
    listed = _pip(pip, "list", "--format=freeze").stdout
    assert "torch==2.3.1" in listed and "torchvision==0.18.1" in listed and "kornia==0.8.1" in listed
    assert "gguf==0.17.1" in listed and "protobuf==6.32.1" in listed and "requests==2.32.5" in listed

    probe = ("import torch, torchvision, torch.library as L;"
             "print(torch.__version__, torch.version.__version__, torch.cuda.is_available(),"
             " torch.backends.mps.is_available(), hasattr(L, 'custom_op'))")
    off = _py(venv, probe, env={**isolated_pip_env(), "FAKE_MACOS_MPS": "0"})
    assert off.stdout.split() == ["2.3.1", "2.3.1", "False", "False", "False"], off.stderr
    on = _py(venv, probe, env={**isolated_pip_env(), "FAKE_MACOS_MPS": "1"})
    assert on.stdout.split()[3] == "True", on.stderr
    cuda = _py(venv, "import torch; torch.cuda.current_device()")
    assert cuda.returncode == 1 and "Torch not compiled with CUDA enabled" in cuda.stderr
    doc = _py(venv, "import torch; print(torch.__doc__)")
    assert "STAND-IN" in doc.stdout


def test_fake_uname_darwin_counts_as_a_mac(tmp_path, wheels):
    venv = tmp_path / "venv"
    pip = _venv(venv, with_pip=False)
    _pip(pip, "install", "--no-index", "--find-links", str(wheels), "torch==2.3.1")
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "uname").write_text("#!/bin/sh\necho Darwin\n")
    (shims / "uname").chmod(0o755)
    env = {k: v for k, v in isolated_pip_env().items() if k != "FAKE_MACOS_MPS"}
    probe = "import torch; print(torch.backends.mps.is_available())"
    assert _py(venv, probe, env={**env, "PATH": f"{shims}:{env['PATH']}"}).stdout.strip() == "True"
    assert _py(venv, probe, env=env).stdout.strip() == "False"


def test_without_constraints_the_requirements_upgrade_torch(tmp_path, wheels, requirements):
    """The trap is real: the pins first, then requirements.txt without -c -> torch 2.5.1."""
    venv = tmp_path / "venv"
    pip = _venv(venv, with_pip=False)
    source = ["--no-index", "--find-links", str(wheels)]
    _pip(pip, "install", *source, *PINS)
    out = _pip(pip, "install", *source, *requirements).stdout
    assert "Successfully uninstalled torch-2.3.1" in out
    listed = _pip(pip, "list", "--format=freeze").stdout
    assert "torch==2.5.1" in listed and "torchvision==0.20.1" in listed and "kornia==0.9.0" in listed
    probe = _py(venv, "import torch, torchvision, torch.library as L; print(torch.__version__, "
                      "hasattr(L, 'custom_op'))")
    assert probe.stdout.split() == ["2.5.1", "True"], probe.stderr

    # A companion built for another torch refuses to import, as the compiled ones do.
    _pip(pip, "install", *source, "--no-deps", "torchvision==0.18.1")
    broken = _py(venv, "import torchvision")
    assert broken.returncode == 1 and "operator torchvision::nms does not exist" in broken.stderr
