"""`provision up` to the end: ComfyUI launched, healthy, reached through the SSH tunnel;
then status, logs, restart and tunnel. Linux nodes run the supervised-process path."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.e2e.launch_helpers import Held, listeners_of_node_user
from tests.harness.cli import run_cli
from tests.harness.sshd import free_port

pytestmark = pytest.mark.e2e


def up(node_yaml, home, *extra, timeout=300):
    return run_cli("up", node_yaml, "--no-models", "--no-tunnel", *extra, home=home, timeout=timeout)


def comfy_pid(node) -> str:
    return node.ssh("cat ~/provision/state/run/comfyui.pid").stdout.strip()


def wait_for(predicate, timeout=30.0, interval=0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_up_launches_comfyui_and_holds_a_working_tunnel(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="linux")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        tunnel={"local_port": 18188, "remote_port": 8188}))
    held = Held("up", node_yaml, "--no-models", home=laptop_home)
    try:
        assert held.url == "http://127.0.0.1:18188"
        stats = held.get_json("/system_stats")
        assert stats["devices"][0]["type"] == "cpu"
        argv = stats["system"]["argv"]
        assert "--fp32-vae" in argv and "--fp32vae" not in argv
        assert argv[argv.index("--listen") + 1] == "127.0.0.1"
        addresses = listeners_of_node_user(node)
        assert addresses, "ComfyUI should be listening"
        assert all(address.startswith("127.0.0.1:") for address in addresses), addresses
    finally:
        code, out, err = held.stop()
    assert code == 0, err
    assert "ComfyUI ready: http://127.0.0.1:18188" in err

    again = up(node_yaml, laptop_home, "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["changed"] == 0
    statuses = {s["name"]: s["status"] for s in report["steps"]}
    assert statuses["launch"] == "ok" and statuses["health"] == "ok"


def test_a_changed_port_restarts_the_service(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="linux")
    old_port, new_port = free_port(), free_port()
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        tunnel={"remote_port": old_port}))
    assert up(node_yaml, laptop_home).returncode == 0
    first_pid = comfy_pid(node)
    node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(tunnel={"remote_port": new_port}))
    result = up(node_yaml, laptop_home, "--json")
    assert result.returncode == 0, result.stderr
    statuses = {s["name"]: s["status"] for s in json.loads(result.stdout)["steps"]}
    assert statuses["launch"] == "changed"
    assert comfy_pid(node) != first_pid
    addresses = listeners_of_node_user(node)
    assert f"127.0.0.1:{new_port}" in addresses and f"127.0.0.1:{old_port}" not in addresses


def test_a_crashed_comfyui_is_restarted_and_status_shows_it_healthy(node_factory, laptop_home, tmp_path,
                                                                   stand_ins):
    node = node_factory(platform="linux")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    assert up(node_yaml, laptop_home).returncode == 0
    old = comfy_pid(node)
    node.ssh(f"kill -9 {old}")
    wait_for(lambda: comfy_pid(node) not in ("", old))

    def healthy():
        result = run_cli("status", node_yaml, "--json", home=laptop_home)
        return result.returncode == 0 and json.loads(result.stdout)

    report = wait_for(healthy, timeout=40, interval=1)
    assert report["service"]["running"] and report["health"]["device"] == "cpu"
    assert report["memory"]["pressure"] in ("green", "yellow", "red")


def test_a_start_up_crash_loop_fails_with_the_traceback(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="linux")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        comfyui={"repo": str(stand_ins.comfyui_repo), "ref": "v0.3.64",
                 "env": {"FAKE_COMFYUI_CRASH": "1"}}))
    result = up(node_yaml, laptop_home)
    assert result.returncode == 1
    assert "crashed on start-up" in result.stderr and "Error" in result.stderr


def test_a_port_taken_on_the_node_is_named(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="linux")
    port = free_port()
    node.ssh(f"nohup python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 </dev/null &")
    wait_for(lambda: f"127.0.0.1:{port}" in listeners_of_node_user(node))
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        tunnel={"remote_port": port}))
    result = up(node_yaml, laptop_home)
    assert result.returncode == 1
    assert str(port) in result.stderr
    assert "already taken" in result.stderr or "another process holds the port" in result.stderr


def test_a_taken_local_port_moves_the_tunnel_to_the_next_one(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="linux")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        tunnel={"local_port": 18288}))
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 18288))
    blocker.listen(1)
    try:
        held = Held("up", node_yaml, "--no-models", home=laptop_home)
        try:
            assert held.url == "http://127.0.0.1:18289"
            assert held.get_json("/system_stats")["system"]["comfyui_version"] == "0.3.64"
        finally:
            code, _, err = held.stop()
        assert "18288 is taken" in err
        node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
            tunnel={"local_port": 18288, "pin_local_port": True}))
        pinned = run_cli("tunnel", node_yaml, home=laptop_home, timeout=60)
        assert pinned.returncode == 2 and "18288 is already in use" in pinned.stderr
    finally:
        blocker.close()


def test_the_tunnel_survives_the_ssh_connection_being_dropped(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="linux")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        tunnel={"local_port": 18388}))
    assert up(node_yaml, laptop_home).returncode == 0
    held = Held("tunnel", node_yaml, home=laptop_home)
    try:
        assert held.get_json("/system_stats")["devices"][0]["type"] == "cpu"
        # Kill the node-side sshd process of the tunnel's connection: the link drops.
        node.ssh("true")  # make sure our own ssh below is not the one that dies
        import subprocess

        subprocess.run(["pkill", "-KILL", "-u", node.user, "-f", "^sshd: "], check=False)

        def answers():
            try:
                return held.get_json("/system_stats", timeout=3)
            except OSError:
                return None

        stats = wait_for(answers, timeout=30, interval=0.5)
        assert stats["system"]["comfyui_version"] == "0.3.64"
    finally:
        code, _, err = held.stop()
    assert "reconnect" in err


def test_logs_and_restart(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="linux")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    assert up(node_yaml, laptop_home).returncode == 0
    logs = run_cli("logs", node_yaml, "-n", "50", home=laptop_home)
    assert logs.returncode == 0 and "To see the GUI go to" in logs.stdout
    old = comfy_pid(node)
    restarted = run_cli("restart", node_yaml, home=laptop_home, timeout=120)
    assert restarted.returncode == 0, restarted.stderr
    assert "healthy on cpu" in restarted.stdout
    assert comfy_pid(node) != old


def test_status_before_any_up_says_so(node_factory, laptop_home, tmp_path):
    node = node_factory(platform="linux")
    result = run_cli("status", node.write_node_yaml(tmp_path / "n.yaml"), home=laptop_home)
    assert result.returncode == 1
    assert "has not run here" in result.stdout
