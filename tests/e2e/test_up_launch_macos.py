"""`provision up` on an emulated Mac: ComfyUI as a LaunchAgent in the user/<uid> domain.

The macOS userland (launchctl, caffeinate, sysctl...) is emulated by tests/harness/fake_macos;
see its README for what is and is not real.
"""

from __future__ import annotations

import json
import plistlib
import time

import pytest

from tests.e2e.launch_helpers import Held, listeners_of_node_user
from tests.harness.cli import run_cli
from tests.harness.sshd import free_port

pytestmark = pytest.mark.e2e
LABEL = "dev.provision.comfyui"


def up(node_yaml, home, *extra, timeout=300):
    return run_cli("up", node_yaml, "--no-models", "--no-tunnel", *extra, home=home, timeout=timeout)


def test_up_on_a_mac_runs_a_launch_agent_on_mps_behind_the_tunnel(node_factory, laptop_home, tmp_path,
                                                                  stand_ins):
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        tunnel={"local_port": 18488}))
    held = Held("up", node_yaml, "--no-models", home=laptop_home)
    try:
        stats = held.get_json("/system_stats")
        assert stats["devices"][0]["type"] == "mps"
    finally:
        code, _, err = held.stop()
    assert code == 0, err

    plist_path = f"{node.home}/Library/LaunchAgents/{LABEL}.plist"
    plist = plistlib.loads(node.ssh(f"cat {plist_path}").stdout.encode())
    argv = plist["ProgramArguments"]
    assert "--fp32-vae" in argv and "--fp32vae" not in argv
    assert argv[argv.index("--listen") + 1] == "127.0.0.1"
    assert plist["EnvironmentVariables"]["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
    assert plist["KeepAlive"] is True and plist["LimitLoadToSessionType"] == "Background"
    assert plist["StandardOutPath"].startswith(f"{node.home}/provision/logs/")
    assert all(address.startswith("127.0.0.1:") for address in listeners_of_node_user(node))
    bootstraps = [call for call in node.launchctl_calls() if call["argv"][:1] == ["bootstrap"]]
    assert bootstraps and bootstraps[0]["argv"][1] == f"user/{node.uid}"
    assert any("-w" in " ".join(call["argv"]) for call in node.caffeinate_calls()), \
        "the node is kept awake while a run holds it"

    again = up(node_yaml, laptop_home, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["changed"] == 0
    calls = len(node.launchctl_calls())

    # KeepAlive: a crashed ComfyUI comes back by itself, with a new pid.
    old_pid = node.launchd_service(LABEL)["pid"]
    node.ssh(f"kill -9 {old_pid}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = node.launchd_service(LABEL) or {}
        if record.get("pid") not in (None, old_pid):
            break
        time.sleep(0.3)
    else:
        raise AssertionError("launchd did not restart ComfyUI")
    status = run_cli("status", node_yaml, "--json", home=laptop_home)
    for _ in range(20):
        if status.returncode == 0:
            break
        time.sleep(1)
        status = run_cli("status", node_yaml, "--json", home=laptop_home)
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert report["health"]["device"] == "mps" and report["memory"]["pressure"] == "green"
    assert len(node.launchctl_calls()) >= calls


def test_a_changed_port_rebootstraps_the_agent(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="macos")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    assert up(node_yaml, laptop_home).returncode == 0
    new_port = free_port()
    node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(tunnel={"remote_port": new_port}))
    result = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    verbs = [call["argv"][0] for call in node.launchctl_calls()]
    assert "bootout" in verbs and verbs.count("bootstrap") >= 2
    assert f"127.0.0.1:{new_port}" in listeners_of_node_user(node)


def test_a_mac_whose_comfyui_runs_on_cpu_fails_health_loudly(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="macos")
    node.launchd_env_set(FAKE_MACOS_MPS="0", FAKE_COMFYUI_DEVICE="cpu")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    result = up(node_yaml, laptop_home)
    assert result.returncode == 1
    assert "runs on 'cpu', expected 'mps'" in result.stderr
    assert "Metal" in result.stderr
