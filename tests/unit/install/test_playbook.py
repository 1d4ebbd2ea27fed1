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
    assert names[:11] == ["workdir", "python", "models", "git", "venv", "constraints", "torch",
                          "comfyui", "comfyui-requirements", "gguf-node", "gguf-requirements"]
    assert names[-4:] == ["models-ready", "launch", "health", "smoke"]
    kinds = {step.name: step.kind for step in steps}
    assert kinds["comfyui"] == "git" and kinds["torch"] == "pip" and kinds["venv"] == "venv"
    # The checkouts use the git the facts found (the assumed Mac's is /usr/bin/git).
    by_kind_git = [step for step in steps if step.kind == "git"]
    assert by_kind_git and all(step.git == "/usr/bin/git" for step in by_kind_git)
    # The download starts once a Python exists, in the background; models-ready waits for it.
    by_name = {step.name: step for step in steps}
    assert by_name["models"].background and by_name["models"].python == by_name["python"].creates
    assert (kinds["models-ready"], by_name["models-ready"].step) == ("join", "models")
    # The first image uses what launch started ComfyUI with, and the plan's files.
    smoke = by_name["smoke"]
    assert smoke.argv == by_name["launch"].argv[1:] and smoke.port == by_name["health"].port
    assert {item["role"] for item in smoke.models} == {"unet", "t5", "clip_l", "vae"}
    assert smoke.versions["torch"] == "2.3.1" and smoke.record.endswith("/state/smoke.json")


