"""`plan` and `up` on the Macs real providers hand out (issue 17, docs/providers.md).

Each node is a harness provider profile (tests/harness/fake_macos/profiles.py): a real sshd
whose sessions see the profile's /opt (Homebrew, MacPorts) and /usr/bin (the Command Line
Tools' stubs or Apple's 3.9 python3) in a private mount namespace. EMULATION: every Python a
profile has or Homebrew installs is this machine's own 3.11, so the runs that install one pin
`python: {version: "3.11"}` (on a real Mac `auto` asks for python@3.12 the same way), and
Homebrew's 3.13 is a stub that only answers --version. Every stub logs its calls: a test shows
`up` never ran one.
"""

from __future__ import annotations

import json
import plistlib
import re

import pytest

from tests.e2e.conftest import HF_TOKEN
from tests.harness import sshd
from tests.harness.cli import run_cli

pytestmark = pytest.mark.e2e
LABEL = "dev.provision.comfyui"
PIN_311 = {"python": {"version": "3.11"}}


@pytest.fixture
def provider(node_factory):
    """Start a node of a provider profile; skip (with the reason) where mount namespaces are
    not permitted."""
    reason = sshd.profiles_supported()
    if reason:
        pytest.skip(reason)

    def make(profile: str, **kw):
        return node_factory(platform="macos", memory_gb=64, profile=profile, **kw)

    return make


def plan_json(node_yaml, home):
    result = run_cli("plan", node_yaml, "--json", home=home)
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, report


def up_json(node_yaml, home, *extra, env=None):
    result = run_cli("up", node_yaml, "--no-tunnel", "--json", *extra, home=home, env=env,
                     timeout=600)
    text = result.stdout.strip()
    return result, json.loads(text) if text.startswith("{") else None


def described(report, name: str) -> str:
    return next(step["description"] for step in report["steps"] if step["name"] == name)


def statuses(report) -> dict[str, str]:
    return {step["name"]: step["status"] for step in report["steps"]}


def calls(node, tool: str) -> list[dict]:
    return [call for call in node.stub_calls() if call["tool"] == tool]


def venv_home(node) -> str:
    text = node.ssh(f"cat {node.home}/provision/venv/pyvenv.cfg").stdout
    return re.search(r"^home\s*=\s*(.+)$", text, re.M).group(1).strip()


def test_homebrew_with_only_python_3_13_gets_a_python_from_homebrew_and_a_full_up_works(
        provider, laptop_home, tmp_path, stand_ins, hub):
    node = provider("homebrew-3.13")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        hf={"endpoint": hub.url}, **PIN_311))
    result, plan = plan_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    found = {python["path"]: python["version"] for python in plan["facts"]["pythons"]}
    assert found.get("/opt/homebrew/bin/python3.13", "").startswith("3.13"), found
    assert described(plan, "python").endswith(
        "/opt/homebrew/opt/python@3.11/bin/python3.11 (brew install python@3.11)")
    assert described(plan, "git") == "git for the checkouts: /usr/bin/git"

    result, report = up_json(node_yaml, laptop_home, env={"HF_TOKEN": HF_TOKEN})
    assert result.returncode == 0, result.stderr
    assert report["ok"] and statuses(report)["python"] == "changed"
    assert report["first_image"]["ok"], report["first_image"]
    assert "/opt/homebrew/" in venv_home(node), "the venv is built on Homebrew's python@3.11"
    installs = [call["argv"] for call in calls(node, "brew") if call["argv"][:1] == ["install"]]
    assert installs == [["install", "python@3.11"]]
    # Homebrew's 3.13 was asked its version by the facts, and never used for anything else.
    assert {tuple(call["argv"]) for call in calls(node, "python-stub")} <= {("--version",)}

    again, report = up_json(node_yaml, laptop_home, env={"HF_TOKEN": HF_TOKEN})
    assert again.returncode == 0, again.stderr
    assert report["changed"] == 0, statuses(report)


def test_aws_without_command_line_tools_uses_homebrews_git_and_never_runs_the_stubs(
        provider, laptop_home, tmp_path, stand_ins, hub):
    node = provider("aws")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        hf={"endpoint": hub.url}, **PIN_311))
    result, plan = plan_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert not plan["facts"]["xcode_clt"] and plan["facts"]["git"] is None
    assert described(plan, "git") == "git for the checkouts: /opt/homebrew/bin/git (brew install git)"
    assert described(plan, "python").endswith("(brew install python@3.11)")

    result, report = up_json(node_yaml, laptop_home, env={"HF_TOKEN": HF_TOKEN})
    assert result.returncode == 0, result.stderr
    done = statuses(report)
    assert done["git"] == "changed" and done["comfyui"] == "changed" and done["smoke"] == "changed"
    installs = sorted(call["argv"][1] for call in calls(node, "brew") if call["argv"][:1] == ["install"])
    assert installs == ["git", "python@3.11"]
    assert calls(node, "clt-stub") == [], "a Command Line Tools stub was run (it opens a dialog)"
    head = node.ssh(f"/opt/homebrew/bin/git -C {node.home}/provision/ComfyUI rev-parse HEAD")
    assert head.returncode == 0 and len(head.stdout.strip()) == 40

    again, report = up_json(node_yaml, laptop_home, env={"HF_TOKEN": HF_TOKEN})
    assert again.returncode == 0, again.stderr
    assert report["changed"] == 0, statuses(report)
    assert calls(node, "clt-stub") == []


