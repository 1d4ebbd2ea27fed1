"""The node reboots after `up` (issue 14, item 5): `status` says ComfyUI is not running and
why, and `up` or `restart` brings it back without reinstalling anything.

The reboot is the harness's emulation (``SshNode.reboot()``): every process of the node user
is killed, so the emulated launchd forgets the ``user/<uid>`` agent as a real Mac does until
someone logs in (FACTS.md "launchd over SSH"), and on a macOS node ``kern.boottime`` moves to
now. Files stay, as on a real disk. See tests/harness/fake_macos/README.md.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import HF_TOKEN
from tests.harness.cli import run_cli

pytestmark = pytest.mark.e2e
LABEL = "dev.provision.comfyui"
# The steps whose work is the service, not the install: only these may change after a reboot.
SERVICE_STEPS = {"launch", "health"}


def up_json(node_yaml, home, *extra, env=None):
    result = run_cli("up", node_yaml, "--no-tunnel", "--json", *extra, home=home, env=env,
                     timeout=600)
    text = result.stdout.strip()
    return result, json.loads(text) if text.startswith("{") else None


def status_json(node_yaml, home) -> tuple[int, dict]:
    result = run_cli("status", node_yaml, "--json", home=home)
    return result.returncode, json.loads(result.stdout)


def wait_until_healthy(node_yaml, home, timeout: float = 60) -> dict:
    """Poll `status --json` until ComfyUI is healthy; return that report (or fail with the last)."""
    deadline = time.monotonic() + timeout
    while True:
        code, report = status_json(node_yaml, home)
        if code == 0 and report["health"]["healthy"]:
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"ComfyUI not healthy within {timeout} s: {report}")
        time.sleep(0.5)


def steps(report) -> dict[str, str]:
    return {step["name"]: step["status"] for step in report["steps"]}


def assert_only_the_service_changed(report) -> None:
    done = steps(report)
    assert done["launch"] == "changed" and done["health"] in ("ok", "changed"), done
    assert {status for name, status in done.items() if name not in SERVICE_STEPS} <= \
        {"ok", "skipped"}, done
    assert report["changed"] == 1 + (done["health"] == "changed"), done


def assert_status_says_rebooted(node_yaml, home, booted: float, platform: str = "macos") -> dict:
    """`status` (human and --json) after the reboot: not running, because of the reboot."""
    human = run_cli("status", node_yaml, home=home)
    assert human.returncode == 1, human.stdout + human.stderr
    said = " ".join(human.stdout.replace("│", " ").split())
    assert "not running: the node rebooted at" in said, said
    assert "(after the last up at " in said and "login session" in said, said
    assert "provision up NODE.yaml" in said and "provision restart NODE.yaml" in said, said

    code, report = status_json(node_yaml, home)
    assert code == 1
    service = report["service"]
    assert (service["loaded"], service["running"], service["pid"]) == (False, False, None)
    assert service["reason"] == "rebooted" and "login session" in service["explanation"]
    assert abs(_epoch(report["booted_at"]) - booted) < 2
    assert report["last_up"]["booted_at"] < booted - 60
    assert not report["health"]["answering"]
    return report


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def bootstraps(node) -> int:
    return sum(call["argv"][:1] == ["bootstrap"] and call["exit"] == 0
               for call in node.launchctl_calls())


def test_after_a_reboot_status_says_why_and_up_starts_the_agent_again(
        node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    first, _ = up_json(node_yaml, laptop_home, "--no-models")
    assert first.returncode == 0, first.stderr
    code, before = status_json(node_yaml, laptop_home)
    assert code == 0 and before["service"]["reason"] is None
    assert before["last_up"]["booted_at"] == int(_epoch(before["booted_at"]))
    old_pid = before["service"]["pid"]

    booted = node.reboot()
    assert_status_says_rebooted(node_yaml, laptop_home, booted)
    # Every command that needs ComfyUI says the same, instead of a tunnel to nothing.
    for command in ("tunnel", "bench", "run"):
        result = run_cli(command, node_yaml, home=laptop_home, timeout=120)
        said = " ".join((result.stdout + result.stderr).replace("│", " ").split())
        assert result.returncode == 1, said
        assert "ComfyUI is not running on the node: the node rebooted at" in said, said
        assert "login session" in said and "provision restart NODE.yaml" in said, said

    calls = bootstraps(node)
    again, report = up_json(node_yaml, laptop_home, "--no-models")
    assert again.returncode == 0, again.stderr
    assert_only_the_service_changed(report)
    assert bootstraps(node) == calls + 1, "the agent is bootstrapped again"

    healthy = wait_until_healthy(node_yaml, laptop_home)
    assert healthy["health"]["device"] == "mps"
    assert healthy["service"]["running"] and healthy["service"]["pid"] != old_pid
    assert healthy["service"]["reason"] is None
    # The new up ran on the new boot: status no longer calls it a reboot since the last up.
    assert healthy["last_up"]["booted_at"] == int(booted)


def test_after_a_reboot_restart_starts_the_agent_again(node_factory, laptop_home, tmp_path,
                                                       stand_ins):
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    first, _ = up_json(node_yaml, laptop_home, "--no-models")
    assert first.returncode == 0, first.stderr

    booted = node.reboot()
    assert_status_says_rebooted(node_yaml, laptop_home, booted)
    calls = bootstraps(node)
    restarted = run_cli("restart", node_yaml, home=laptop_home, timeout=120)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "healthy on mps" in restarted.stdout
    assert bootstraps(node) == calls + 1
    healthy = wait_until_healthy(node_yaml, laptop_home)
    assert healthy["service"]["running"] and healthy["service"]["reason"] is None
    # restart installs nothing and writes no state: the record still names the old boot, but
    # a running service needs no reason.
    assert healthy["last_up"]["booted_at"] < booted - 60

    # A restart of a running agent is still an in-place kickstart, not a second bootstrap.
    old_pid = healthy["service"]["pid"]
    again = run_cli("restart", node_yaml, home=laptop_home, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert bootstraps(node) == calls + 1
    assert any(call["argv"][:2] == ["kickstart", "-k"] for call in node.launchctl_calls())
    assert wait_until_healthy(node_yaml, laptop_home)["service"]["pid"] != old_pid


def test_after_a_reboot_up_refetches_no_model_byte(node_factory, laptop_home, tmp_path,
                                                   stand_ins, hub):
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        hf={"endpoint": hub.url}, downloads={"retries": 1, "backoff_seconds": 0}))
    env = {"HF_TOKEN": HF_TOKEN}
    first, report = up_json(node_yaml, laptop_home, env=env)
    assert first.returncode == 0, first.stderr
    assert steps(report)["models"] == "changed"

    booted = node.reboot()
    assert_status_says_rebooted(node_yaml, laptop_home, booted)
    hub.clear_requests()
    again, report = up_json(node_yaml, laptop_home, env=env)
    assert again.returncode == 0, again.stderr
    assert_only_the_service_changed(report)
    assert steps(report)["models"] == "ok" and steps(report)["smoke"] == "ok"
    assert sum(request.bytes_sent for request in hub.requests if request.method == "GET") == 0
    healthy = wait_until_healthy(node_yaml, laptop_home)
    assert healthy["health"]["unets"], "the models are still there and listed"


def test_a_linux_node_whose_supervisor_died_says_so_and_up_or_restart_bring_it_back(
        node_factory, laptop_home, tmp_path, stand_ins):
    # A Linux node's boot time is this machine's (it does not move): what the emulated reboot
    # shows there is a supervisor that is gone, and up and restart must start a new one.
    node = node_factory(platform="linux")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    first, _ = up_json(node_yaml, laptop_home, "--no-models")
    assert first.returncode == 0, first.stderr

    node.reboot()
    code, report = status_json(node_yaml, laptop_home)
    assert code == 1
    service = report["service"]
    assert (service["loaded"], service["running"], service["reason"]) == (False, False, "stopped")
    assert "supervisor is not running" in service["explanation"]
    assert "provision up NODE.yaml" in service["explanation"]
    assert report["booted_at"] is not None

    again, report = up_json(node_yaml, laptop_home, "--no-models")
    assert again.returncode == 0, again.stderr
    assert_only_the_service_changed(report)
    pid = wait_until_healthy(node_yaml, laptop_home)["service"]["pid"]

    node.reboot()
    restarted = run_cli("restart", node_yaml, home=laptop_home, timeout=120)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "healthy on cpu" in restarted.stdout
    healthy = wait_until_healthy(node_yaml, laptop_home)
    assert healthy["service"]["running"] and healthy["service"]["pid"] != pid


def test_the_emulated_reboot_ends_every_process_and_moves_the_boot_time(node_factory):
    # The harness itself (SshNode.reboot, the sysctl shim): what the tests above stand on.
    import re

    node = node_factory(platform="macos")
    pattern = re.compile(r"^\{ sec = (\d+), usec = (\d+) \} \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$")
    before = pattern.match(node.ssh("sysctl -n kern.boottime").stdout.rstrip("\n"))
    assert before, "the real macOS format"
    assert node.ssh("sysctl kern.boottime").stdout.startswith("kern.boottime: { sec = ")
    node.ssh("nohup sleep 600 >/dev/null 2>&1 &")
    assert node.ssh("pgrep -u \"$(id -u)\" -x sleep", check=False).returncode == 0

    booted = node.reboot()
    after = pattern.match(node.ssh("sysctl -n kern.boottime").stdout.rstrip("\n"))
    assert int(before.group(1)) < int(after.group(1)) == int(booted)
    assert node.ssh("pgrep -u \"$(id -u)\" -x sleep", check=False).returncode == 1
    node.fake_macos_set(memory_gb=32)  # other values change; the boot time stays
    assert node.ssh("sysctl -n kern.boottime").stdout.startswith(f"{{ sec = {int(booted)},")
