"""`provision fleet` end to end: several real sshd nodes on 127.0.0.1 at once.

Fake-macOS nodes of different memory sizes for plans; Linux nodes with the local stand-ins
for `fleet up` (the macOS launch path is exercised by test_up_launch). Every Linux node gets
its own ComfyUI port: the harness nodes share the machine's loopback.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.launch_helpers import listeners_of_node_user
from tests.harness.cli import cli_env, run_cli
from tests.harness.sshd import free_port

pytestmark = pytest.mark.e2e

RECAP = Path(".provision") / "last-fleet.json"


# -- helpers ------------------------------------------------------------------------------


def entry(node, **fields: Any) -> dict[str, Any]:
    """Return a fleet.yaml node mapping that reaches ``node`` (host key pinned)."""
    data: dict[str, Any] = {"name": node.name, "host": node.host, "port": node.port,
                            "user": node.user, "identity_file": str(node.client_key),
                            "host_key": node.host_key_fingerprint}
    for key, value in fields.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def write_fleet(path: Path, entries: list[dict], defaults: dict | None = None, **top: Any) -> Path:
    path.write_text(yaml.safe_dump({"defaults": defaults or {}, "nodes": entries, **top},
                                   sort_keys=False), encoding="utf-8")
    return path


def linux_fleet(tmp_path, nodes, stand_ins, name="fleet.yaml") -> Path:
    """A fleet of Linux nodes on the stand-ins, each ComfyUI on a port of its own."""
    entries = [entry(node, tunnel={"remote_port": free_port()}) for node in nodes]
    defaults = stand_ins.node_fields(tunnel={"local_port": free_port()})
    return write_fleet(tmp_path / name, entries, defaults)


def by_node(report: dict) -> dict[str, dict]:
    return {line["node"]: line for line in report["nodes"]}


def fleet_up(fleet_yaml, home, *extra, timeout=600):
    """Run `fleet up --no-models --no-tunnel --json` in ``home``; return (result, report)."""
    result = run_cli("fleet", "up", fleet_yaml, "--no-models", "--no-tunnel", "--json", *extra,
                     home=home, timeout=timeout)
    text = result.stdout.strip()
    return result, json.loads(text) if text.startswith("{") else None


def counts(nodes) -> dict[str, dict[str, int]]:
    return {node.name: node.connection_counts() for node in nodes}


def delta(before, after, key: str) -> dict[str, int]:
    return {name: after[name][key] - before[name][key] for name in before}


# -- plan ---------------------------------------------------------------------------------


def test_fleet_plan_sizes_every_node_from_its_own_memory(node_factory, laptop_home, tmp_path):
    nodes = [node_factory(platform="macos", memory_gb=gb, name=f"mac{gb}") for gb in (24, 48, 64)]
    fleet_yaml = write_fleet(tmp_path / "fleet.yaml", [entry(node) for node in nodes],
                             {"model": "dev"})
    before = counts(nodes)
    result = run_cli("fleet", "plan", fleet_yaml, "--json", home=laptop_home)
    assert result.returncode == 0, result.stderr
    after = counts(nodes)
    report = json.loads(result.stdout)
    assert report["command"] == "plan" and [line["node"] for line in report["nodes"]] == \
        ["mac24", "mac48", "mac64"]
    lines = by_node(report)
    chosen = {name: (line["report"]["facts"]["memory_bytes"] // 1024**3, line["report"]["plan"]["quality"])
              for name, line in lines.items()}
    assert chosen == {"mac24": (24, "q4"), "mac48": (48, "q8"), "mac64": (64, "q8")}
    assert lines["mac24"]["report"]["plan"]["verdict"] == "red"
    unets = {name: next(f["file"] for f in line["report"]["plan"]["files"] if f["role"] == "unet")
             for name, line in lines.items()}
    assert unets["mac24"] == "flux1-dev-Q4_K_S.gguf" and unets["mac64"] == "flux1-dev-Q8_0.gguf"
    assert delta(before, after, "connections") == {"mac24": 1, "mac48": 1, "mac64": 1}, \
        "one SSH connection per node"

    people = run_cli("fleet", "plan", fleet_yaml, home=laptop_home)
    assert people.returncode == 0, people.stderr
    for expected in ("mac24", "mac48", "mac64", "24 GB", "64 GB", "q4", "q8", "RED", "GREEN",
                     "3 of 3 node(s) ok"):
        assert expected in people.stdout, expected


# -- up -----------------------------------------------------------------------------------


def progress_lines(stderr: str) -> list[tuple[str, str]]:
    """The plain progress lines of a `--json` run: [(node, what)] in the order printed."""
    return [(line.partition(": ")[0], line.partition(": ")[2]) for line in stderr.splitlines()
            if line.startswith("lin") and ": " in line]


def test_fleet_up_runs_the_nodes_in_parallel(node_factory, laptop_home, tmp_path, stand_ins, capsys):
    nodes = [node_factory(platform="linux", name=f"lin{i}") for i in range(1, 4)]
    others = [node_factory(platform="linux", name=f"lin{i}") for i in range(4, 7)]
    fleet_yaml = linux_fleet(tmp_path, nodes, stand_ins)
    serial_yaml = linux_fleet(tmp_path, others, stand_ins, name="serial.yaml")
    started = time.monotonic()
    result, report = fleet_up(fleet_yaml, laptop_home)
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr + result.stdout
    lines = by_node(report)
    assert {name: line["status"] for name, line in lines.items()} == \
        {"lin1": "ok", "lin2": "ok", "lin3": "ok"}
    for line in lines.values():
        statuses = {step["name"]: step["status"] for step in line["report"]["steps"]}
        assert statuses["venv"] == "changed" and statuses["health"] == "changed"
        assert statuses["models"] == "skipped"
    # All at once: every node changed something before the first one was done.
    printed = progress_lines(result.stderr)
    first_done = next(i for i, (_, what) in enumerate(printed) if what.startswith("ok ("))
    assert {name for name, _ in printed[:first_done]} == {"lin1", "lin2", "lin3"}, printed
    ports = {e["name"]: e["tunnel"]["remote_port"] for e in yaml.safe_load(fleet_yaml.read_text())["nodes"]}
    for node in nodes:  # each node's own ComfyUI listens on its own port
        assert f"127.0.0.1:{ports[node.name]} " in node.ssh("ss -Hltn").stdout
    recap = json.loads((laptop_home / RECAP).read_text())
    assert recap["fleet"] == str(fleet_yaml.resolve())
    assert {name: line["status"] for name, line in recap["nodes"].items()} == \
        {"lin1": "ok", "lin2": "ok", "lin3": "ok"}

    # The same from empty on three other nodes, one after another.
    started = time.monotonic()
    serial, _ = fleet_up(serial_yaml, laptop_home, "--parallel", "1")
    serial_wall = time.monotonic() - started
    assert serial.returncode == 0, serial.stderr
    order = [name for name, _ in progress_lines(serial.stderr)]
    assert [name for i, name in enumerate(order) if i == 0 or order[i - 1] != name] == \
        ["lin4", "lin5", "lin6"], "one node after the other"

    # No-op re-runs, all at once and one after another.
    started = time.monotonic()
    again, again_report = fleet_up(fleet_yaml, laptop_home)
    noop_parallel = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    assert all(line["report"]["changed"] == 0 for line in again_report["nodes"])
    started = time.monotonic()
    noop, _ = fleet_up(fleet_yaml, laptop_home, "--parallel", "1")
    noop_serial = time.monotonic() - started
    assert noop.returncode == 0, noop.stderr
    with capsys.disabled():
        print(f"\n[fleet up, 3 Linux loopback nodes] from empty: all at once {wall:.1f}s, one after "
              f"another {serial_wall:.1f}s (ratio {wall / serial_wall:.2f}); no-op: all at once "
              f"{noop_parallel:.2f}s, one after another {noop_serial:.2f}s "
              f"(ratio {noop_parallel / noop_serial:.2f})")


def test_a_node_that_is_down_fails_alone_and_retry_failed_redoes_only_it(
        node_factory, laptop_home, tmp_path, stand_ins):
    nodes = [node_factory(platform="linux", name=f"lin{i}") for i in range(1, 4)]
    fleet_yaml = linux_fleet(tmp_path, nodes, stand_ins)
    down = nodes[1]
    down.stop()
    result, report = fleet_up(fleet_yaml, laptop_home, "--no-launch")
    assert result.returncode == 1, result.stderr
    lines = by_node(report)
    assert {name: line["status"] for name, line in lines.items()} == \
        {"lin1": "ok", "lin2": "failed", "lin3": "ok"}
    assert "connection refused" in lines["lin2"]["error"]
    assert lines["lin1"]["report"]["changed"] > 0
    recap = json.loads((laptop_home / RECAP).read_text())
    assert recap["nodes"]["lin2"]["status"] == "failed"

    down.start()
    before = counts(nodes)
    retried = run_cli("fleet", "up", fleet_yaml, "--no-models", "--no-tunnel", "--no-launch",
                      "--retry-failed", home=laptop_home, timeout=600)
    after = counts(nodes)
    assert retried.returncode == 0, retried.stderr + retried.stdout
    assert delta(before, after, "connections") == {"lin1": 0, "lin2": 1, "lin3": 0}
    assert "lin2" in retried.stdout and "1 of 1 node(s) ok" in retried.stdout
    assert "lin1" not in retried.stdout
    recap = json.loads((laptop_home / RECAP).read_text())
    assert {name: line["status"] for name, line in recap["nodes"].items()} == \
        {"lin1": "ok", "lin2": "ok", "lin3": "ok"}

    nothing = run_cli("fleet", "up", fleet_yaml, "--no-models", "--no-tunnel", "--retry-failed",
                      home=laptop_home)
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing to retry" in nothing.stderr


def test_the_recap_for_people_names_the_failure_and_exits_1(node_factory, laptop_home, tmp_path,
                                                           stand_ins):
    nodes = [node_factory(platform="macos", memory_gb=64, name=f"mac{i}") for i in range(1, 3)]
    fleet_yaml = write_fleet(tmp_path / "fleet.yaml", [entry(node) for node in nodes],
                             stand_ins.node_fields())
    nodes[0].stop()
    result = run_cli("fleet", "up", fleet_yaml, "--no-launch", "--no-models", "--no-tunnel",
                     home=laptop_home, timeout=600)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "Fleet recap" in out and "1 of 2 node(s) ok" in out and "1 failed" in out
    failed_row = next(line for line in out.splitlines() if "mac1" in line and "failed" in line)
    assert "connection refused" in failed_row
    assert "mac1: failed" in out, "plain progress lines name the failed node"
    assert "Traceback" not in result.stderr


def test_fail_fast_starts_no_node_after_the_first_failure(node_factory, laptop_home, tmp_path):
    nodes = [node_factory(platform="macos", memory_gb=64, name=f"mac{i}") for i in range(1, 4)]
    fleet_yaml = write_fleet(tmp_path / "fleet.yaml", [entry(node) for node in nodes])
    nodes[0].stop()
    before = counts(nodes)
    result, report = fleet_up(fleet_yaml, laptop_home, "--no-launch", "--fail-fast")
    after = counts(nodes)
    assert result.returncode == 1
    assert {name: line["status"] for name, line in by_node(report).items()} == \
        {"mac1": "failed", "mac2": "skipped", "mac3": "skipped"}
    assert "--fail-fast" in by_node(report)["mac2"]["error"]
    assert delta(before, after, "exec") == {"mac1": 0, "mac2": 0, "mac3": 0}, "nothing ran"


LIGHT = ["python", "venv", "constraints", "torch", "comfyui", "comfyui-requirements", "gguf-node",
         "gguf-requirements", "models", "launch", "health"]


def test_a_node_past_its_timeout_is_cut_off_and_the_others_finish(node_factory, laptop_home, tmp_path):
    nodes = [node_factory(platform="macos", memory_gb=64, name=f"mac{i}") for i in range(1, 4)]
    light = tmp_path / "light.yaml"
    light.write_text(yaml.safe_dump({"skip": LIGHT, "steps": []}))
    stuck = tmp_path / "stuck.yaml"
    stuck.write_text(yaml.safe_dump({"skip": LIGHT, "steps": [
        {"name": "stuck", "kind": "command", "after": "workdir", "cmd": "sleep 300",
         "creates": "/nonexistent/never"}]}))
    entries = [entry(node, playbook=str(stuck if node is nodes[1] else light)) for node in nodes]
    fleet_yaml = write_fleet(tmp_path / "fleet.yaml", entries)
    result, report = fleet_up(fleet_yaml, laptop_home, "--no-launch", "--timeout", "8", timeout=120)
    assert result.returncode == 1, result.stderr
    lines = by_node(report)
    assert lines["mac1"]["status"] == "ok", lines["mac1"]
    assert {name: line["status"] for name, line in lines.items()} == \
        {"mac1": "ok", "mac2": "failed", "mac3": "ok"}
    assert "timed out after 8 s" in lines["mac2"]["error"]
    assert "--retry-failed" in lines["mac2"]["hint"]
    assert json.loads((laptop_home / RECAP).read_text())["nodes"]["mac2"]["status"] == "failed"


# -- host keys, config --------------------------------------------------------------------


def test_unknown_host_keys_are_refused_together_before_anything_runs(node_factory, laptop_home, tmp_path):
    nodes = [node_factory(platform="macos", memory_gb=gb, name=f"mac{gb}") for gb in (24, 48, 64)]
    unknown = nodes[:2]
    entries = [entry(node, host_key=None) if node in unknown else entry(node) for node in nodes]
    fleet_yaml = write_fleet(tmp_path / "fleet.yaml", entries)
    before = counts(nodes)
    refused = run_cli("fleet", "plan", fleet_yaml, home=laptop_home)
    after = counts(nodes)
    assert refused.returncode == 3, refused.stderr
    error = refused.stderr
    assert error.count("error:") == 1, "one combined refusal"
    assert "unknown host keys on 2 nodes" in error
    for node in unknown:
        assert node.name in error and node.host_key_fingerprint in error
    assert "mac64" not in error.split("hint:")[0]
    assert "--accept-new-host-key" in error
    assert delta(before, after, "exec") == {"mac24": 0, "mac48": 0, "mac64": 0}
    assert not (laptop_home / ".config" / "provision" / "known_hosts").exists()

    accepted = run_cli("fleet", "plan", fleet_yaml, "--json", "--accept-new-host-key", home=laptop_home)
    assert accepted.returncode == 0, accepted.stderr
    recorded = (laptop_home / ".config" / "provision" / "known_hosts").read_text()
    assert all(f"[127.0.0.1]:{node.port}" in recorded for node in unknown)
    assert run_cli("fleet", "plan", fleet_yaml, home=laptop_home).returncode == 0


@pytest.mark.parametrize("change,names", [
    ({"name": "twin"}, ("nodes[0]", "nodes[1]")),
    ({"tunnel": {"local_port": 18400}}, ("a", "b")),
])
def test_duplicate_names_or_local_ports_are_a_config_error_naming_both(laptop_home, tmp_path,
                                                                       change, names):
    key = tmp_path / "key"
    key.write_text("not used: config errors come before any connection\n")
    entries = [dict({"name": "a", "host": "192.0.2.1", "identity_file": str(key)}, **change),
               dict({"name": "b", "host": "192.0.2.2", "identity_file": str(key)}, **change)]
    fleet_yaml = write_fleet(tmp_path / "fleet.yaml", entries)
    result = run_cli("fleet", "plan", fleet_yaml, home=laptop_home)
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert str(fleet_yaml) in first
    for name in names:
        assert name in first
    assert ("name" in first) if "name" in change else ("tunnel.local_port 18400" in first)


# -- tunnels, status ----------------------------------------------------------------------


class HeldFleet:
    """A `fleet up`/`fleet tunnel` process holding tunnels; ``urls`` from its stdout lines."""

    def __init__(self, *args: str, home: Path, count: int, timeout: float = 600) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "provisioner", *map(str, args)],
                                        env=cli_env(home), cwd=home, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.urls: dict[str, str] = {}
        self.read: list[str] = []
        deadline = time.monotonic() + timeout
        while len(self.urls) < count and time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.read.append(line)
            name, _, url = line.strip().partition(" ")
            if url.startswith("http://127.0.0.1:"):
                self.urls[name] = url
        if len(self.urls) < count:
            self.process.kill()
            out, err = self.process.communicate()
            raise AssertionError(f"only {self.urls}; exit {self.process.returncode}\n{out}\n{err}")

    def stop(self) -> tuple[int, str, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=30)
        return self.process.returncode, "".join(self.read) + out, err


def system_stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/system_stats", timeout=10) as response:
        return json.loads(response.read())


def test_fleet_up_holds_one_tunnel_per_healthy_node_and_fleet_tunnel_reopens_them(
        node_factory, laptop_home, tmp_path, stand_ins):
    nodes = [node_factory(platform="linux", name=f"lin{i}") for i in range(1, 3)]
    fleet_yaml = linux_fleet(tmp_path, nodes, stand_ins)
    remote_ports = {e["name"]: e["tunnel"]["remote_port"]
                    for e in yaml.safe_load(fleet_yaml.read_text())["nodes"]}
    held = HeldFleet("fleet", "up", fleet_yaml, "--no-models", home=laptop_home, count=2)
    try:
        assert len(set(held.urls.values())) == 2, "each node on its own local port"
        for name, url in held.urls.items():
            argv = system_stats(url)["system"]["argv"]
            assert argv[argv.index("--port") + 1] == str(remote_ports[name])
    finally:
        code, out, err = held.stop()
    assert code == 0, err
    assert "Fleet recap" in out and "tunnel(s) closed" in err

    status = run_cli("fleet", "status", fleet_yaml, "--json", home=laptop_home)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert all(line["report"]["health"]["healthy"] for line in report["nodes"])

    reopened = HeldFleet("fleet", "tunnel", fleet_yaml, home=laptop_home, count=2)
    try:
        for name, url in reopened.urls.items():
            argv = system_stats(url)["system"]["argv"]
            assert argv[argv.index("--port") + 1] == str(remote_ports[name])
    finally:
        code, _, err = reopened.stop()
    assert code == 0, err


# -- inventory ----------------------------------------------------------------------------


def test_inventory_is_ansible_yaml_with_every_host(node_factory, laptop_home, tmp_path):
    nodes = [node_factory(platform="macos", name=f"mac{i}") for i in range(1, 4)]
    entries = [entry(node) for node in nodes]
    entries[2].pop("identity_file")
    fleet_yaml = write_fleet(tmp_path / "fleet.yaml", entries, {"user": "ignored-by-nodes"})
    result = run_cli("fleet", "inventory", fleet_yaml, home=laptop_home)
    assert result.returncode == 0, result.stderr
    inventory = yaml.safe_load(result.stdout)
    hosts = inventory["all"]["hosts"]
    assert list(hosts) == ["mac1", "mac2", "mac3"]
    for node in nodes:
        assert hosts[node.name]["ansible_host"] == "127.0.0.1"
        assert hosts[node.name]["ansible_port"] == node.port
        assert hosts[node.name]["ansible_user"] == node.user
    assert hosts["mac1"]["ansible_ssh_private_key_file"] == str(nodes[0].client_key)
    assert "ansible_ssh_private_key_file" not in hosts["mac3"]
    # The inventory works with OpenSSH as Ansible would use it.
    mac1 = hosts["mac1"]
    probe = subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={nodes[0].known_hosts}",
         "-i", mac1["ansible_ssh_private_key_file"], "-p", str(mac1["ansible_port"]),
         "-l", mac1["ansible_user"], mac1["ansible_host"], "echo reached"],
        capture_output=True, text=True, timeout=30, env=cli_env(laptop_home))
    assert probe.stdout.strip() == "reached", probe.stderr


# -- bench, down, session -----------------------------------------------------------------


def place_planned_models(node, files) -> None:
    """The fake ComfyUI only checks that the plan's model files exist and are not empty."""
    commands = []
    for item in files:
        folder = f"provision/ComfyUI/models/{item['folder']}"
        name = item["file"].rsplit("/", 1)[-1]
        commands.append(f"mkdir -p {folder} && printf 'stand-in model\\n' > {folder}/{name}")
    node.ssh(" && ".join(commands))


