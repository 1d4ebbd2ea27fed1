"""The fleet's edge: run_fleet's isolation, bounds, fail-fast and timeouts; the download
gate; the fleet's members as an inventory. No SSH here: the e2e tests
(tests/e2e/test_fleet.py) drive all of it against real sshd nodes."""

from __future__ import annotations

import threading

from provisioner.core.config import FleetConfig, NodeConfig
from provisioner.core.errors import ProvisionError, StepFailed
from provisioner.core.units import GIB
from provisioner.fleet.run import DownloadGate, NodeEvent, inventory_of, run_fleet
from provisioner.install.engine import run_steps
from provisioner.install.steps import StepContext
from provisioner.install.steps.command import CommandStep
from provisioner.node.facts import assumed_facts
from provisioner.node.layout import node_paths
from provisioner.node.remote import LocalNode


class Peak:
    """Count how many callers are inside at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)

    def __exit__(self, *exc) -> None:
        with self._lock:
            self.inside -= 1


# -- run_fleet ----------------------------------------------------------------------------


def test_a_failing_node_is_isolated_and_carries_its_reason():
    def action(name: str) -> str:
        if name == "bad":
            raise StepFailed("step 'venv' failed: exit 1", "fix it")
        if name == "bug":
            raise KeyError("surprise")
        return name.upper()

    outcomes = run_fleet(["a", "bad", "bug", "b"], action, parallel=2)
    assert list(outcomes) == ["a", "bad", "bug", "b"], "results keep the fleet's order"
    assert {name: o.status for name, o in outcomes.items()} == \
        {"a": "ok", "bad": "failed", "bug": "failed", "b": "ok"}
    assert outcomes["a"].value == "A" and outcomes["b"].value == "B"
    assert str(outcomes["bad"].error) == "step 'venv' failed: exit 1"
    assert isinstance(outcomes["bug"].error, ProvisionError)
    assert "KeyError" in str(outcomes["bug"].error)


def test_parallel_bounds_how_many_nodes_run_at_once():
    peak = Peak()
    barrier = threading.Barrier(3, timeout=10)  # breaks unless 3 really run together

    def action(name: str) -> None:
        with peak:
            barrier.wait()

    outcomes = run_fleet([f"n{i}" for i in range(9)], action, parallel=3)
    assert all(o.status == "ok" for o in outcomes.values()), outcomes
    assert peak.peak == 3


def test_fail_fast_starts_no_new_node_after_the_first_failure():
    ran = []

    def action(name: str) -> None:
        ran.append(name)
        if name == "n1":
            raise ProvisionError("boom")

    outcomes = run_fleet(["n0", "n1", "n2", "n3"], action, parallel=1, fail_fast=True)
    assert ran == ["n0", "n1"]
    assert [o.status for o in outcomes.values()] == ["ok", "failed", "skipped", "skipped"]
    assert "n1 failed first (--fail-fast)" in str(outcomes["n2"].error)


def test_without_fail_fast_every_node_runs():
    def action(name: str) -> None:
        raise ProvisionError("boom")

    outcomes = run_fleet(["n0", "n1", "n2"], action, parallel=1)
    assert [o.status for o in outcomes.values()] == ["failed", "failed", "failed"]


def test_a_node_past_its_timeout_is_failed_and_cut_off_while_the_others_finish():
    cut = threading.Event()
    late = threading.Event()

    def action(name: str) -> str:
        if name == "slow":
            cut.wait(30)  # stands for a command blocked until its connection is closed
            late.set()
            raise ProvisionError("connection lost")
        return "done"

    done_events = []
    outcomes = run_fleet(["fast", "slow", "also-fast"], action, parallel=3, timeout=0.3,
                         on_timeout=lambda name: cut.set(),
                         on_done=lambda name, outcome: done_events.append((name, outcome.status)))
    assert outcomes["fast"].status == "ok" and outcomes["also-fast"].status == "ok"
    assert outcomes["slow"].status == "failed"
    assert "timed out after 0.3 s" in str(outcomes["slow"].error)
    assert cut.is_set(), "the timed-out node was cut off"
    assert late.wait(5)
    assert sorted(done_events) == [("also-fast", "ok"), ("fast", "ok"), ("slow", "failed")]


def test_an_empty_fleet_runs_nothing():
    assert run_fleet([], lambda name: None, parallel=4) == {}


# -- download gate ------------------------------------------------------------------------


def test_the_download_gate_bounds_downloads_across_the_fleet_and_says_who_waits():
    gate = DownloadGate(2)
    peak = Peak()
    events = []
    lock = threading.Lock()
    all_waiting = threading.Event()

    def note(name, event) -> None:
        with lock:
            events.append((name, event.phase))
            if sum(phase == "waiting" for _, phase in events) == 4:
                all_waiting.set()

    def action(name: str) -> None:
        with gate.slot_for(name, note)():
            with peak:
                # The first two hold their slots until the four others queue up behind them.
                assert all_waiting.wait(10), "the others never queued for a slot"

    outcomes = run_fleet([f"n{i}" for i in range(6)], action, parallel=6)
    assert all(o.status == "ok" for o in outcomes.values()), outcomes
    assert peak.peak == 2
    assert sum(phase == "downloading" for _, phase in events) == 6
    assert sum(phase == "waiting" for _, phase in events) == 4, "4 of 6 waited for a slot"


def test_without_a_bound_the_gate_never_waits():
    events = []
    with DownloadGate(None).slot_for("n", lambda name, event: events.append(event))():
        pass
    assert events == []


def test_the_engine_enters_a_gate_only_around_the_apply_of_its_step_kind(tmp_path):
    entered = []

    class Gate:
        def __enter__(self):
            entered.append("in")

        def __exit__(self, *exc):
            entered.append("out")

    marker = tmp_path / "made"
    steps = [CommandStep(name="make", cmd=f"touch {marker}", creates=str(marker))]
    node = LocalNode()
    ctx = StepContext(node=node, paths=node_paths(NodeConfig(host="h"), assumed_facts(16 * GIB)))
    first = run_steps(node, steps, ctx, gates={"command": Gate, "download": Gate})
    assert [r.status for r in first] == ["changed"] and entered == ["in", "out"]
    again = run_steps(node, steps, ctx, gates={"command": Gate})
    assert [r.status for r in again] == ["ok"] and entered == ["in", "out"], "a no-op never waits"


# -- members, events ------------------------------------------------------------------


def test_inventory_names_every_host_with_its_connection_vars():
    fleet = FleetConfig(nodes=[
        NodeConfig(name="a", host="10.0.0.1", user="admin", identity_file="/keys/a"),
        NodeConfig(name="b", host="10.0.0.2", port=2222, user="root"),
    ])
    assert inventory_of(fleet) == {"all": {"hosts": {
        "a": {"ansible_host": "10.0.0.1", "ansible_port": 22, "ansible_user": "admin",
              "ansible_ssh_private_key_file": "/keys/a"},
        "b": {"ansible_host": "10.0.0.2", "ansible_port": 2222, "ansible_user": "root"},
    }}}


def test_node_events_are_plain_values():
    event = NodeEvent("done", "connection refused", "failed")
    assert (event.phase, event.detail, event.status) == ("done", "connection refused", "failed")
