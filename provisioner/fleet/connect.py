"""Connect every node of a fleet before anything runs, then run an action over those
connections (``connect_all`` -> ``Connections.run``); open and hold one tunnel per node.

Unknown host keys are refused together, in one error naming every node, before any node is
changed; a node that cannot be reached is that node's failure and the others carry on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Callable, ContextManager, Iterator, Optional, TypeVar

from ..core.errors import HostKeyError, ProvisionError, UnknownHostKey
from ..core.redact import redact
from .report import FleetReport, NodeOutcome
from .run import FleetEventSink, Member, NodeEvent, Outcome, run_fleet

R = TypeVar("R")


class Connections:
    """One open SSH connection per reachable node, and the reason for each that is not."""

    def __init__(self, fleet_path: str, members: list[Member], outcomes: dict[str, Outcome[Any]],
                 on_event: FleetEventSink, started: float) -> None:
        self.fleet_path = fleet_path
        self.members = {member.name: member for member in members}
        self.nodes: dict[str, Any] = {name: outcome.value for name, outcome in outcomes.items()
                                      if outcome.status == "ok"}
        self.failures = {name: outcome for name, outcome in outcomes.items() if outcome.status != "ok"}
        self.connect_seconds = {name: outcome.seconds for name, outcome in outcomes.items()}
        self.on_event = on_event
        self.started = started

    def run(self, command: str, action: Callable[[Member, Any], R], report_type: type, *,
            parallel: int, fail_fast: bool = False, timeout: Optional[float] = None,
            judge: Callable[[R], Optional[str]] = lambda value: None) -> FleetReport:
        """Run ``action(member, node)`` on every reachable node; ``judge`` names what makes a
        finished node count as failed (e.g. unhealthy), else None."""

        def one(name: str) -> R:
            self.on_event(name, NodeEvent("running"))
            return action(self.members[name], self.nodes[name])

        def done(name: str, outcome: Outcome[R]) -> None:
            problem = judge(outcome.value) if outcome.status == "ok" else None  # type: ignore[arg-type]
            detail = problem or (str(outcome.error) if outcome.error else "")
            self.on_event(name, NodeEvent("done", detail, "failed" if problem else outcome.status))

        reachable = [name for name in self.members if name in self.nodes]
        if fail_fast and self.failures:
            first = next(iter(self.failures))
            outcomes: dict[str, Outcome[R]] = {name: Outcome("skipped", error=ProvisionError(
                f"not started: {first} failed first (--fail-fast)")) for name in reachable}
            for name, outcome in outcomes.items():
                done(name, outcome)
        else:
            outcomes = run_fleet(reachable, one, parallel=parallel, fail_fast=fail_fast,
                                 timeout=timeout, on_timeout=self._cut_off, on_done=done)
        line_type = NodeOutcome[report_type]  # type: ignore[valid-type]
        lines = []
        for name, member in self.members.items():
            outcome = self.failures.get(name) or outcomes[name]
            if name in self.nodes:  # the time a node took includes connecting to it
                outcome = dataclasses.replace(outcome, seconds=outcome.seconds + self.connect_seconds[name])
            lines.append(_line(line_type, member, outcome, judge))
        return FleetReport[report_type](command=command, fleet=self.fleet_path, nodes=lines,  # type: ignore[valid-type]
                                        seconds=time.monotonic() - self.started)

    def _cut_off(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.nodes[name].close()


def _line(line_type: type[NodeOutcome], member: Member, outcome: Outcome[Any],
          judge: Callable[[Any], Optional[str]]) -> NodeOutcome:
    error = outcome.error
    status, message, hint = outcome.status, None, None
    if error is not None:
        message, hint = redact(str(error)), redact(error.hint) or None
    report = outcome.value if error is None else getattr(error, "report", None)
    if status == "ok":
        problem = judge(outcome.value)
        if problem:
            status, message = "failed", redact(problem)
    return line_type(node=member.name, host=member.config.host, status=status,
                     seconds=round(outcome.seconds, 3), error=message, hint=hint, report=report)


@contextlib.contextmanager
def connect_all(fleet_path: str, members: list[Member], *, accept_new_host_key: bool,
                parallel: int, on_event: FleetEventSink = lambda name, event: None,
                ) -> Iterator[Connections]:
    """Connect to every node (in parallel) before anything runs; close them all at the end.

    Unknown host keys are collected and refused together, in one ``HostKeyError`` naming
    every node and fingerprint, before any node is changed. A node that is unreachable, or
    whose key differs from the trusted one, is that node's failure; the others carry on.
    """
    from ..node.connect import connect, target_of

    by_name = {member.name: member for member in members}
    started = time.monotonic()

    def reach(name: str):
        on_event(name, NodeEvent("connecting"))
        return connect(target_of(by_name[name].config), accept_new_host_key=accept_new_host_key)

    def reached(name: str, outcome: Outcome[Any]) -> None:
        if outcome.status == "ok":
            on_event(name, NodeEvent("connected"))
        elif not isinstance(outcome.error, UnknownHostKey):
            on_event(name, NodeEvent("done", str(outcome.error), "failed"))

    outcomes = run_fleet(list(by_name), reach, parallel=parallel, on_done=reached)
    nodes: dict[str, Any] = {name: outcome.value for name, outcome in outcomes.items()
                             if outcome.status == "ok"}
    try:
        unknown = {name: outcome.error for name, outcome in outcomes.items()
                   if isinstance(outcome.error, UnknownHostKey)}
        if unknown:
            raise unknown_keys_error(unknown)  # type: ignore[arg-type]
        yield Connections(str(fleet_path), members, outcomes, on_event, started)
    finally:
        for node in nodes.values():
            with contextlib.suppress(Exception):
                node.close()


def unknown_keys_error(unknown: dict[str, UnknownHostKey]) -> HostKeyError:
    """Return one refusal naming every node whose host key is unknown, and its fingerprint."""
    from ..node.hostkeys import ACCEPT_FLAG  # here, so importing a fleet does not load paramiko

    listed = "; ".join(f"{name} ({error.where}) {error.key_type} {error.fingerprint}"
                       for name, error in unknown.items())
    count = f"{len(unknown)} nodes" if len(unknown) > 1 else "1 node"
    return HostKeyError(
        f"unknown host keys on {count}: {listed}; refusing to connect to any node",
        f"if those fingerprints are the ones your provider shows, re-run with {ACCEPT_FLAG} "
        "(they are then recorded), or pin each as host_key: in the fleet file",
    )


def hold_tunnels(report: FleetReport, names: list[str], opener: Callable[[str], ContextManager[Any]],
                 hold: Callable[[FleetReport, dict[str, Any]], None]) -> FleetReport:
    """Open a tunnel to each of ``names`` (``opener(name)``), put the URLs in the report and
    run ``hold(report, tunnels)`` while they are open; return the report with the URLs.

    A node whose tunnel cannot open (its pinned local port is taken) is marked failed."""
    with contextlib.ExitStack() as stack:
        tunnels: dict[str, Any] = {}
        problems: dict[str, ProvisionError] = {}
        for name in names:
            try:
                tunnels[name] = stack.enter_context(opener(name))
            except ProvisionError as error:
                problems[name] = error
        lines = []
        for line in report.nodes:
            if line.node in tunnels:
                line = line.model_copy(update={"url": tunnels[line.node].url})
            elif line.node in problems:
                problem = problems[line.node]
                line = line.model_copy(update={"status": "failed", "error": redact(f"tunnel: {problem}"),
                                               "hint": redact(problem.hint) or None})
            lines.append(line)
        report = report.model_copy(update={"nodes": lines})
        if tunnels:
            hold(report, tunnels)
    return report


__all__ = ["Connections", "connect_all", "unknown_keys_error", "hold_tunnels"]