def test_fleet_bench_is_one_table_and_fleet_down_harvests_every_node_into_its_own_folder(
        node_factory, laptop_home, tmp_path, stand_ins):
    nodes = [node_factory(platform="linux", name=f"lin{i}") for i in range(1, 4)]
    fleet_yaml = linux_fleet(tmp_path, nodes, stand_ins)
    result, _ = fleet_up(fleet_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    plans = run_cli("fleet", "plan", fleet_yaml, "--json", home=laptop_home)
    assert plans.returncode == 0, plans.stderr
    for node, line in zip(nodes, json.loads(plans.stdout)["nodes"]):
        place_planned_models(node, line["report"]["plan"]["files"])
        node.ssh(f"cd provision/ComfyUI/output && printf '{node.name}' > only-on-{node.name}.png")

    bench = run_cli("fleet", "bench", fleet_yaml, "--runs", "1", "--steps", "2", "--json",
                    home=laptop_home, timeout=600)
    assert bench.returncode == 0, bench.stderr
    benches = by_node(json.loads(bench.stdout))
    assert {name: (line["status"], line["report"]["summary"]["runs"]) for name, line in benches.items()} \
        == {"lin1": ("ok", 1), "lin2": ("ok", 1), "lin3": ("ok", 1)}
    with open(laptop_home / ".config" / "provision" / "bench-history.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["node"] for row in rows) == ["lin1", "lin2", "lin3"]
    table = run_cli("fleet", "bench", fleet_yaml, "--runs", "1", "--steps", "2",
                    home=laptop_home, timeout=600)
    assert table.returncode == 0, table.stderr
    assert "Fleet bench" in table.stdout and all(n.name in table.stdout for n in nodes)

    down = run_cli("fleet", "down", fleet_yaml, "--json", home=laptop_home, timeout=600)
    assert down.returncode == 0, down.stderr
    downs = by_node(json.loads(down.stdout))
    for node in nodes:
        folder = laptop_home / "outputs" / node.name
        assert downs[node.name]["status"] == "ok"
        dest = Path(downs[node.name]["report"]["harvest"]["dest"])
        assert (laptop_home / dest).resolve() == folder.resolve()  # relative to where we ran
        harvested = {p.name for p in (folder / "output").rglob("*.png")}
        assert f"only-on-{node.name}.png" in harvested
        assert not any(f"only-on-{other.name}.png" in harvested for other in nodes if other is not node)
        assert (folder / "output" / f"only-on-{node.name}.png").read_text() == node.name
        assert downs[node.name]["report"]["service"]["stopped"]


def test_fleet_session_holds_the_tunnels_then_harvests_and_tears_every_node_down(
        node_factory, laptop_home, tmp_path, stand_ins):
    nodes = [node_factory(platform="linux", name=f"lin{i}") for i in range(1, 3)]
    fleet_yaml = linux_fleet(tmp_path, nodes, stand_ins)
    held = HeldFleet("fleet", "session", fleet_yaml, "--for", "10m", "--warn", "none", "--no-models",
                     "--json", home=laptop_home, count=2)
    try:
        for url in held.urls.values():
            assert system_stats(url)["devices"][0]["type"] == "cpu"
        for node in nodes:
            node.ssh(f"printf x > provision/ComfyUI/output/{node.name}-image.png")
    finally:
        code, out, err = held.stop()  # Ctrl-C without a terminal: harvest and tear down now
    assert code == 0, err
    report = json.loads(out[out.index("{"):])
    assert report["command"] == "session"
    for line in report["nodes"]:
        assert line["status"] == "ok", line
        assert line["report"]["ended_by"] == "interrupt" and line["url"] == held.urls[line["node"]]
        assert line["report"]["down"]["service"]["stopped"]
    for node in nodes:
        assert (laptop_home / "outputs" / node.name / "output" / f"{node.name}-image.png").read_text() == "x"
        assert listeners_of_node_user(node) == []