def test_scaleway_uses_macports_python_and_xcodes_git_without_homebrew(provider, laptop_home,
                                                                        tmp_path, stand_ins):
    node = provider("scaleway")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    result, plan = plan_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    facts = plan["facts"]
    assert facts["homebrew"] is None and facts["macports"] == "/opt/local/bin/port"
    assert described(plan, "python").endswith(": /opt/local/bin/python3.11")

    result, report = up_json(node_yaml, laptop_home, "--no-launch", "--no-models")
    assert result.returncode == 0, result.stderr
    done = statuses(report)
    assert done["python"] == "ok" and done["git"] == "ok" and done["comfyui"] == "changed"
    assert venv_home(node) == "/opt/local/bin"
    assert calls(node, "brew") == [] and calls(node, "clt-stub") == []


def test_scaleway_without_a_python_plans_uv_python_install(provider, laptop_home, tmp_path,
                                                           stand_ins):
    node = provider("scaleway-no-python")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    result, plan = plan_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert [python["version"] for python in plan["facts"]["pythons"]] == ["3.9.6"]
    assert described(plan, "python").endswith(
        f"{node.home}/provision/tools/bin/python3.12 (uv python install 3.12 (a managed build in "
        "the work folder))")


def test_a_bare_mac_is_refused_by_plan_and_up_before_anything_changes(provider, laptop_home,
                                                                      tmp_path, stand_ins):
    node = provider("bare")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    for command in (["plan"], ["up", "--no-tunnel"]):
        result = run_cli(*command, node_yaml, home=laptop_home, timeout=120)
        said = " ".join((result.stdout + result.stderr).split())
        assert result.returncode == 1, said
        assert "this Mac has no Python 3.10-3.12, no git, no Homebrew and no Command Line Tools" in said
        assert "nothing was changed" in said and "xcode-select --install" in said, said
    assert node.ssh(f"test -e {node.home}/provision", check=False).returncode != 0
    assert calls(node, "clt-stub") == []


def test_filevault_and_sleep_are_warned_about_by_plan_and_status(node_factory, laptop_home,
                                                                 tmp_path, stand_ins):
    node = node_factory(platform="macos", memory_gb=64,
                        fake_macos_values={"filevault": True, "sleep_minutes": 10})
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    result, plan = plan_json(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert (plan["facts"]["filevault"], plan["facts"]["sleep_minutes"]) == (True, 10)
    assert len(plan["node_warnings"]) == 2
    human = run_cli("plan", node_yaml, home=laptop_home)
    said = " ".join(human.stdout.split())
    assert "warning: FileVault is on" in said and "sudo pmset -a sleep 0" in said, said

    status = run_cli("status", node_yaml, "--json", home=laptop_home)
    assert json.loads(status.stdout)["node_warnings"] == plan["node_warnings"]

    node.fake_macos_set(filevault=False, sleep_minutes=0)
    result, plan = plan_json(node_yaml, laptop_home)
    assert plan["node_warnings"] == []


def test_the_launch_agent_gets_open_files_and_a_0644_plist_under_umask_000(
        node_factory, laptop_home, tmp_path, stand_ins):
    # sftp-server creates files with the session's umask; 000 would leave the plist
    # world-writable, which launchd refuses (error 5).
    node = node_factory(platform="macos", memory_gb=64,
                        sshd_options={"Subsystem": "sftp internal-sftp -u 000"})
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    result, report = up_json(node_yaml, laptop_home, "--no-models", "--no-smoke")
    assert result.returncode == 0, result.stderr
    plist_path = f"{node.home}/Library/LaunchAgents/{LABEL}.plist"
    mode_owner = node.ssh(f"stat -c '%a %u' {plist_path}").stdout.split()
    assert mode_owner == ["644", str(node.uid)]
    plist = plistlib.loads(node.ssh(f"cat {plist_path}").stdout.encode())
    assert plist["SoftResourceLimits"]["NumberOfFiles"] == 10240
    assert plist["HardResourceLimits"]["NumberOfFiles"] == 10240
    pid = node.launchd_service(LABEL)["pid"]
    limits = node.ssh(f"grep 'Max open files' /proc/{pid}/limits").stdout.split()
    assert limits[3:5] == ["10240", "10240"], limits


def test_a_bootstrap_refused_once_with_error_5_is_retried(node_factory, laptop_home, tmp_path,
                                                          stand_ins):
    node = node_factory(platform="macos", memory_gb=64,
                        fake_macos_values={"launchd_bootstrap_eio_once": True})
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields())
    result, report = up_json(node_yaml, laptop_home, "--no-models", "--no-smoke")
    assert result.returncode == 0, result.stderr
    assert statuses(report)["health"] == "changed"
    bootstraps = [call["exit"] for call in node.launchctl_calls() if call["argv"][:1] == ["bootstrap"]]
    assert bootstraps == [5, 0], bootstraps
