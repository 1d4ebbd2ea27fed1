"""Playbook rendering: data in, typed steps out; hostile values stay single shell words."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from provisioner.core.config import NodeConfig
from provisioner.core.errors import ConfigError
from provisioner.core.units import GIB
from provisioner.install.catalog import load_catalog
from provisioner.install.engine import probe_script
from provisioner.install.playbook import load_steps, pip_options
from provisioner.install.sizing import SizingOptions, choose_models
from provisioner.node.facts import assumed_facts
from provisioner.node.remote import LocalNode


def steps_for(cfg: NodeConfig, memory_gb: int = 64, **context):
    facts = assumed_facts(memory_gb * GIB, "macos")
    plan = choose_models(facts, load_catalog(), SizingOptions.from_config(cfg))
    return load_steps(cfg, facts, plan, context or None)


def test_builtin_playbook_renders_in_order():
    steps = steps_for(NodeConfig(host="h"))
    names = [step.name for step in steps]
    assert names[:9] == ["workdir", "python", "venv", "constraints", "torch", "comfyui",
                         "comfyui-requirements", "gguf-node", "gguf-requirements"]
    assert names[-2:] == ["launch", "health"]
    kinds = {step.name: step.kind for step in steps}
    assert kinds["comfyui"] == "git" and kinds["torch"] == "pip" and kinds["venv"] == "venv"


def test_versions_and_refs_come_from_node_yaml():
    cfg = NodeConfig(host="h", torch={"torch": "2.4.1", "torchvision": "0.19.1", "torchaudio": "2.4.1"},
                     comfyui={"repo": "/srv/ComfyUI", "ref": "v0.3.70"})
    steps = {step.name: step for step in steps_for(cfg)}
    assert steps["torch"].packages == ["torch==2.4.1", "torchvision==0.19.1", "torchaudio==2.4.1"]
    assert steps["torch"].expect == {"torch": "2.4.1", "torchvision": "0.19.1", "torchaudio": "2.4.1"}
    assert "torch==2.4.1" in steps["constraints"].content
    assert (steps["comfyui"].repo, steps["comfyui"].ref) == ("/srv/ComfyUI", "v0.3.70")


def test_every_pip_call_uses_the_constraints_file():
    steps = steps_for(NodeConfig(host="h"))
    pips = [step for step in steps if step.kind == "pip"]
    assert len(pips) == 3
    constraints = next(step for step in steps if step.name == "constraints").dest
    for step in pips:
        assert f"-c {shlex.quote(constraints)}" in step.command()


def test_launch_uses_the_real_fp32_vae_flag_and_loopback():
    launch = next(step for step in steps_for(NodeConfig(host="h")) if step.name == "launch")
    assert "--fp32-vae" in launch.argv and "--fp32vae" not in launch.argv
    assert launch.argv[launch.argv.index("--listen") + 1] == "127.0.0.1"
    assert launch.env["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"


def test_context_switches_skip_steps():
    steps = steps_for(NodeConfig(host="h"), skip_models=True, skip_launch=True)
    skipped = {step.name for step in steps if not step.when}
    assert {"launch", "health"} <= skipped
    assert "models" in skipped


def test_hostile_values_are_never_executed_by_any_probe(tmp_path):
    pwned = tmp_path / "pwned"
    hostile = f"x $(touch {pwned}) `touch {pwned}` ; touch {pwned} 'q' \"d\" \\ & | > <"
    cfg = NodeConfig(host="h", workdir=f"{tmp_path}/w {hostile}",
                     comfyui={"repo": f"/srv/{hostile}", "ref": f"v1{hostile}"},
                     gguf_node={"repo": f"/srv/{hostile}", "ref": hostile},
                     pip={"find_links": [f"/wh/{hostile}"], "index_url": f"http://x/{hostile}"})
    steps = steps_for(cfg)
    result = LocalNode().run("/bin/sh -s", stdin=probe_script(steps), check=False)
    assert not pwned.exists(), result.stdout + result.stderr
    git = next(step for step in steps if step.name == "comfyui")
    assert shlex.quote(f"{tmp_path}/w {hostile}/ComfyUI") in git.probe()
    options = shlex.split(pip_options(cfg))
    assert f"/wh/{hostile}" in options and f"http://x/{hostile}" in options


def test_unknown_kind_names_the_playbook_and_step(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("steps:\n  - {name: extra, kind: comand, cmd: 'true'}\n")
    with pytest.raises(ConfigError) as caught:
        steps_for(NodeConfig(host="h", playbook=str(mine)))
    message = str(caught.value)
    assert str(mine) in message and "step extra" in message and "did you mean 'command'" in message


def test_bad_field_names_the_step_and_field(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("steps:\n  - {name: extra, kind: command, cmd: 'true', creats: /x}\n")
    with pytest.raises(ConfigError) as caught:
        steps_for(NodeConfig(host="h", playbook=str(mine)))
    assert "step extra (command): creats: unknown field" in str(caught.value)


def test_undefined_variable_is_an_error(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("steps:\n  - {name: extra, kind: command, cmd: 'echo {{ nope }}'}\n")
    with pytest.raises(ConfigError) as caught:
        steps_for(NodeConfig(host="h", playbook=str(mine)))
    assert "'nope' is undefined" in str(caught.value)


def test_user_playbook_extends_the_builtin(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "skip: [gguf-requirements]\n"
        "steps:\n"
        "  - {name: ffmpeg, kind: command, after: venv, cmd: 'brew install ffmpeg', creates: /opt/homebrew/bin/ffmpeg}\n"
        "  - {name: first, kind: command, before: workdir, cmd: 'true', creates: /}\n"
        "  - {name: python, kind: command, cmd: 'echo mine', creates: /usr/bin/python3}\n"
        "  - {name: last, kind: command, cmd: 'echo {{ paths.workdir | q }}'}\n")
    steps = steps_for(NodeConfig(host="h", playbook=str(mine)))
    names = [step.name for step in steps]
    assert names[0] == "first"
    assert names[names.index("venv") + 1] == "ffmpeg"
    assert "gguf-requirements" not in names
    assert names[-1] == "last"
    python = next(step for step in steps if step.name == "python")
    assert python.cmd == "echo mine"


def test_user_playbook_anchor_must_exist(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("steps:\n  - {name: x, kind: command, after: venvv, cmd: 'true'}\n")
    with pytest.raises(ConfigError) as caught:
        steps_for(NodeConfig(host="h", playbook=str(mine)))
    assert "did you mean 'venv'" in str(caught.value)


def test_the_builtin_playbook_is_valid_yaml_with_a_steps_list():
    import yaml

    from provisioner.core.resources import data_file

    data = yaml.safe_load(Path(data_file("playbooks", "comfyui-flux.yaml")).read_text())
    assert isinstance(data["steps"], list) and all("kind" in step for step in data["steps"])
