"""node.yaml's custom_nodes in the playbook: a checkout and a requirements install per node
(for_each), the constraints on every install, a checkout without requirements.txt left alone,
and a running ComfyUI restarted when the custom nodes it was started with change."""

from __future__ import annotations

import shlex

import pytest

from provisioner.core.config import NodeConfig
from provisioner.install.engine import probe_script
from provisioner.install.steps.pip import PipStep
from provisioner.install.steps.service import ServiceStep
from tests.unit.install.test_playbook import steps_for

NODES = [{"repo": "https://github.com/kijai/ComfyUI-KJNodes.git", "ref": "v1.1"},
         {"repo": "/srv/mirror/tools", "ref": "abc123", "name": "my-tools"}]


def test_each_custom_node_is_a_checkout_then_its_requirements_under_the_constraints():
    steps = steps_for(NodeConfig(host="h", custom_nodes=NODES))
    names = [step.name for step in steps]
    start = names.index("gguf-requirements") + 1
    assert names[start:start + 4] == [
        "custom-node:ComfyUI-KJNodes", "custom-node:my-tools",
        "custom-node-requirements:ComfyUI-KJNodes", "custom-node-requirements:my-tools"]
    assert names[start + 4] == "models-ready", "installed before launch"
    by_name = {step.name: step for step in steps}
    gguf, constraints = by_name["gguf-node"], by_name["constraints"].dest
    for node in ("ComfyUI-KJNodes", "my-tools"):
        git, pip = by_name[f"custom-node:{node}"], by_name[f"custom-node-requirements:{node}"]
        assert git.kind == "git" and git.git == gguf.git == "/usr/bin/git"
        assert git.dest == gguf.dest.replace("ComfyUI-GGUF", node)
        assert "GIT_TERMINAL_PROMPT=0" in git._git and "credential.helper=" in git._git
        assert pip.requirements == f"{git.dest}/requirements.txt" and pip.requirements_optional
        assert f"-c {shlex.quote(constraints)}" in pip.command(uv=True)
        assert pip.expect == {"torch": "2.3.1"} and pip.installer == "uv"
    assert (by_name["custom-node:my-tools"].repo, by_name["custom-node:my-tools"].ref) == (
        "/srv/mirror/tools", "abc123")
    assert by_name["custom-node:ComfyUI-KJNodes"].describe() == "custom node ComfyUI-KJNodes at v1.1"
    assert by_name["launch"].custom_nodes == [by_name["custom-node:ComfyUI-KJNodes"].dest,
                                              by_name["custom-node:my-tools"].dest]


def test_without_custom_nodes_there_are_no_such_steps_and_launch_records_none():
    steps = steps_for(NodeConfig(host="h"))
    assert not [step for step in steps if step.name.startswith("custom-node")]
    assert next(step for step in steps if step.name == "launch").custom_nodes == []


def test_custom_node_probes_are_batched_with_the_others():
    steps = steps_for(NodeConfig(host="h", custom_nodes=NODES))
    script = probe_script(steps)
    for step in steps:
        if step.name.startswith("custom-node"):
            assert step.probe() in script


# ------------------------------------------------------------------ requirements.txt optional


def optional_pip(**fields) -> PipStep:
    return PipStep(name="custom-node-requirements:x", venv="/w/venv", marker_dir="/w/state",
                   requirements="/w/ComfyUI/custom_nodes/x/requirements.txt",
                   constraints="/w/con.txt", requirements_optional=True, installer="pip", **fields)


@pytest.mark.parametrize("probe, reason", [
    ("@@marker\n\n@@req\n\n@@con\nc\n@@folder\nyes\n", None),  # checked out, no requirements.txt
    ("@@marker\n\n@@req\n\n@@con\nc\n@@folder\n\n",  # not checked out yet (a dry run)
     "/w/ComfyUI/custom_nodes/x/requirements.txt is not there yet"),
    ("@@marker\n\n@@req\nr\n@@con\nc\n@@folder\nyes\n", "not installed yet"),
])
def test_a_checkout_without_requirements_has_nothing_to_install(probe, reason):
    step = optional_pip()
    assert "@@folder" in step.probe() and "test -d /w/ComfyUI/custom_nodes/x" in step.probe()
    change = step.decide(probe)
    assert (change.reason if change else None) == reason


def test_a_required_requirements_file_still_waits_for_the_file():
    step = PipStep(name="gguf-requirements", venv="/w/venv", marker_dir="/w/state",
                   requirements="/w/r.txt", installer="pip")
    assert "@@folder" not in step.probe()
    assert step.decide("@@marker\n\n@@req\n\n@@folder\nyes\n").reason == "/w/r.txt is not there yet"


# ------------------------------------------------------------------ launch restarts for them

FOLDERS = ["/w/ComfyUI/custom_nodes/a", "/w/ComfyUI/custom_nodes/b"]
HEADS = ["a " + "1" * 40, "b " + "2" * 40]