def test_a_join_must_name_a_step_before_it_and_only_some_kinds_run_in_the_background(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("skip: [models]\nsteps: []\n")
    names = [step.name for step in steps_for(NodeConfig(host="h", playbook=str(mine)))]
    assert "models" not in names and "models-ready" not in names, "its join goes with it"
    mine.write_text("steps:\n  - {name: wait, kind: join, step: modles, before: launch}\n")
    with pytest.raises(ConfigError) as caught:
        steps_for(NodeConfig(host="h", playbook=str(mine)))
    assert "wait (join): step: no step called 'modles' before it (did you mean 'models'?)" \
        in str(caught.value)
    mine.write_text("steps:\n  - {name: x, kind: command, cmd: 'true', background: true}\n")
    with pytest.raises(ConfigError, match="a command step cannot run in the background"):
        steps_for(NodeConfig(host="h", playbook=str(mine)))


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


# ---------------------------------------------------------------------------- installer: uv | pip


def test_uv_is_the_default_installer_and_shown_in_the_plan():
    from provisioner.install.steps.installer import UV_VERSION

    steps = {step.name: step for step in steps_for(NodeConfig(host="h"))}
    venv = steps["venv"]
    assert (venv.installer, venv.uv_dir) == ("uv", "/Users/admin/provision/tools/uv")
    assert f"made by uv {UV_VERSION}" in venv.describe()
    for name in ("torch", "comfyui-requirements", "gguf-requirements"):
        assert steps[name].installer == "uv" and steps[name].describe().endswith("(uv)")
    pip_steps = {step.name: step for step in steps_for(NodeConfig(host="h", installer="pip"))}
    assert "pip upgraded" in pip_steps["venv"].describe() and "uv" not in pip_steps["venv"].describe()
    assert pip_steps["torch"].describe().endswith("(pip)")


def test_installer_pip_keeps_the_pip_commands_byte_for_byte():
    """Nodes installed with pip before uv existed keep their markers: nothing reinstalls."""
    cfg = NodeConfig(host="h", installer="pip", pip={"no_index": True, "find_links": ["/wh"]})
    torch = next(step for step in steps_for(cfg) if step.name == "torch")
    assert torch.command() == (
        "/Users/admin/provision/venv/bin/python -m pip install --disable-pip-version-check "
        "--progress-bar off --no-index --find-links /wh -c /Users/admin/provision/state/constraints.txt "
        "torch==2.3.1 torchvision==0.18.1 torchaudio==2.3.1")
    assert "@@uv" not in torch.probe()


def test_uv_commands_carry_the_index_options_and_constraints_as_single_words(tmp_path):
    hostile = "x $(touch /tmp/pwned) `id` ; 'q' \"d\" \\ & |"
    cfg = NodeConfig(host="h", workdir=f"/w/{hostile}",
                     pip={"no_index": True, "find_links": [f"/wh/{hostile}"],
                          "index_url": f"http://i/{hostile}", "extra_index_urls": [f"http://e/{hostile}"]})
    steps = {step.name: step for step in steps_for(cfg)}
    work = f"/w/{hostile}"
    options = ["--no-index", "--index-url", f"http://i/{hostile}", "--extra-index-url",
               f"http://e/{hostile}", "--find-links", f"/wh/{hostile}"]
    for name in ("torch", "comfyui-requirements", "gguf-requirements"):
        words = shlex.split(steps[name].command(uv=True))
        assert words[:7] == [f"{work}/tools/uv/bin/uv", "pip", "install", "--python",
                             f"{work}/venv/bin/python", "--cache-dir", f"{work}/tools/uv-cache"]
        assert words[7:14] == options
        assert words[14:16] == ["-c", f"{work}/state/constraints.txt"]
    assert shlex.split(steps["torch"].command(uv=True))[16:] == [
        "torch==2.3.1", "torchvision==0.18.1", "torchaudio==2.3.1"]
    assert shlex.split(steps["comfyui-requirements"].command(uv=True))[16:] == [
        "-r", f"{work}/ComfyUI/requirements.txt", "requests"]


def test_installing_uv_and_the_uv_venv_are_quoted_and_use_the_index_options(tmp_path):
    """The commands the venv step runs, executed for real by sh with a recording python."""
    from provisioner.install.steps import StepContext

    hostile = "x $(touch pwned) `touch pwned` ; touch pwned 'q' \"d\""
    work = tmp_path / f"w {hostile}"
    calls = tmp_path / "calls"
    python = tmp_path / f"py {hostile}"
    # A stand-in interpreter: records its argv, and "installs" uv by writing a uv that does
    # the same, wherever --target points.
    python.write_text(
        "#!/bin/sh\n"
        f"for a in \"$@\"; do printf '%s\\n' \"$a\"; done >> '{calls}'; echo --- >> '{calls}'\n"
        "while [ $# -gt 0 ]; do if [ \"$1\" = --target ]; then mkdir -p \"$2/bin\"; "
        f"cp \"$0\" \"$2/bin/uv\"; fi; shift; done\n")
    python.chmod(0o755)
    cfg = NodeConfig(host="h", workdir=str(work), pip={"find_links": [f"/wh/{hostile}"]})
    venv = next(step for step in steps_for(cfg) if step.name == "venv")
    venv = venv.model_copy(update={"python": str(python)})
    change = venv.decide("@@exe\nno\n@@pip\nno\n@@uv\n@@uvmiss\n")
    assert change.data == {"install_uv": True, "use_uv": True, "has_pip": False, "create": True}
    detail = venv.apply(StepContext(node=LocalNode(), paths=None), change)
    assert not (tmp_path / "pwned").exists() and not list(tmp_path.rglob("pwned"))
    assert detail.startswith("created with uv; uv ") and "installed into" in detail
    runs = [run.strip("\n").split("\n") for run in calls.read_text().split("---\n") if run.strip()]
    assert runs[0] == ["-m", "pip", "install", "--disable-pip-version-check", "--no-warn-script-location",
                       "--progress-bar", "off", "-q", "--target", f"{work}/tools/uv.new",
                       "--find-links", f"/wh/{hostile}", f"uv=={venv.uv_version}"]
    assert (work / "tools" / "uv" / "bin" / "uv").exists() and not (work / "tools" / "uv.new").exists()
    assert runs[1] == ["venv", "--no-project", "--allow-existing", "--cache-dir",
                       f"{work}/tools/uv-cache", "--python", str(python), f"{work}/venv"]


@pytest.mark.parametrize("message, remembered", [
    ("ERROR: No matching distribution found for uv==0.13.9", True),
    (("WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError'\n"
      "ERROR: No matching distribution found for uv==0.13.9"), False),
])
def test_when_uv_cannot_be_installed_the_step_says_so_and_remembers_only_a_lasting_reason(
        tmp_path, message, remembered):
    from provisioner.install.steps import StepContext
    from provisioner.install.steps.installer import unavailable_marker

    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\necho {shlex.quote(message)} >&2\nexit 1\n")
    python.chmod(0o755)
    uv_dir = str(tmp_path / "tools" / "uv")
    step = _venv_step(installer="uv", uv_dir=uv_dir).model_copy(update={"python": str(python)})
    ok, note = step._install_uv(StepContext(node=LocalNode(), paths=None))
    assert not ok and not Path(uv_dir, "bin", "uv").exists() and not Path(uv_dir + ".new").exists()
    assert note.startswith("warning: uv 0.13.9 could not be installed (No matching distribution found")
    assert "pip installs instead" in note
    marker = Path(unavailable_marker(uv_dir))
    assert marker.exists() == remembered
    if remembered:
        assert marker.read_text().strip() == step.uv_key
        assert step.decide(VENV_OK + f"@@pip\nyes\n@@uv\n@@uvmiss\n{marker.read_text()}") is None


def _venv_step(**fields):
    from provisioner.install.steps.venv import VenvStep

    return VenvStep(name="venv", path="/w/venv", python="/usr/bin/python3", python_version="3.11.2",
                    pip_options="--no-index", **fields)


UV_OK = "@@uv\nuv 0.13.9 (x86_64-unknown-linux-gnu)\n"
VENV_OK = "@@cfg\nhome = /usr/bin\nversion_info = 3.11.2\n@@exe\nyes\n"


@pytest.mark.parametrize("installer, probe, reason, data", [
    ("uv", "@@exe\nno\n@@pip\nno\n@@uv\n@@uvmiss\n", "no virtual environment yet (uv 0.13.9)",
     {"install_uv": True, "use_uv": True, "has_pip": False, "create": True}),
    ("uv", VENV_OK + "@@pip\nno\n" + UV_OK, None, None),
    ("uv", VENV_OK + "@@pip\nyes\n@@uv\nuv 0.12.0\n", "uv 0.13.9 is not installed yet (found 0.12.0)",
     {"install_uv": True, "use_uv": True, "has_pip": True}),
    ("uv", VENV_OK + "@@pip\nyes\n@@uv\n@@uvmiss\nKEY\n", None, None),  # no uv on the index: pip
    ("uv", VENV_OK + "@@pip\nno\n@@uv\n@@uvmiss\nKEY\n",
     "the venv has no pip (uv made it), and pip installs now",
     {"install_uv": False, "use_uv": False, "has_pip": False}),
    ("uv", "@@exe\nno\n@@pip\nno\n@@uv\n@@uvmiss\nKEY\n",
     "no virtual environment yet (pip: uv 0.13.9 is not on this node's index)",
     {"install_uv": False, "use_uv": False, "has_pip": False, "create": True}),
    ("uv", "@@exe\nno\n@@pip\nno\n@@uv\n@@uvmiss\nanother index\n", "no virtual environment yet (uv 0.13.9)",
     {"install_uv": True, "use_uv": True, "has_pip": False, "create": True}),
    ("pip", "@@exe\nno\n@@pip\nno\n", "no virtual environment yet",
     {"install_uv": False, "use_uv": False, "has_pip": False, "create": True}),
    ("pip", VENV_OK + "@@pip\nyes\n", None, None),
    ("pip", VENV_OK + "@@pip\nno\n", "the venv has no pip (uv made it), and pip installs now",
     {"install_uv": False, "use_uv": False, "has_pip": False}),
    ("pip", "@@cfg\nversion = 3.10.4\n@@exe\nyes\n@@pip\nyes\n", "venv runs Python 3.10, wanted 3.11: rebuilt",
     {"install_uv": False, "use_uv": False, "has_pip": True, "create": True, "rebuild": True}),
])
def test_venv_decides_between_uv_and_pip(installer, probe, reason, data):
    step = _venv_step(installer=installer, uv_dir="/w/tools/uv")
    change = step.decide(probe.replace("KEY", step.uv_key))
    assert (change.reason if change else None, change.data if change else None) == (reason, data)


def _pip_step(installer="uv"):
    from provisioner.install.steps.pip import PipStep

    return PipStep(name="torch", venv="/w/venv", packages=["torch==2.3.1"], constraints="/w/con.txt",
                   pip_options="--no-index", expect={"torch": "2.3.1"}, marker_dir="/w/state",
                   installer=installer, uv_dir="/w/tools/uv")


@pytest.mark.parametrize("uv_state, marker_by, reason, use_uv", [
    ("ready", None, "not installed yet (uv)", True),
    ("absent", None, "not installed yet (uv)", False),  # a dry run before uv, or uv failed now
    ("unavailable", None, "not installed yet (pip: uv is not on this node's index)", False),
    ("ready", "uv", None, None),
    ("ready", "pip", None, None),  # installed by pip before the switch to uv: nothing to redo
    ("unavailable", "uv", None, None),
])
def test_pip_step_installs_with_uv_once_the_venv_step_installed_it(uv_state, marker_by, reason, use_uv):
    step = _pip_step()
    found = {"con": "abc"}
    marker = step.wanted_marker(found, uv=marker_by == "uv") if marker_by else ""
    probe = (f"@@marker\n{marker}\n@@uv\n{uv_state}\n@@con\nabc\n"
             "@@distinfo\npython3.11/site-packages/torch-2.3.1.dist-info\n")
    change = step.decide(probe)
    assert (change.reason if change else None) == reason
    if change:
        assert change.data == {"marker": step.wanted_marker(found, uv=use_uv), "uv": use_uv}


def test_pip_installer_accepts_only_the_pip_marker():
    step = _pip_step(installer="pip")
    found = {"con": "abc"}
    probe = "@@marker\n{}\n@@con\nabc\n@@distinfo\npython3.11/site-packages/torch-2.3.1.dist-info\n"
    assert step.decide(probe.format(step.wanted_marker(found))) is None
    change = step.decide(probe.format(step.wanted_marker(found, uv=True)))
    assert change.reason == "packages, requirements or constraints changed" and change.data["uv"] is False


def test_installer_uv_without_a_place_for_uv_is_a_playbook_error(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("steps:\n  - {name: venv, kind: venv, path: /v, python: /p, python_version: '3.11',"
                    " installer: uv}\n")
    with pytest.raises(ConfigError) as caught:
        steps_for(NodeConfig(host="h", playbook=str(mine)))
    assert "step venv (venv)" in str(caught.value) and "uv_dir" in str(caught.value)


@pytest.mark.parametrize("output, reason, transient", [
    (("ERROR: Could not find a version that satisfies the requirement uv==0.13.9 (from versions: none)\n"
      "ERROR: No matching distribution found for uv==0.13.9"),
     "No matching distribution found for uv==0.13.9", False),
    ("/usr/bin/python3: No module named pip", "/usr/bin/python3: No module named pip", False),
    (("WARNING: Retrying (Retry(total=4, connect=None)) after connection broken by "
      "'NewConnectionError(...)': /simple/uv/\nERROR: No matching distribution found for uv==0.13.9"),
     "No matching distribution found for uv==0.13.9", True),
    ("", "pip failed without a message", False),
])
def test_a_failed_uv_install_says_why_and_whether_to_ask_again(output, reason, transient):
    from provisioner.install.steps.installer import failure_note

    assert failure_note(output) == (reason, transient)
