"""`provision session`: up, hold the tunnel with a countdown, tear down at the deadline.

Each test brings the node up first (`up --no-tunnel`), so the session's own `up` is a quick
no-op re-run and most of `--for` is spent holding the tunnel.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.e2e.down_helpers import OUTPUT, local_files, node_files, node_yaml_for, up, write_outputs
from tests.e2e.launch_helpers import Held, listeners_of_node_user
from tests.harness.cli import run_cli

pytestmark = pytest.mark.e2e


def ready_node(node_factory, tmp_path, stand_ins, home):
    node = node_factory(platform="linux")
    node_yaml = node_yaml_for(node, tmp_path, stand_ins)
    up(node_yaml, home)
    write_outputs(node)
    return node, node_yaml


def finish(held: Held, timeout: float = 180) -> tuple[int, str, str]:
    out, err = held.process.communicate(timeout=timeout)
    return held.process.returncode, out, err


def assert_harvested(node, home, on_node) -> None:
    pulled = local_files(home / "outputs" / node.name / "output")
    for rel, (size, sha, mtime) in on_node.items():
        if not rel.startswith("_"):
            assert pulled[rel] == (size, sha, mtime), rel


def test_session_for_20s_tears_down_by_itself(node_factory, laptop_home, tmp_path, stand_ins):
    node, node_yaml = ready_node(node_factory, tmp_path, stand_ins, laptop_home)
    on_node = node_files(node, OUTPUT)
    started = time.monotonic()
    held = Held("session", node_yaml, "--for", "20s", "--no-models", "--warn", "10s", "--json",
                home=laptop_home)
    assert held.get_json("/system_stats")["system"]["comfyui_version"] == "0.3.64"
    code, out, err = finish(held)
    assert code == 0, err
    assert time.monotonic() - started >= 15, "it held the tunnel until the deadline"
    assert "warning: 10s left" in err
    report = json.loads(out[out.index("{"):])
    assert report["ended_by"] == "deadline" and not report["late"]
    assert report["down"]["harvest"]["ok"] and report["down"]["service"]["stopped"]
    assert_harvested(node, laptop_home, on_node)
    assert listeners_of_node_user(node) == []


def test_ctrl_c_without_a_terminal_harvests_and_tears_down(node_factory, laptop_home, tmp_path,
                                                         stand_ins):
    node, node_yaml = ready_node(node_factory, tmp_path, stand_ins, laptop_home)
    on_node = node_files(node, OUTPUT)
    held = Held("session", node_yaml, "--until", "23:59", "--no-models", "--wipe", "all",
                home=laptop_home)
    held.process.send_signal(signal.SIGINT)
    code, out, err = finish(held)
    assert code == 0, err
    assert "session over (interrupted)" in out
    assert_harvested(node, laptop_home, on_node)
    assert node.ssh("test -e ~/provision", check=False).returncode == 1, "wiped"


def test_a_deadline_passed_while_disconnected_tears_down_at_the_first_reconnect(
        node_factory, laptop_home, tmp_path, stand_ins):
    node, node_yaml = ready_node(node_factory, tmp_path, stand_ins, laptop_home)
    on_node = node_files(node, OUTPUT)
    held = Held("session", node_yaml, "--for", "25s", "--no-models", "--warn", "none", "--json",
                home=laptop_home)
    node.stop()  # the node drops off the network; ComfyUI keeps running on it
    deadline = time.monotonic() + 35
    while time.monotonic() < deadline and held.process.poll() is None:
        time.sleep(0.5)
    assert held.process.poll() is None, "it waits for the node instead of giving up"
    node.start()
    code, out, err = finish(held)
    assert code == 0, err
    assert "passed while the link to the node was down" in err
    report = json.loads(out[out.index("{"):])
    assert report["late"] and report["ended_by"] == "deadline"
    assert_harvested(node, laptop_home, on_node)
    assert listeners_of_node_user(node) == []


@pytest.mark.parametrize("args, message", [
    ([], "--until HH:MM or --for DURATION"),
    (["--until", "18:00", "--for", "1h"], "one of them"),
    (["--until", "25:00"], "--until: '25:00' is not a time of day"),
    (["--for", "3x"], "--for: '3x' is not a duration"),
    (["--for", "1h", "--warn", "soon"], "--warn: 'soon' is not a duration"),
    (["--for", "1h", "--wipe", "all", "--keep-outputs-remote"], "contradicts --wipe all"),
])
def test_bad_session_options_exit_2_naming_the_option(tmp_path, laptop_home, args, message):
    node_yaml = tmp_path / "n.yaml"
    node_yaml.write_text("host: 127.0.0.1\nport: 1\n")
    result = run_cli("session", node_yaml, *args, home=laptop_home)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) <= 2
