"""fleet.yaml: defaults merged under nodes, unique names, auto-assigned unique local ports,
and every error one line naming the file, the node and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.core.config import load_fleet
from provisioner.core.errors import ConfigError, ExitStatus


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_fleet(path)
    error = caught.value
    message = str(error)
    assert "\n" not in message, "errors are one line"
    assert message.startswith(f"{path}: "), "errors name the file"
    assert error.exit_status == ExitStatus.BAD_INPUT
    return message


def test_defaults_merge_field_by_field_under_every_node_and_nodes_win(tmp_path):
    fleet = load_fleet(write(tmp_path, """
defaults:
  user: admin
  model: schnell
  comfyui: {repo: /srv/mirror/ComfyUI, ref: v0.3.64, extra_args: [--preview-method, auto]}
  tunnel: {remote_port: 8190}
nodes:
  - {name: a, host: 10.0.0.1}
  - {name: b, host: 10.0.0.2, model: dev, comfyui: {ref: v0.3.60}, tunnel: {remote_port: 8191}}
"""))
    a, b = fleet.nodes
    assert (a.user, a.model, a.comfyui.ref, a.tunnel.remote_port) == ("admin", "schnell", "v0.3.64", 8190)
    assert (b.user, b.model, b.comfyui.ref, b.tunnel.remote_port) == ("admin", "dev", "v0.3.60", 8191)
    # Nested mappings merge key by key: b keeps the defaults' repo and extra_args.
    assert b.comfyui.repo == "/srv/mirror/ComfyUI" and b.comfyui.extra_args == ["--preview-method", "auto"]
    assert fleet.parallel == 8


def test_local_ports_are_auto_assigned_upward_from_the_default(tmp_path):
    fleet = load_fleet(write(tmp_path, """
nodes:
  - {host: 10.0.0.1}
  - {host: 10.0.0.2}
  - {host: 10.0.0.3}
"""))
    assert [node.tunnel.local_port for node in fleet.nodes] == [8188, 8189, 8190]
    assert [node.name for node in fleet.nodes] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_auto_ports_start_at_the_defaults_port_and_skip_ports_nodes_set(tmp_path):
    fleet = load_fleet(write(tmp_path, """
defaults: {tunnel: {local_port: 9000}}
parallel: 4
nodes:
  - {name: a, host: 10.0.0.1}
  - {name: b, host: 10.0.0.2, tunnel: {local_port: 9001}}
  - {name: c, host: 10.0.0.3}
  - {name: d, host: 10.0.0.4, tunnel: {local_port: 9000}}
  - {name: e, host: 10.0.0.5}
"""))
    ports = {node.name: node.tunnel.local_port for node in fleet.nodes}
    assert ports == {"a": 9002, "b": 9001, "c": 9003, "d": 9000, "e": 9004}
    assert fleet.parallel == 4


def test_auto_assigned_ports_never_pass_65535(tmp_path):
    message = error_of(tmp_path, """
defaults: {tunnel: {local_port: 65535}}
nodes:
  - {name: a, host: 10.0.0.1}
  - {name: b, host: 10.0.0.2}
""")
    assert "node b: tunnel.local_port" in message


def test_duplicate_local_ports_name_both_nodes_and_the_field(tmp_path):
    message = error_of(tmp_path, """
nodes:
  - {name: a, host: 10.0.0.1, tunnel: {local_port: 9001}}
  - {name: b, host: 10.0.0.2}
  - {name: c, host: 10.0.0.3, tunnel: {local_port: 9001}}
""")
    assert "nodes a and c" in message and "tunnel.local_port 9001" in message


def test_duplicate_names_name_the_node_and_both_entries(tmp_path):
    message = error_of(tmp_path, """
nodes:
  - {name: a, host: 10.0.0.1}
  - {name: b, host: 10.0.0.2}
  - {name: a, host: 10.0.0.3}
""")
    assert "node a: name" in message and "nodes[0] and nodes[2]" in message


def test_two_nodes_on_one_host_without_names_collide_on_the_default_name(tmp_path):
    message = error_of(tmp_path, """
nodes:
  - {host: 10.0.0.1, port: 22}
  - {host: 10.0.0.1, port: 2222}
""")
    assert "node 10.0.0.1: name" in message


@pytest.mark.parametrize("node,expected", [
    ("{name: b, host: 10.0.0.2, port: 70000}", "node b: port: "),
    ("{name: b, host: 10.0.0.2, quality: q3}", "node b: quality: "),
    ("{name: b, host: 10.0.0.2, tunnel: {local_prot: 1}}", "node b: tunnel.local_prot: unknown key"),
    ("{name: b}", "node b: host: required field is missing"),
    ("just-a-string", "nodes[1]: must be a mapping"),
])
def test_a_bad_node_field_names_the_node_and_the_field(tmp_path, node, expected):
    message = error_of(tmp_path, f"""
nodes:
  - {{name: a, host: 10.0.0.1}}
  - {node}
""")
    assert expected in message


def test_a_bad_default_names_the_first_node_it_breaks(tmp_path):
    message = error_of(tmp_path, """
defaults: {model: pro}
nodes:
  - {name: a, host: 10.0.0.1}
""")
    assert "node a: model: " in message


def test_shared_outputs_folder_is_an_error_naming_both_nodes(tmp_path):
    message = error_of(tmp_path, """
defaults: {outputs: {pull_to: ./outputs}}
nodes:
  - {name: a, host: 10.0.0.1}
  - {name: b, host: 10.0.0.2}
""")
    assert "nodes a and b: outputs.pull_to" in message
    with pytest.raises(ConfigError) as caught:
        load_fleet(tmp_path / "fleet.yaml")
    assert "{name}" in caught.value.hint, "the fix: put {name} in pull_to"


@pytest.mark.parametrize("text,expected", [
    ("nodes: []\n", "nodes: must be a non-empty list"),
    ("defaults: [1]\nnodes: [{host: h}]\n", "defaults: must be a mapping"),
    ("node: [{host: h}]\n", "node: unknown key (did you mean 'nodes'?)"),
    ("parallel: 0\nnodes: [{host: h}]\n", "parallel: "),
])
def test_top_level_errors(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text)


def test_the_example_fleet_loads_with_per_node_overrides_and_auto_ports():
    example = Path(__file__).resolve().parents[3] / "examples" / "fleet.yaml"
    fleet = load_fleet(example)
    nodes = {node.name: node for node in fleet.nodes}
    assert list(nodes) == ["m4pro-24", "m4pro-48", "m4max-64"]
    assert {name: node.tunnel.local_port for name, node in nodes.items()} == \
        {"m4pro-24": 8188, "m4pro-48": 8189, "m4max-64": 8200}
    assert nodes["m4max-64"].model == "schnell" and nodes["m4pro-24"].model == "dev"
    assert all(node.user == "admin" for node in fleet.nodes)
