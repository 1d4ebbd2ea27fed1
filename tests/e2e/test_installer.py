"""`installer: uv | pip`: uv (the default) and pip install the same node, torch held either way.

The stand-in wheelhouse holds the real uv wheel for this machine (tests/harness/wheelhouse.py),
so nodes install the real uv offline, as a Mac would from PyPI.
"""

from __future__ import annotations

import json

import pytest

from tests.harness.cli import run_cli
from tests.harness.wheelhouse import build_wheelhouse

pytestmark = pytest.mark.e2e

VENV_PYTHON = "~/provision/venv/bin/python"
PIP_STEPS = ("torch", "comfyui-requirements", "gguf-requirements")


def up_json(node_yaml, home, *extra):
    result = run_cli("up", node_yaml, "--no-launch", "--no-models", "--json", *extra,
                     home=home, timeout=300)
    assert result.stdout.strip().startswith("{"), result.stderr
    report = json.loads(result.stdout)
    return result, report, {step["name"]: step for step in report["steps"]}


def installed_versions(node) -> list[str]:
    return node.ssh(f"{VENV_PYTHON} -c 'import torch, torchvision, torchaudio, kornia, requests, gguf; "
                    "print(torch.__version__, torchvision.__version__, torchaudio.__version__, "
                    "kornia.__version__)'").stdout.split()


def assert_a_noop_rerun(node, node_yaml, home):
    before = node.connection_counts()
    result, report, _ = up_json(node_yaml, home)
    after = node.connection_counts()
    assert result.returncode == 0, result.stderr
    assert report["changed"] == 0
    assert {s["status"] for s in report["steps"]} <= {"ok", "skipped"}, report["steps"]
    assert after["connections"] - before["connections"] == 1


def test_uv_installs_a_fresh_node_and_holds_torch(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="macos")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())

    plan = run_cli("plan", node_yaml, "--json", home=laptop_home)
    assert plan.returncode == 0, plan.stderr
    descriptions = {s["name"]: s["description"] for s in json.loads(plan.stdout)["steps"]}
    assert "made by uv 0.13.9" in descriptions["venv"]
    assert all(descriptions[name].endswith("(uv)") for name in PIP_STEPS)
    dry, _, steps = up_json(node_yaml, laptop_home, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert steps["venv"]["detail"] == "no virtual environment yet (uv 0.13.9)"
    assert steps["torch"]["detail"] == "not installed yet (uv)"

    result, _, steps = up_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert steps["venv"]["status"] == "changed"
    assert "created with uv" in steps["venv"]["detail"] and "uv 0.13.9 installed" in steps["venv"]["detail"]
    for name in PIP_STEPS:
        assert steps[name]["detail"].endswith("installed with uv"), steps[name]
    assert node.ssh("~/provision/tools/uv/bin/uv --version").stdout.split()[:2] == ["uv", "0.13.9"]
    assert "uv = 0.13.9" in node.ssh("cat ~/provision/venv/pyvenv.cfg").stdout
    assert node.ssh("test -e ~/provision/venv/bin/pip", check=False).returncode != 0, "a uv venv has no pip"
    # ComfyUI's requirements ask for kornia, whose newest release wants torch>=2.5.1 (the trap
    # is real for uv too: without -c it upgrades torch); the constraints file holds torch.
    versions = installed_versions(node)
    assert versions[:3] == ["2.3.1", "0.18.1", "2.3.1"] and versions[3] != "0.9.0"
    assert node.ssh("test -d ~/provision/tools/uv-cache", check=False).returncode == 0

    assert_a_noop_rerun(node, node_yaml, laptop_home)


def test_installer_pip_then_a_switch_to_uv_reinstalls_nothing(node_factory, laptop_home, tmp_path,
                                                             stand_ins):
    node = node_factory(platform="linux")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(installer="pip"))
    result, _, steps = up_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert steps["venv"]["detail"] == "no virtual environment yet: created"
    assert all(steps[name]["detail"] == "not installed yet: installed" for name in PIP_STEPS)
    assert "uv =" not in node.ssh("cat ~/provision/venv/pyvenv.cfg").stdout
    assert node.ssh("test -x ~/provision/venv/bin/pip && test ! -e ~/provision/tools",
                    check=False).returncode == 0
    versions = installed_versions(node)
    assert versions[:3] == ["2.3.1", "0.18.1", "2.3.1"] and versions[3] != "0.9.0"
    assert_a_noop_rerun(node, node_yaml, laptop_home)

    node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(installer="uv"))
    result, _, steps = up_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    changed = [name for name, step in steps.items() if step["status"] == "changed"]
    assert changed == ["venv"], steps
    assert steps["venv"]["detail"] == ("uv 0.13.9 is not installed yet: uv 0.13.9 installed into "
                                       f"{node.home}/provision/tools/uv")
    assert_a_noop_rerun(node, node_yaml, laptop_home)


def test_a_node_whose_index_has_no_uv_falls_back_to_pip_with_a_note(node_factory, laptop_home, tmp_path,
                                                                    stand_ins, shared_tmp):
    without_uv = build_wheelhouse(shared_tmp / "wheelhouse")  # the stand-ins, no uv wheel
    node = node_factory(platform="linux")
    fields = stand_ins.node_fields(pip={"no_index": True, "find_links": [str(without_uv)]})
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **fields)
    result, _, steps = up_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    venv = steps["venv"]
    assert venv["status"] == "changed"
    assert "warning: uv 0.13.9 could not be installed" in venv["detail"], venv
    assert "No matching distribution found for uv==0.13.9" in venv["detail"]
    assert "pip installs instead" in venv["detail"]
    for name in PIP_STEPS:
        assert steps[name]["detail"] == ("not installed yet (pip: uv is not on this node's index): "
                                         "installed with pip (uv is not installed)"), steps[name]
    assert node.ssh("test -x ~/provision/venv/bin/pip && test ! -e ~/provision/tools/uv/bin/uv",
                    check=False).returncode == 0
    versions = installed_versions(node)
    assert versions[:3] == ["2.3.1", "0.18.1", "2.3.1"] and versions[3] != "0.9.0"
    assert_a_noop_rerun(node, node_yaml, laptop_home)  # the index is not asked for uv again

    # Once the index has uv, changing the index options makes the step try again.
    node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    result, _, steps = up_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert steps["venv"]["detail"].endswith("uv 0.13.9 installed into "
                                            f"{node.home}/provision/tools/uv"), steps["venv"]


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_an_install_cut_short_is_repaired_by_the_next_up(node_factory, laptop_home, tmp_path,
                                                          stand_ins, installer):
    """What a killed `uv pip install` leaves: a dist-info folder without its METADATA, and no
    marker. uv then refuses to install ("Failed to read metadata"); the step repairs it."""
    node = node_factory(platform="linux")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", installer=installer,
                                     **stand_ins.node_fields())
    assert up_json(node_yaml, laptop_home)[0].returncode == 0
    node.ssh("rm ~/provision/state/pip-torch.sha256 && "
             "rm ~/provision/venv/lib/python*/site-packages/torchaudio-2.3.1.dist-info/METADATA")
    result, _, steps = up_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert steps["torch"]["status"] == "changed"
    assert installed_versions(node)[:3] == ["2.3.1", "0.18.1", "2.3.1"]
    assert node.ssh("ls ~/provision/venv/lib/python*/site-packages/torchaudio-2.3.1.dist-info/METADATA",
                    check=False).returncode == 0
