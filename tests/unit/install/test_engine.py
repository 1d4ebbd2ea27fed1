"""The step loop on a real local shell: probes batched, re-runs are no-ops, failures resume."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

import pytest

from provisioner.core.config import NodeConfig
from provisioner.core.errors import StepFailed
from provisioner.core.units import GIB
from provisioner.install.engine import probe_script, probe_steps, run_steps, split_probe_output
from provisioner.install.steps import Change, Step, StepContext
from provisioner.install.steps.command import CommandStep
from provisioner.install.steps.join import JoinStep
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
    outputs = split_probe_output(LocalNode().run("/bin/sh -s", stdin=probe_script(steps)).stdout)
    assert outputs == {0: "@@creates\npresent"}, "a step without a probe has no output"
    assert split_probe_output("@@provision-probe:0\n@@creates\npresent\n\n@@provision-probe-end\n") \
        == {0: "@@creates\npresent"}


def test_probe_output_cut_short_is_left_out():
    output = ("@@provision-probe:0\n@@creates\npresent\n\n@@provision-probe-end\n"
              "@@provision-probe:1\n@@sha\n")
    assert split_probe_output(output) == {0: "@@creates\npresent"}


def test_probes_run_at_once_and_come_back_in_order(tmp_path):
    # Each probe waits for the one after it to have started: run one after the other, they
    # would wait forever (the deadline below ends them); run at once, all finish.
    flags = [tmp_path / f"started-{i}" for i in range(4)]
    steps = []
    for i, flag in enumerate(flags):
        after = flags[i + 1] if i + 1 < len(flags) else flag
        steps.append(CommandStep(name=f"s{i}", cmd="true", unless=(
            f"touch {flag}; n=0; while [ ! -e {after} ] && [ $n -lt 100 ]; do sleep 0.05; "
            f"n=$((n + 1)); done; echo out-{i}; test -e {after}")))
    outputs = split_probe_output(LocalNode().run("/bin/sh -s", stdin=probe_script(steps)).stdout)
    assert outputs == {i: "@@unless\npass" for i in range(4)}


def test_probes_without_a_temporary_folder_run_one_after_the_other(tmp_path):
    steps = [CommandStep(name="x", cmd="true", creates="/"),
             CommandStep(name="y", cmd="true", unless="printf 'no newline'")]
    env_script = "TMPDIR=/nonexistent/x\n" + probe_script(steps)
    outputs = split_probe_output(LocalNode().run("/bin/sh -s", stdin=env_script).stdout)
    assert outputs == {0: "@@creates\npresent", 1: "@@unless\npass"}


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


# -- background steps and joins ------------------------------------------------------------


class ShellJob:
    """A ``Job`` over a spawned shell command: each stdout line is a progress event."""

    def __init__(self, name, spawned, on_progress):
        self.name, self.spawned, self.on_progress = name, spawned, on_progress

    def wait(self) -> str:
        lines = []
        while True:
            try:
                line = self.spawned.readline(timeout=1.0)
            except TimeoutError:
                continue
            if not line and self.spawned.finished:
                break
            lines.append(line)
            self.on_progress({"line": line})
        code = self.spawned.exit_code()
        self.spawned.close()
        if code != 0:
            raise StepFailed(f"step {self.name}: exited {code} after {lines}")
        return f"{len(lines)} line(s)"

    def stop(self) -> None:
        self.spawned.end_input()


class ShellJobStep(Step):
    """A step that can run in the background: ``cmd`` on its own channel, done once ``creates`` exists."""

    kind: str = "shell_job"
    cmd: str
    creates: str

    def probe(self):
        return f"test -e {self.creates} && echo present"

    def decide(self, output):
        return None if output == "present" else Change(f"{self.creates} is missing")

    def start(self, ctx, change):
        return ShellJob(self.name, ctx.node.spawn(self.cmd), ctx.on_progress)

    def apply(self, ctx, change):
        return self.start(ctx, change).wait()


def overlap_steps(tmp_path, background_cmd=None):
    """a; bg (background: waits for the file `fg` makes, so it can only end after fg ran);
    fg; join bg; after (needs what bg made)."""
    gate, made = tmp_path / "gate", tmp_path / "made"
    cmd = background_cmd or (f"echo begun; while [ ! -e {gate} ]; do sleep 0.02; done; "
                             f"touch {made}; echo finished")
    return [
        CommandStep(name="a", cmd=f"touch {tmp_path / 'a'}", creates=str(tmp_path / "a")),
        ShellJobStep(name="bg", background=True, cmd=cmd, creates=str(made)),
        CommandStep(name="fg", cmd=f"touch {gate}", creates=str(gate)),
        JoinStep(name="bg-ready", step="bg"),
        CommandStep(name="after", cmd=f"test -e {made} && touch {tmp_path / 'after'}",
                    creates=str(tmp_path / "after")),
    ]


def test_a_background_step_runs_while_the_next_steps_do_and_the_join_waits_for_it(tmp_path):
    node = LocalNode()
    events = []
    results = run_steps(node, overlap_steps(tmp_path), context(node), on_event=events.append)
    assert [(r.name, r.status) for r in results] == [
        ("a", "changed"), ("bg", "changed"), ("fg", "changed"), ("bg-ready", "changed"),
        ("after", "changed")]
    by_name = {r.name: r for r in results}
    assert by_name["bg"].background and not by_name["fg"].background
    assert by_name["bg"].detail == f"{tmp_path / 'made'} is missing: 2 line(s)"
    assert by_name["bg-ready"].detail.startswith("bg runs in the background until here: waited ")
    # Started, left running while fg ran (bg could not end before fg made its file), ended.
    order = [(e.phase, e.step.name) for e in events if e.phase != "output"]
    assert order.index(("background", "bg")) < order.index(("start", "fg"))
    assert order.index(("end", "fg")) < order.index(("end", "bg")) < order.index(("end", "bg-ready"))
    # Its progress arrives as its own events, with its own index, while later steps are current.
    progress = [e for e in events if e.phase == "progress"]
    assert [e.data["line"] for e in progress] == ["begun", "finished"]
    assert {(e.step.name, e.index) for e in progress} == {("bg", 1)}
    assert by_name["bg"].started < by_name["fg"].started < by_name["bg"].started + by_name["bg"].duration


def test_a_no_op_rerun_starts_nothing_and_costs_one_round_trip(tmp_path):
    node = LocalNode()
    run_steps(node, overlap_steps(tmp_path), context(node))
    node = LocalNode()
    events = []
    again = run_steps(node, overlap_steps(tmp_path), context(node), on_event=events.append)
    assert [(r.name, r.status) for r in again] == [
        ("a", "ok"), ("bg", "ok"), ("fg", "ok"), ("bg-ready", "ok"), ("after", "ok")]
    assert node.stats.commands == 1, "every check, the join's included, in one round trip"
    assert not [e for e in events if e.phase == "background"]


def test_a_failing_background_step_fails_its_join_with_its_error_before_the_next_step(tmp_path):
    node = LocalNode()
    steps = overlap_steps(tmp_path, background_cmd="echo begun; echo 'HTTP 404 for flux' >&2; exit 4")
    with pytest.raises(StepFailed) as caught:
        run_steps(node, steps, context(node))
    error = caught.value
    assert "step bg: exited 4" in str(error) and "re-run" in error.hint
    assert [(r.name, r.status) for r in error.results] == [
        ("a", "changed"), ("bg", "failed"), ("fg", "changed"), ("bg-ready", "failed")]
    assert not (tmp_path / "after").exists(), "nothing after the join ran"


def test_a_failing_foreground_step_stops_the_background_step_before_the_error_goes_up(tmp_path):
    log, pid = tmp_path / "log", tmp_path / "pid"
    # Like the fetcher: keeps writing until its stdin closes, then exits at once.
    writer = (f"echo $$ > {pid}; (while :; do echo x >> {log}; sleep 0.02; done) & ticker=$!; "
              f"echo begun; cat > /dev/null; kill $ticker; exit 3")
    steps = overlap_steps(tmp_path, background_cmd=writer)
    steps[2] = CommandStep(name="fg", cmd="echo broken >&2; exit 9")
    node = LocalNode()
    with pytest.raises(StepFailed) as caught:
        run_steps(node, steps, context(node))
    error = caught.value
    assert "step 'fg' failed" in str(error) and "exited 9" in str(error)
    statuses = [(r.name, r.status) for r in error.results]
    assert statuses == [("a", "changed"), ("bg", "stopped"), ("fg", "failed")]
    assert "stopped (step 'fg' failed)" in error.results[1].detail
    size = log.stat().st_size
    time.sleep(0.3)
    assert log.stat().st_size == size, "the background step stopped writing before up returned"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid.read_text()), 0)


def test_a_dry_run_shows_both_tracks_and_starts_nothing(tmp_path):
    node = LocalNode()
    events = []
    results = run_steps(node, overlap_steps(tmp_path), context(node), dry_run=True,
                        on_event=events.append)
    assert [(r.name, r.status) for r in results] == [
        ("a", "would-change"), ("bg", "would-change"), ("fg", "would-change"),
        ("bg-ready", "would-change"), ("after", "would-change")]
    by_name = {r.name: r for r in results}
    assert by_name["bg"].background and by_name["bg"].detail.endswith("(in the background)")
    assert by_name["bg-ready"].detail == "bg runs in the background until here"
    assert not [e for e in events if e.phase == "background"] and not list(tmp_path.iterdir())


def test_a_background_step_holds_its_gate_for_its_whole_run_and_unjoined_is_waited_for(tmp_path):
    held = []

    @contextlib.contextmanager
    def slot():
        held.append("enter")
        yield
        held.append("exit")

    made = tmp_path / "made"
    steps = [ShellJobStep(name="bg", background=True, cmd=f"sleep 0.2; touch {made}", creates=str(made)),
             CommandStep(name="fg", cmd="true")]
    node = LocalNode()
    results = run_steps(node, steps, context(node), gates={"shell_job": slot})
    assert [(r.name, r.status) for r in results] == [("bg", "changed"), ("fg", "changed")]
    assert made.exists() and held == ["enter", "exit"]


def test_a_probe_cut_short_is_probed_again_alone():
    class CutFirstAnswer(LocalNode):
        """The first round of probes comes back cut in the middle (a full disk on the node)."""

        def run(self, command, **kw):
            result = super().run(command, **kw)
            if self.stats.commands == 1:
                cut = result.stdout.index("@@provision-probe:1") + len("@@provision-probe:1\n@@")
                result = dataclasses.replace(result, stdout=result.stdout[:cut])
            return result

    steps = [CommandStep(name="x", cmd="true", creates="/"),
             CommandStep(name="y", cmd="true", unless="echo checked")]
    node = CutFirstAnswer()
    assert probe_steps(node, steps) == {0: "@@creates\npresent", 1: "@@unless\npass"}
    assert node.stats.commands == 2, "only the step cut short is probed again"


@pytest.mark.parametrize("reprobe", [True, False])
def test_reprobe_false_skips_the_round_of_checks_after_a_change(tmp_path, reprobe):
    made = tmp_path / "made"
    steps = [CommandStep(name="make", cmd=f"touch {made}", creates=str(made), reprobe=reprobe),
             CommandStep(name="after", cmd="true", unless=f"test -e {made}")]
    node = LocalNode()
    results = run_steps(node, steps, context(node))
    # Probed again, "after" sees the file "make" created; not probed again, it trusts the
    # first round (what reprobe: false declares is safe) and runs.
    assert [r.status for r in results] == ["changed", "ok" if reprobe else "changed"]
