"""The step loop on a real local shell: probes batched, re-runs are no-ops, failures resume."""

from __future__ import annotations

import pytest

from provisioner.core.config import NodeConfig
from provisioner.core.errors import StepFailed
from provisioner.core.units import GIB
from provisioner.install.engine import probe_script, run_steps, split_probe_output
from provisioner.install.steps import StepContext
from provisioner.install.steps.command import CommandStep
from provisioner.node.facts import assumed_facts
from provisioner.node.layout import node_paths
from provisioner.node.remote import LocalNode


def context(node) -> StepContext:
    return StepContext(node=node, paths=node_paths(NodeConfig(host="h"), assumed_facts(16 * GIB)))


def make_steps(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    return [
        CommandStep(name="a", cmd=f"touch {a}", creates=str(a)),
        CommandStep(name="b", cmd=f"touch {b}", unless=f"test -e {b}"),
        CommandStep(name="off", cmd="false", when=False),
    ]


def test_probe_output_round_trips():
    steps = [CommandStep(name="x", cmd="true", creates="/"), CommandStep(name="y", cmd="true")]
    script = probe_script(steps)
    assert "@@provision-probe:0" in script and "@@provision-probe:1" not in script
    assert split_probe_output("@@provision-probe:0\n@@creates\npresent\n") == {0: "@@creates\npresent"}


def test_first_run_changes_then_rerun_is_one_round_trip(tmp_path):
    node = LocalNode()
    first = run_steps(node, make_steps(tmp_path), context(node))
    assert [r.status for r in first] == ["changed", "changed", "skipped"]
    assert (tmp_path / "a").exists() and (tmp_path / "b").exists()

    node = LocalNode()
    second = run_steps(node, make_steps(tmp_path), context(node))
    assert [r.status for r in second] == ["ok", "ok", "skipped"]
    assert node.stats.commands == 1, "a no-op re-run checks every step in one round trip"


def test_dry_run_changes_nothing(tmp_path):
    node = LocalNode()
    results = run_steps(node, make_steps(tmp_path), context(node), dry_run=True)
    assert [r.status for r in results] == ["would-change", "would-change", "skipped"]
    assert "does not exist yet" in results[0].detail
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_failure_names_step_command_exit_code_and_how_to_resume(tmp_path):
    node = LocalNode()
    steps = [CommandStep(name="a", cmd=f"touch {tmp_path / 'a'}", creates=str(tmp_path / "a")),
             CommandStep(name="boom", cmd="echo nearly >&2; exit 7"),
             CommandStep(name="never", cmd=f"touch {tmp_path / 'never'}")]
    with pytest.raises(StepFailed) as caught:
        run_steps(node, steps, context(node))
    error = caught.value
    assert "step 'boom' failed" in str(error) and "exited 7" in str(error) and "nearly" in str(error)
    assert "resumes from this step" in error.hint
    assert [r.status for r in error.results] == ["changed", "failed"]
    assert not (tmp_path / "never").exists()


def test_events_report_start_and_end_of_each_step(tmp_path):
    node = LocalNode()
    events = []
    run_steps(node, make_steps(tmp_path), context(node), on_event=events.append)
    phases = [(e.phase, e.step.name) for e in events if e.phase != "output"]
    assert phases == [("start", "a"), ("end", "a"), ("start", "b"), ("end", "b"),
                      ("start", "off"), ("end", "off")]