def launch(platform: str = "linux", custom_nodes=FOLDERS) -> ServiceStep:
    return ServiceStep(name="launch", label="dev.provision.comfyui", platform=platform, uid=501,
                       home="/home/u", argv=["/w/venv/bin/python", "main.py"], workdir="/w/ComfyUI",
                       log="/w/logs/comfyui.log", run_dir="/w/state/run", custom_nodes=custom_nodes)


def probe_for(step: ServiceStep, loaded: list[str], heads: list[str] = HEADS, running: bool = True,
              same_unit: bool = True) -> str:
    import hashlib

    sha = hashlib.sha256(step.content().encode()).hexdigest() if same_unit else "0" * 64
    state = f"loaded=1 running={int(running)} pid={'42' if running else ''} uptime=01:00"
    return (f"@@sha\n{sha}\n@@state\n{state}\n@@loaded\n" + "".join(f"{line}\n" for line in loaded)
            + ("@@heads\n" + "".join(f"{line}\n" for line in heads) if step.custom_nodes else ""))


def test_launch_reads_the_record_and_the_checkouts_commits_in_its_probe(tmp_path):
    import subprocess

    for name, head in (("a", "1" * 40), ("b", None)):  # b is not checked out
        (tmp_path / name / ".git").mkdir(parents=True)
        if head:
            (tmp_path / name / ".git" / "HEAD").write_text(head + "\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "custom_nodes.txt").write_text("a " + "0" * 40 + "\n")
    step = launch(custom_nodes=[str(tmp_path / "a"), str(tmp_path / "b")]).model_copy(
        update={"run_dir": str(tmp_path / "run")})
    output = subprocess.run(["/bin/sh", "-c", step.probe()], capture_output=True, text=True).stdout
    assert output.split("@@loaded\n")[1] == f"a {'0' * 40}\n@@heads\na {'1' * 40}\nb absent\n"
    assert "@@heads" not in launch(custom_nodes=[]).probe()


@pytest.mark.parametrize("loaded, heads, reason", [
    (HEADS, HEADS, None),
    (HEADS[:1], HEADS, "custom nodes to load: b: restart ComfyUI"),  # one added
    ([HEADS[0], "b " + "3" * 40], HEADS, "custom nodes to load: b: restart ComfyUI"),  # b moved
    (HEADS, HEADS[:1], "custom nodes changed: restart ComfyUI"),  # one left node.yaml
    (HEADS[:1], ["a " + "1" * 40, "b absent"], "custom nodes to load: b: restart ComfyUI"),
])
def test_a_running_comfyui_is_restarted_when_its_custom_node_checkouts_moved(loaded, heads, reason):
    change = launch().decide(probe_for(launch(), loaded, heads))
    assert (change.reason if change else None) == reason
    if change:
        assert change.data == {"restart": True, "pid": 42, "heads": heads, "recorded": True}


def test_a_node_without_custom_nodes_and_no_record_is_left_alone():
    step = launch(custom_nodes=[])
    assert step.decide(probe_for(step, [])) is None


@pytest.mark.parametrize("running, same_unit, reason", [
    (False, True, "installed but not running: start"),
    (True, False, "its definition changed: restart"),
])
def test_a_start_or_a_new_unit_records_the_commits_it_loads(running, same_unit, reason):
    step = launch(platform="macos")
    change = step.decide(probe_for(step, [], running=running, same_unit=same_unit))
    assert change.reason == reason and "restart" not in change.data
    assert change.data["heads"] == HEADS and change.data["recorded"] is False


class Recorder:
    """A node that records what the step runs and puts."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.puts: dict[str, bytes] = {}

    def run(self, command, **kwargs):
        self.commands.append(command)

    def put(self, data, path, mode):
        self.puts[path] = data


@pytest.mark.parametrize("platform, restart", [
    ("linux", "kill -TERM"),
    ("macos", "launchctl kickstart -k user/501/dev.provision.comfyui"),
])
def test_a_restart_waits_for_the_old_process_and_records_what_it_loads(platform, restart):
    from provisioner.install.steps.base import Change, StepContext

    step, node = launch(platform), Recorder()
    change = Change("x", {"restart": True, "pid": 42, "heads": HEADS, "recorded": True})
    assert step.apply(StepContext(node=node, paths=None), change) == "restarted"
    script = node.commands[-1]
    assert restart in script and 'kill -0 "$old"' in script
    assert node.puts == {"/w/state/run/custom_nodes.txt": "".join(h + "\n" for h in HEADS).encode()}


def test_a_record_left_by_custom_nodes_now_gone_is_removed_at_the_next_start():
    step, node = launch(custom_nodes=[]), Recorder()
    step._record_loaded(node, {"heads": [], "recorded": True})
    assert node.puts == {} and "rm -f /w/state/run/custom_nodes.txt" in node.commands[-1]
    node.commands.clear()
    step._record_loaded(node, {"heads": [], "recorded": False})
    assert node.commands == [] and node.puts == {}, "no record, no round trip"
