"""node.yaml / fleet.yaml loading: every error is one line naming file, field and fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.core.config import FleetConfig, NodeConfig, load_fleet, load_node, node_json_schema
from provisioner.core.errors import ConfigError, ExitStatus

REPO = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, text: str, name: str = "node.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path, loader=load_node) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        loader(path)
    error = caught.value
    assert "\n" not in str(error), "errors are one line"
    assert error.exit_status == ExitStatus.BAD_INPUT
    return error


def test_only_host_is_required_and_defaults_follow_the_contract(tmp_path):
    cfg = load_node(write(tmp_path, "host: 203.0.113.10\n"))
    assert cfg.name == "203.0.113.10"
    assert cfg.port == 22
    assert cfg.platform == "auto" and cfg.model == "dev" and cfg.quality == "auto"
    assert cfg.workdir == "~/provision"
    assert (cfg.tunnel.local_port, cfg.tunnel.remote_port) == (8188, 8188)
    assert cfg.hf.token_env == "HF_TOKEN"
    assert cfg.comfyui.ref == "v0.3.64"
    assert (cfg.torch.torch, cfg.torch.torchvision, cfg.torch.torchaudio) == ("2.3.1", "0.18.1", "2.3.1")
    assert cfg.outputs_dir() == Path("outputs/203.0.113.10")


def test_the_shipped_example_loads():
    cfg = load_node(REPO / "examples" / "node.yaml")
    assert cfg.name == "m4pro-1"


def test_missing_host_names_the_field(tmp_path):
    error = error_of(write(tmp_path, "port: 22\n"))
    assert "node.yaml: host: required field is missing" in str(error)


def test_unknown_key_suggests_the_closest(tmp_path):
    error = error_of(write(tmp_path, "host: h\nworkdirr: ~/x\n"))
    assert "workdirr: unknown key (did you mean 'workdir'?)" in str(error)


def test_unknown_nested_key_names_the_path_and_lists_valid_keys(tmp_path):
    error = error_of(write(tmp_path, "host: h\ntunnel: {local_prot: 9000}\n"))
    assert "tunnel.local_prot: unknown key (did you mean 'local_port'?)" in str(error)
    assert "local_port" in error.hint and "remote_port" in error.hint


def test_wrong_type(tmp_path):
    error = error_of(write(tmp_path, "host: h\nport: twenty-two\n"))
    assert "node.yaml: port:" in str(error) and "'twenty-two'" in str(error)


@pytest.mark.parametrize("field,value", [("port", 0), ("port", 70000)])
def test_port_out_of_range(tmp_path, field, value):
    error = error_of(write(tmp_path, f"host: h\n{field}: {value}\n"))
    assert f"{field}:" in str(error) and str(value) in str(error)
    assert "1 and 65535" in error.hint


def test_tunnel_port_out_of_range(tmp_path):
    error = error_of(write(tmp_path, "host: h\ntunnel: {remote_port: 99999}\n"))
    assert "tunnel.remote_port" in str(error)


def test_a_pasted_token_is_refused_and_never_echoed(tmp_path):
    secret = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    error = error_of(write(tmp_path, f"host: h\nhf: {{token_env: {secret}}}\n"))
    assert "hf.token_env" in str(error)
    assert "looks like a token" in str(error)
    assert secret not in str(error) and secret not in error.hint
    assert secret[3:12] not in str(error)


def test_token_env_must_be_a_name(tmp_path):
    error = error_of(write(tmp_path, "host: h\nhf: {token_env: 'MY TOKEN'}\n"))
    assert "NAME of an environment variable" in str(error)


def test_missing_identity_file(tmp_path):
    error = error_of(write(tmp_path, "host: h\nidentity_file: keys/nope\n"))
    assert "identity_file: file not found" in str(error)
    assert str(tmp_path / "keys" / "nope") in str(error)


def test_identity_file_resolves_relative_to_the_config(tmp_path):
    (tmp_path / "id").write_text("key")
    cfg = load_node(write(tmp_path, "host: h\nidentity_file: id\n"))
    assert cfg.identity_file == str(tmp_path / "id")


def test_unreadable_yaml_gives_line_and_column(tmp_path):
    error = error_of(write(tmp_path, "host: h\nport: [22\nuser: x\n"))
    assert "line 3, column" in str(error) or "line 2, column" in str(error)
    assert "not valid YAML" in str(error)


def test_not_a_mapping(tmp_path):
    error = error_of(write(tmp_path, "- host: h\n"))
    assert "must be a mapping" in str(error)


def test_missing_file(tmp_path):
    error = error_of(tmp_path / "absent.yaml")
    assert "absent.yaml: no such file" in str(error)


def test_bad_host_key_pin(tmp_path):
    error = error_of(write(tmp_path, "host: h\nhost_key: MD5:aa:bb\n"))
    assert "host_key" in str(error) and "ssh-keygen -lf" in str(error)


def test_literal_choice_lists_valid_values(tmp_path):
    error = error_of(write(tmp_path, "host: h\nquality: q7\n"))
    assert "quality:" in str(error) and "'q8'" in str(error)


def test_workdir_may_not_be_home(tmp_path):
    error = error_of(write(tmp_path, "host: h\nworkdir: '~'\n"))
    assert "workdir" in str(error) and "teardown deletes it" in str(error)


def test_models_are_frozen():
    cfg = NodeConfig(host="h")
    with pytest.raises(Exception):
        cfg.port = 23  # type: ignore[misc]


FLEET = """
defaults:
  user: admin
  tunnel: {remote_port: 8188}
  model: schnell
nodes:
  - {name: a, host: 10.0.0.1, tunnel: {local_port: 9001}}
  - {name: b, host: 10.0.0.2, model: dev, tunnel: {local_port: 9002}}
"""


def test_fleet_defaults_merge_field_by_field_and_nodes_win(tmp_path):
    fleet = load_fleet(write(tmp_path, FLEET, "fleet.yaml"))
    assert isinstance(fleet, FleetConfig)
    a, b = fleet.nodes
    assert (a.user, a.model, a.tunnel.local_port, a.tunnel.remote_port) == ("admin", "schnell", 9001, 8188)
    assert (b.model, b.tunnel.local_port) == ("dev", 9002)


def test_fleet_duplicate_names_are_an_error(tmp_path):
    text = FLEET.replace("name: b", "name: a")
    error = error_of(write(tmp_path, text, "fleet.yaml"), load_fleet)
    assert "node a" in str(error) and "name" in str(error)


def test_fleet_duplicate_local_ports_name_both_nodes(tmp_path):
    text = FLEET.replace("local_port: 9002", "local_port: 9001")
    error = error_of(write(tmp_path, text, "fleet.yaml"), load_fleet)
    assert "a and b" in str(error) and "9001" in str(error)


def test_fleet_node_errors_name_the_node(tmp_path):
    text = FLEET.replace("host: 10.0.0.2", "host: 10.0.0.2, prot: 2")
    error = error_of(write(tmp_path, text, "fleet.yaml"), load_fleet)
    assert "node b: prot: unknown key" in str(error)


@pytest.mark.parametrize("name", ["node", "plan", "up", "status"])
def test_the_committed_json_schemas_are_generated_from_the_models(name):
    from provisioner.api.schema import schema_for

    committed = json.loads((REPO / "docs" / f"{name}.schema.json").read_text())
    assert committed == json.loads(json.dumps(schema_for(name))), \
        f"regenerate: python -m provisioner.api.schema {name} > docs/{name}.schema.json"


def test_schema_forbids_unknown_keys():
    schema = node_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["host"]
