"""`provision plan` end to end: the real CLI against real sshd nodes on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from tests.harness.cli import run_cli

pytestmark = pytest.mark.e2e


def plan_json(node, tmp_path, home, *extra, **fields):
    node_yaml = node.write_node_yaml(tmp_path / f"{node.name}.yaml", **fields)
    result = run_cli("plan", node_yaml, "--json", *extra, home=home)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("memory_gb,quality,verdict", [
    (16, "q4", "red"), (24, "q4", "red"), (32, "q4", "yellow"), (48, "q8", "green"),
    (64, "q8", "green"), (128, "q8", "green"),
])
def test_plan_sizes_each_fake_mac_from_its_own_facts(node_factory, laptop_home, tmp_path,
                                                     memory_gb, quality, verdict):
    node = node_factory(platform="macos", memory_gb=memory_gb)
    report = plan_json(node, tmp_path, laptop_home)
    facts, plan = report["facts"], report["plan"]
    assert report["facts_source"] == "node"
    assert facts["platform"] == "macos" and facts["os_name"] == "macOS"
    assert facts["memory_bytes"] == memory_gb * 1024**3
    assert facts["chip"] == "Apple M4 Pro"
    assert facts["disk_free_bytes"] > 0
    assert any(p["version"].startswith("3.11") for p in facts["pythons"])
    assert (plan["quality"], plan["verdict"]) == (quality, verdict)
    assert [step["name"] for step in report["steps"]][:5] == ["workdir", "python", "models", "git",
                                                               "venv"]


def test_plan_on_a_linux_node(node_factory, laptop_home, tmp_path):
    node = node_factory(platform="linux", memory_gb=64)
    report = plan_json(node, tmp_path, laptop_home)
    assert report["facts"]["platform"] == "linux"
    assert report["facts"]["memory_bytes"] > 0
    assert report["plan"]["budget_source"]


def test_plan_costs_one_connection_and_at_most_two_round_trips(node_factory, laptop_home, tmp_path):
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = node.write_node_yaml(tmp_path / "node.yaml")
    before = node.connection_counts()
    result = run_cli("plan", node_yaml, home=laptop_home)
    assert result.returncode == 0, result.stderr
    after = node.connection_counts()
    assert after["connections"] - before["connections"] == 1
    assert after["exec"] - before["exec"] <= 2
    assert after["sftp"] - before["sftp"] == 0


def test_plan_for_people_shows_facts_models_memory_disk_and_steps(node_factory, laptop_home, tmp_path):
    node = node_factory(platform="macos", memory_gb=16)
    result = run_cli("plan", node.write_node_yaml(tmp_path / "n.yaml"), home=laptop_home)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ("macOS 15.5", "Apple M4 Pro", "16 GB unified", "flux1-dev-Q4_K_S.gguf",
                     "t5-v1_1-xxl-encoder-Q4_K_M.gguf", "RED", "disk:", "gguf-node"):
        assert expected in out, expected


def test_pinned_host_key_mismatch_is_refused(node_factory, laptop_home, tmp_path):
    node = node_factory(platform="macos")
    wrong = "SHA256:" + "A" * 43
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", host_key=wrong)
    result = run_cli("plan", node_yaml, home=laptop_home)
    assert result.returncode == 3
    assert "HOST KEY MISMATCH" in result.stderr and node.host_key_fingerprint in result.stderr


def test_unknown_host_key_is_refused_then_accepted_with_the_flag(node_factory, laptop_home, tmp_path):
    node = node_factory(platform="macos")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", host_key=None)
    refused = run_cli("plan", node_yaml, home=laptop_home)
    assert refused.returncode == 3
    assert "unknown host key" in refused.stderr
    assert node.host_key_fingerprint in refused.stderr
    assert "--accept-new-host-key" in refused.stderr
    assert not (laptop_home / ".config" / "provision" / "known_hosts").exists()

    accepted = run_cli("plan", node_yaml, "--accept-new-host-key", home=laptop_home)
    assert accepted.returncode == 0, accepted.stderr
    recorded = (laptop_home / ".config" / "provision" / "known_hosts").read_text()
    assert f"[127.0.0.1]:{node.port}" in recorded

    again = run_cli("plan", node_yaml, home=laptop_home)
    assert again.returncode == 0, again.stderr


def test_known_hosts_of_the_user_is_honoured_and_a_changed_key_refused(node_factory, laptop_home, tmp_path):
    node = node_factory(platform="macos")
    other = node_factory(platform="macos")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", host_key=None)
    known = laptop_home / ".ssh" / "known_hosts"
    known.write_text(node.known_hosts_line + "\n")
    assert run_cli("plan", node_yaml, home=laptop_home).returncode == 0

    # The same name now maps to another key: refused loudly, even with the accept flag.
    known.write_text(other.known_hosts_line.replace(f":{other.port}", f":{node.port}") + "\n")
    changed = run_cli("plan", node_yaml, "--accept-new-host-key", home=laptop_home)
    assert changed.returncode == 3
    assert "HOST KEY CHANGED" in changed.stderr


def test_auth_failure_is_one_clear_line(node_factory, laptop_home, tmp_path):
    node = node_factory(platform="macos")
    stranger = node_factory(platform="macos")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", identity_file=str(stranger.client_key))
    result = run_cli("plan", node_yaml, home=laptop_home)
    assert result.returncode == 3
    assert "authentication failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_port_is_refused_cleanly(node_factory, laptop_home, tmp_path):
    node = node_factory(platform="macos")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml")
    node.stop()
    result = run_cli("plan", node_yaml, home=laptop_home)
    assert result.returncode == 3
    assert "connection refused" in result.stderr
    assert "Traceback" not in result.stderr


def test_encrypted_key_without_agent_says_how_to_fix(node_factory, laptop_home, tmp_path):
    import subprocess

    node = node_factory(platform="macos")
    key = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret-pass", "-f", str(key)], check=True)
    result = run_cli("plan", node.write_node_yaml(tmp_path / "n.yaml", identity_file=str(key)),
                     home=laptop_home)
    assert result.returncode == 3
    assert "encrypted" in result.stderr and "ssh-add" in result.stderr


def test_offline_plan_needs_no_node(laptop_home, tmp_path):
    node_yaml = tmp_path / "n.yaml"
    node_yaml.write_text("host: 192.0.2.1\nport: 1\n")
    result = run_cli("plan", node_yaml, "--memory", "16GB", "--json", home=laptop_home)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["facts_source"] == "assumed"
    assert report["plan"]["quality"] == "q4" and report["plan"]["verdict"] == "red"


def test_bad_memory_flag_is_exit_2(laptop_home, tmp_path):
    node_yaml = tmp_path / "n.yaml"
    node_yaml.write_text("host: h\n")
    result = run_cli("plan", node_yaml, "--memory", "lots", home=laptop_home)
    assert result.returncode == 2
    assert "--memory" in result.stderr


def test_eight_gb_is_refused_with_the_numbers(laptop_home, tmp_path):
    node_yaml = tmp_path / "n.yaml"
    node_yaml.write_text("host: h\n")
    result = run_cli("plan", node_yaml, "--memory", "8GB", home=laptop_home)
    assert result.returncode == 1
    assert "need" in result.stderr and "GB" in result.stderr
    assert "at least 15.44 GB of memory (a 16 GB Mac or larger" in result.stderr
