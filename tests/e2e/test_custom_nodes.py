"""node.yaml `custom_nodes:` on real sshd nodes: each a checkout in ComfyUI/custom_nodes, its
requirements.txt installed under the constraints (or none), and the running ComfyUI restarted
so that its classes answer on `/object_info/<Class>`; a re-run changes nothing."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.harness.cli import run_cli
from tests.harness.fake_comfyui.builder import build_custom_node_repo
from tests.harness.sshd import free_port

pytestmark = pytest.mark.e2e

VENV_PYTHON = "~/provision/venv/bin/python"
CUSTOM_NODES = "~/provision/ComfyUI/custom_nodes"


def up(node_yaml, home, timeout=300):
    """Run `provision up --no-models --no-tunnel --json`; return (result, report)."""
    result = run_cli("up", node_yaml, "--no-models", "--no-tunnel", "--json", home=home,
                     timeout=timeout)
    assert result.stdout.strip().startswith("{"), result.stderr
    return result, json.loads(result.stdout)


def steps(report) -> dict[str, dict]:
    return {step["name"]: step for step in report["steps"]}


def object_info(port: int, name: str) -> dict:
    """Ask the node's ComfyUI (it listens on this machine's loopback) about one class."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info/{name}", timeout=10) as response:
        return json.loads(response.read())


def comfy_pid(node) -> str:
    return node.ssh("cat ~/provision/state/run/comfyui.pid").stdout.strip()


def head_of(node, folder: str) -> str:
    return node.ssh(f"git -C {CUSTOM_NODES}/{folder} rev-parse HEAD").stdout.strip()


def tag_commit(repo, tag: str) -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(repo), "rev-parse", f"{tag}^{{commit}}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_plan_shows_the_custom_node_steps(laptop_home, tmp_path):
    node_yaml = tmp_path / "n.yaml"
    node_yaml.write_text("host: 203.0.113.10\ncustom_nodes:\n"
                         "  - {repo: https://github.com/kijai/ComfyUI-KJNodes.git, ref: v1.0.5}\n")
    result = run_cli("plan", node_yaml, "--memory", "64GB", "--json", home=laptop_home)
    assert result.returncode == 0, result.stderr
    shown = {s["name"]: s["description"] for s in json.loads(result.stdout)["steps"]}
    assert shown["custom-node:ComfyUI-KJNodes"] == "custom node ComfyUI-KJNodes at v1.0.5"
    assert shown["custom-node-requirements:ComfyUI-KJNodes"].startswith(
        "ComfyUI-KJNodes's requirements.txt if it has one, torch held")


def test_custom_nodes_are_installed_with_their_requirements_and_their_classes_load(
        node_factory, laptop_home, tmp_path, stand_ins, shared_tmp):
    tools = build_custom_node_repo(shared_tmp / "StandIn-Tools.git", class_name="StandInTools",
                                   requirements=("filelock",))
    plain = build_custom_node_repo(shared_tmp / "plain", class_name="StandInPlain")
    port = free_port()
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        tunnel={"remote_port": port},
        custom_nodes=[{"repo": str(tools), "ref": "v1"},
                      {"repo": str(plain), "ref": "v2", "name": "my-plain"}]))
    result, report = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    found = steps(report)
    assert found["custom-node:StandIn-Tools"]["status"] == "changed"
    assert found["custom-node:my-plain"]["status"] == "changed"
    assert found["custom-node-requirements:StandIn-Tools"]["status"] == "changed"
    # No requirements.txt in that checkout: nothing to install, and no failure.
    assert found["custom-node-requirements:my-plain"]["status"] == "ok"
    assert found["launch"]["status"] == "changed" and found["health"]["status"] == "changed"

    assert head_of(node, "StandIn-Tools") == tag_commit(tools, "v1")
    assert head_of(node, "my-plain") == tag_commit(plain, "v2")
    info = object_info(port, "StandInTools")["StandInTools"]
    assert info["python_module"] == "custom_nodes.StandIn-Tools" and info["category"] == "stand-in"
    assert object_info(port, "StandInPlain")["StandInPlain"]["python_module"] == "custom_nodes.my-plain"
    assert object_info(port, "StandInPlainExtra"), "my-plain is at v2, which adds this class"
    assert object_info(port, "StandInToolsExtra") == {}, "StandIn-Tools is at v1"
    # Its requirement came from requirements.txt, under the constraints: torch kept its pin.
    versions = node.ssh(f"{VENV_PYTHON} -c 'import filelock, torch; print(torch.__version__)'").stdout
    assert versions.strip() == "2.3.1"
    state = json.loads(node.ssh("cat ~/provision/state/state.json").stdout)
    assert [(n["name"], n["ref"]) for n in state["custom_nodes"]] == [("StandIn-Tools", "v1"),
                                                                        ("my-plain", "v2")]

    before = node.connection_counts()
    again, report = up(node_yaml, laptop_home)
    after = node.connection_counts()
    assert again.returncode == 0, again.stderr
    assert report["changed"] == 0, [(s["name"], s["detail"]) for s in report["steps"]
                                    if s["status"] == "changed"]
    # The custom nodes' checks ride in the same one batch of probes as every other step's: the
    # re-run costs what it costs on a node without custom nodes (4 exec sessions here).
    assert after["connections"] - before["connections"] == 1
    assert after["exec"] - before["exec"] <= 4, (before, after)


def test_a_custom_node_added_to_a_running_node_is_loaded_and_a_new_ref_reloads_it(
        node_factory, laptop_home, tmp_path, stand_ins, shared_tmp):
    late = build_custom_node_repo(shared_tmp / "late-node", class_name="LateNode")
    port = free_port()
    node = node_factory(platform="linux")
    fields = stand_ins.node_fields(tunnel={"remote_port": port})
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **fields)
    result, _ = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert object_info(port, "LateNode") == {}
    first_pid = comfy_pid(node)

    node.write_node_yaml(tmp_path / "n.yaml", **dict(fields, custom_nodes=[{"repo": str(late), "ref": "v1"}]))
    result, report = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    launch = steps(report)["launch"]
    assert launch["status"] == "changed", launch
    assert launch["detail"] == "custom nodes to load: late-node: restart ComfyUI: restarted"
    assert comfy_pid(node) != first_pid
    # health passed against the restarted ComfyUI, which imported custom_nodes/ before serving.
    assert object_info(port, "LateNode")["LateNode"]["python_module"] == "custom_nodes.late-node"
    assert object_info(port, "LateNodeExtra") == {}
    second_pid = comfy_pid(node)

    node.write_node_yaml(tmp_path / "n.yaml", **dict(fields, custom_nodes=[{"repo": str(late), "ref": "v2"}]))
    result, report = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert steps(report)["custom-node:late-node"]["detail"].endswith("moved to v2")
    assert steps(report)["launch"]["status"] == "changed"
    assert comfy_pid(node) != second_pid
    assert object_info(port, "LateNodeExtra")["LateNodeExtra"]["name"] == "LateNodeExtra"

    again, report = up(node_yaml, laptop_home)
    assert again.returncode == 0, again.stderr
    assert report["changed"] == 0 and steps(report)["launch"]["status"] == "ok"
