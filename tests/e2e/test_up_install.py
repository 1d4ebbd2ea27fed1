"""`provision up --no-launch`: the software install on real sshd nodes, from empty and again."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time

import pytest

from tests.harness.cli import cli_env, run_cli

pytestmark = pytest.mark.e2e


def up_json(node_yaml, home, *extra, timeout=300):
    result = run_cli("up", node_yaml, "--no-launch", "--no-models", "--json", *extra,
                     home=home, timeout=timeout)
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, report


def listing(node) -> str:
    return node.ssh("find ~ -path ~/.ssh -prune -o -print | sort").stdout


@pytest.mark.parametrize("platform", ["macos", "linux"])
def test_up_installs_from_empty_and_a_rerun_changes_nothing(node_factory, laptop_home, tmp_path,
                                                            stand_ins, platform):
    node = node_factory(platform=platform, memory_gb=64)
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    result, report = up_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert report["ok"] and report["changed"] > 0
    statuses = {step["name"]: step["status"] for step in report["steps"]}
    assert statuses["venv"] == "changed" and statuses["comfyui"] == "changed"
    assert statuses["models"] == "skipped" and statuses["launch"] == "skipped"

    venv_python = "~/provision/venv/bin/python"
    versions = node.ssh(f"{venv_python} -c 'import torch, torchvision, torchaudio, kornia; "
                        f"print(torch.__version__, torchvision.__version__, torchaudio.__version__, "
                        f"kornia.__version__)'").stdout.split()
    # ComfyUI's requirements ask for kornia, whose newest release wants torch>=2.5.1: the
    # constraints file holds torch at its pin and pip settles on an older kornia.
    assert versions[:3] == ["2.3.1", "0.18.1", "2.3.1"]
    assert versions[3] != "0.9.0"
    assert node.ssh("git -C ~/provision/ComfyUI describe --tags").stdout.strip() == "v0.3.64"
    head = node.ssh("git -C ~/provision/ComfyUI/custom_nodes/ComfyUI-GGUF rev-parse HEAD").stdout.strip()
    assert head == stand_ins.gguf_ref
    assert node.ssh(f"{venv_python} -c 'import requests, gguf, sentencepiece'").returncode == 0
    state = json.loads(node.ssh("cat ~/provision/state/state.json").stdout)
    assert state["comfyui"]["ref"] == "v0.3.64" and state["torch"]["torch"] == "2.3.1"
    assert node.ssh("stat -c %a ~/provision/state/state.json").stdout.strip() == "600"

    before = node.connection_counts()
    again, report2 = up_json(node_yaml, laptop_home)
    after = node.connection_counts()
    assert again.returncode == 0, again.stderr
    assert report2["changed"] == 0
    assert {s["status"] for s in report2["steps"]} <= {"ok", "skipped"}
    assert after["connections"] - before["connections"] == 1
    assert after["exec"] - before["exec"] <= 8, after


def test_dry_run_changes_nothing_and_says_what_would(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="macos")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    before = listing(node)
    result = run_cli("up", node_yaml, "--dry-run", "--no-launch", "--no-models", home=laptop_home)
    assert result.returncode == 0, result.stderr
    assert listing(node) == before
    assert "would-change" in result.stdout and "not cloned yet" in result.stdout


def test_a_bad_ref_fails_naming_the_step_and_a_fixed_rerun_resumes(node_factory, laptop_home, tmp_path,
                                                                  stand_ins):
    node = node_factory(platform="linux")
    bad = stand_ins.node_fields(comfyui={"repo": str(stand_ins.comfyui_repo), "ref": "v9.9.9"})
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **bad)
    failed = run_cli("up", node_yaml, "--no-launch", "--no-models", home=laptop_home, timeout=300)
    assert failed.returncode == 1
    assert "step 'comfyui'" in failed.stderr or "step comfyui" in failed.stderr
    assert "v9.9.9" in failed.stderr and "re-run" in failed.stderr

    node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    result, report = up_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    statuses = {step["name"]: step["status"] for step in report["steps"]}
    assert statuses["torch"] == "ok", "work done before the failure is not redone"
    assert statuses["comfyui"] == "changed"


def test_changing_a_ref_moves_the_node_and_nothing_else(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="linux")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    assert up_json(node_yaml, laptop_home)[0].returncode == 0
    node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        comfyui={"repo": str(stand_ins.comfyui_repo), "ref": "v0.3.63"}))
    result, report = up_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    changed = [s["name"] for s in report["steps"] if s["status"] == "changed"]
    assert changed == ["comfyui"] or changed == ["comfyui", "comfyui-requirements"]
    assert node.ssh("git -C ~/provision/ComfyUI describe --tags").stdout.strip() == "v0.3.63"


def test_a_dirty_checkout_is_reported_never_reset(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="linux")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    assert up_json(node_yaml, laptop_home)[0].returncode == 0
    node.ssh("echo '# my edit' >> ~/provision/ComfyUI/main.py")
    result = run_cli("up", node_yaml, "--no-launch", "--no-models", home=laptop_home)
    assert result.returncode == 1
    assert "local changes" in result.stderr
    assert "# my edit" in node.ssh("tail -1 ~/provision/ComfyUI/main.py").stdout


def test_two_concurrent_ups_do_not_interleave(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="linux")
    # The first up holds the lock in a step that waits for ~/release: however fast the
    # installs are, the second up meets it running.
    hold = tmp_path / "hold.yaml"
    hold.write_text("steps:\n  - {name: hold, kind: command, after: workdir, unless: test -e ~/released,\n"
                    "     cmd: 'until [ -e ~/release ]; do sleep 0.1; done; touch ~/released'}\n")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", playbook=str(hold), **stand_ins.node_fields())
    first = subprocess.Popen([sys.executable, "-m", "provisioner", "up", str(node_yaml), "--no-launch",
                              "--no-models"], env=cli_env(laptop_home), cwd=laptop_home,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while node.ssh("test -d ~/provision/state/lock", check=False).returncode != 0:
            assert time.monotonic() < deadline and first.poll() is None, "first up never took the lock"
            time.sleep(0.1)
        second = run_cli("up", node_yaml, "--no-launch", "--no-models", "--lock-wait", "1",
                         home=laptop_home)
        assert second.returncode == 1
        assert "another provision run holds this node" in second.stderr
        assert "since" in second.stderr
        assert first.poll() is None, "the first up was still holding the lock"
    finally:
        node.ssh("touch ~/release")
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert node.ssh("test -d ~/provision/state/lock", check=False).returncode != 0, "lock released"


def test_a_stale_lock_of_a_dead_run_is_taken_over(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="linux")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    node.ssh("mkdir -p ~/provision/state/lock && echo 999999 > ~/provision/state/lock/pid && "
             "echo 'ghost@laptop since yesterday' > ~/provision/state/lock/info")
    result, report = up_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr


def test_hostile_values_reach_the_node_as_data_not_commands(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="linux")
    pwned = "/tmp/provision-pwned-" + node.name
    hostile = f"x$(touch {pwned})`touch {pwned}`;touch {pwned};'\"\\"
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        workdir=f"~/work {hostile}",
        comfyui={"repo": str(stand_ins.comfyui_repo), "ref": f"v0.3.64{hostile}"}))
    result = run_cli("up", node_yaml, "--no-launch", "--no-models", home=laptop_home, timeout=300)
    assert result.returncode == 1, "the hostile ref cannot exist"
    assert "step 'comfyui'" in result.stderr or "step comfyui" in result.stderr
    assert node.ssh(f"test -e {pwned}", check=False).returncode != 0, "a hostile value was executed"
    workdir = f"{node.home}/work {hostile}"
    assert node.ssh(f"test -d {shlex.quote(workdir + '/state')}", check=False).returncode == 0, \
        "the workdir was created under its literal name"
