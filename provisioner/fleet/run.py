"""Fleets: one action per node on a thread pool at the edge, each node's outcome a value.

The step engine and the steps stay single-node and know nothing of threads. This module
maps node names to outcomes (``run_fleet``), connects every node first so host keys are
settled before anything runs (``connect_all``: unknown keys are refused together), bounds
model downloads across the fleet (``DownloadGate``), and keeps the recap of the last run in
``.provision/last-fleet.json`` so ``--retry-failed`` knows which nodes to redo.

A node that cannot be reached, fails a step or runs out of time is marked failed with its
reason; the others carry on.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import dataclasses
import datetime
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Collection, ContextManager, Generic, Iterator, Literal, Optional, TypeVar

from pydantic import BaseModel, ConfigDict

from ..core.config import FleetConfig, NodeConfig
from ..core.errors import HostKeyError, ProvisionError, UnknownHostKey, UsageError
from ..core.redact import redact
from ..node.hostkeys import ACCEPT_FLAG

R = TypeVar("R")
T = TypeVar("T")
Status = Literal["ok", "failed", "skipped"]

RECAP_PATH = Path(".provision") / "last-fleet.json"  # relative to the current directory


# ---------------------------------------------------------------------------- members


@dataclasses.dataclass(frozen=True)
class Member:
    """One node of a fleet: its merged config, and how errors name it."""

    config: NodeConfig
    label: str  # e.g. "fleet.yaml: node m4-1"; api functions name their source with it

    @property
    def name(self) -> str:
        return self.config.name


def members_of(path: str | os.PathLike[str], fleet: FleetConfig,
               only: Optional[Collection[str]] = None) -> list[Member]:
    """Return the fleet's nodes in file order, or only those named in ``only``."""
    members = [Member(node, f"{path}: node {node.name}") for node in fleet.nodes]
    if only is None:
        return members
    return [member for member in members if member.name in only]


# ---------------------------------------------------------------------------- events


@dataclasses.dataclass(frozen=True)
class NodeEvent:
    """Fleet-level progress of one node; step progress arrives as ``engine.StepEvent``."""

    phase: Literal["connecting", "connected", "running", "waiting", "downloading", "done"]
    detail: str = ""
    status: Optional[Status] = None  # with phase "done"


FleetEventSink = Callable[[str, Any], None]  # (node name, NodeEvent | engine.StepEvent)


def _ignore(name: str, event: Any) -> None:
    pass


# ---------------------------------------------------------------------------- running


@dataclasses.dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one node's action came to: a value, or the error that stopped it."""

    status: Status
    value: Optional[T] = None
    error: Optional[ProvisionError] = None
    seconds: float = 0.0


def run_fleet(names: list[str], action: Callable[[str], T], *, parallel: int,
              fail_fast: bool = False, timeout: Optional[float] = None,
              on_timeout: Callable[[str], None] = lambda name: None,
              on_done: Callable[[str, Outcome[T]], None] = lambda name, outcome: None,
              ) -> dict[str, Outcome[T]]:
    """Run ``action(name)`` for every name, at most ``parallel`` at once; never raise for one.

    An action that raises marks its node failed with the reason. With ``fail_fast`` no new
    node starts after the first failure (those are "skipped"). With ``timeout`` (seconds per
    node) a node still running is marked failed and ``on_timeout(name)`` is called so the
    caller can cut it off (close its connection); its late result is ignored.
    """
    if not names:
        return {}
    lock = threading.Lock()
    started: dict[str, float] = {}
    stop = threading.Event()
    first_failure: list[str] = []

    def failed(name: str) -> None:
        # Set by the worker itself: its thread may take the next node before we look.
        with lock:
            if fail_fast and not stop.is_set():
                first_failure.append(name)
                stop.set()

    def attempt(name: str) -> Outcome[T]:
        with lock:
            if stop.is_set():
                return Outcome("skipped", error=ProvisionError(
                    f"not started: {first_failure[0]} failed first (--fail-fast)"))
            began = started[name] = time.monotonic()
        try:
            value = action(name)
        except Exception as error:  # noqa: BLE001 - isolate the node; the others carry on
            failed(name)
            reason = error if isinstance(error, ProvisionError) else _unexpected(error)
            return Outcome("failed", error=reason, seconds=time.monotonic() - began)
        return Outcome("ok", value=value, seconds=time.monotonic() - began)

    results: dict[str, Outcome[T]] = {}

    def finish(name: str, outcome: Outcome[T]) -> None:
        results[name] = outcome
        on_done(name, outcome)

    pool = futures.ThreadPoolExecutor(max_workers=max(1, min(parallel, len(names))),
                                      thread_name_prefix="fleet")
    pending = {pool.submit(attempt, name): name for name in names}
    try:
        while pending:
            done, _ = futures.wait(pending, timeout=0.2 if timeout is not None else None,
                                   return_when=futures.FIRST_COMPLETED)
            for future in done:
                finish(pending.pop(future), future.result())
            if timeout is None:
                continue
            now = time.monotonic()
            for future, name in list(pending.items()):
                with lock:
                    began = started.get(name)
                if began is not None and now - began > timeout:
                    del pending[future]
                    failed(name)
                    finish(name, Outcome("failed", seconds=now - began, error=ProvisionError(
                        f"timed out after {timeout:g} s; the node was cut off",
                        "re-run with --retry-failed (and a larger --timeout): it resumes")))
                    on_timeout(name)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return {name: results[name] for name in names}


def _unexpected(error: Exception) -> ProvisionError:
    return ProvisionError(f"unexpected {type(error).__name__}: {error}",
                          "this is probably a bug in provision; please report it")


class DownloadGate:
    """At most ``limit`` model downloads at once across the fleet (``--max-downloads``)."""

    def __init__(self, limit: Optional[int]) -> None:
        self._slots = threading.BoundedSemaphore(limit) if limit else None

    def slot_for(self, name: str, on_event: FleetEventSink = _ignore) -> Callable[[], ContextManager[None]]:
        """Return the context manager factory ``api.up(download_slot=...)`` enters for ``name``."""

        @contextlib.contextmanager
        def slot() -> Iterator[None]:
            if self._slots is None:
                yield
                return
            if not self._slots.acquire(blocking=False):
                on_event(name, NodeEvent("waiting", "waiting for a download slot"))
                self._slots.acquire()
            on_event(name, NodeEvent("downloading", "download slot taken"))
            try:
                yield
            finally:
                self._slots.release()

        return slot


# ---------------------------------------------------------------------------- reports


class NodeOutcome(BaseModel, Generic[R]):
    """One node's line of a fleet recap; ``report`` is the node command's own report."""

    model_config = ConfigDict(frozen=True)

    node: str
    host: str
    status: Status
    seconds: float
    error: Optional[str] = None
    hint: Optional[str] = None
    url: Optional[str] = None
    report: Optional[R] = None


class FleetReport(BaseModel, Generic[R]):
    """What a fleet command did on every node; ``--json`` is this model's JSON."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    command: str
    fleet: str
    seconds: float
    nodes: list[NodeOutcome[R]]

    @property
    def ok(self) -> bool:
        return all(node.status == "ok" for node in self.nodes)

    def names(self, status: Status) -> list[str]:
        return [node.node for node in self.nodes if node.status == status]


# ---------------------------------------------------------------------------- connections


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
                parallel: int, on_event: FleetEventSink = _ignore) -> Iterator[Connections]:
    """Connect to every node (in parallel) before anything runs; close them all at the end.

    Unknown host keys are collected and refused together, in one ``HostKeyError`` naming
    every node and fingerprint, before any node is changed. A node that is unreachable, or
    whose key differs from the trusted one, is that node's failure; the others carry on.
    """
    from ..node.remote import connect, target_of

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


def session_report(ups: FleetReport, downs: Optional[FleetReport], deadline: datetime.datetime,
                   ended_by: str, warnings: list[str]) -> FleetReport:
    """Join a fleet session's ``up`` and ``down`` recaps into one line per node."""
    from ..teardown.session import SessionReport

    after = {line.node: line for line in downs.nodes} if downs is not None else {}
    lines = []
    for line in ups.nodes:
        down = after.get(line.node)
        status, error, hint = line.status, line.error and f"up: {line.error}", line.hint
        if status == "ok" and down is not None and down.status != "ok":
            status, error, hint = down.status, down.error and f"down: {down.error}", down.hint
        report = SessionReport(node=line.node, deadline=deadline, ended_by=ended_by,  # type: ignore[arg-type]
                               url=line.url, warnings=warnings, up=line.report,
                               down=down.report if down is not None else None)
        lines.append(NodeOutcome[SessionReport](
            node=line.node, host=line.host, status=status, error=error, hint=hint, url=line.url,
            seconds=round(line.seconds + (down.seconds if down is not None else 0.0), 3),
            report=report))
    seconds = ups.seconds + (downs.seconds if downs is not None else 0.0)
    return FleetReport[SessionReport](command="session", fleet=ups.fleet, seconds=seconds, nodes=lines)


def inventory_of(fleet: FleetConfig) -> dict[str, Any]:
    """Return an Ansible YAML inventory of the fleet: ``all.hosts.<name>`` with connection vars."""
    hosts: dict[str, Any] = {}
    for node in fleet.nodes:
        entry: dict[str, Any] = {"ansible_host": node.host, "ansible_port": node.port,
                                 "ansible_user": node.user}
        if node.identity_file:
            entry["ansible_ssh_private_key_file"] = node.identity_file
        hosts[node.name] = entry
    return {"all": {"hosts": hosts}}


# ---------------------------------------------------------------------------- recap file


def save_recap(report: FleetReport, path: Path = RECAP_PATH) -> Path:
    """Record each node's last status for ``--retry-failed``; nodes this run did not touch
    keep the status they had."""
    fleet = str(Path(report.fleet).resolve())
    previous = _read_recap(path)
    nodes = previous.get("nodes", {}) if previous.get("fleet") == fleet else {}
    at = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    for line in report.nodes:
        nodes[line.node] = {"status": line.status, "error": line.error, "seconds": line.seconds,
                            "command": report.command, "at": at}
    data = {"schema_version": 1, "fleet": fleet, "command": report.command, "saved_at": at,
            "nodes": nodes}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def failed_last_time(fleet_path: str | os.PathLike[str], path: Path = RECAP_PATH) -> list[str]:
    """Return the nodes that did not succeed in the last recorded run of this fleet."""
    recap = _read_recap(path)
    if not recap:
        raise UsageError(f"--retry-failed: no recap of an earlier fleet run in {path}",
                         "run `provision fleet up` without --retry-failed first (from this folder)")
    fleet = str(Path(fleet_path).resolve())
    if recap.get("fleet") != fleet:
        raise UsageError(f"--retry-failed: {path} records a run of {recap.get('fleet')}, not {fleet}",
                         "run from the folder of that run, or without --retry-failed")
    return [name for name, line in recap.get("nodes", {}).items() if line.get("status") != "ok"]


def _read_recap(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise UsageError(f"{path}: cannot read the last fleet recap ({error})",
                         "delete it and run `provision fleet up` again") from None
    return data if isinstance(data, dict) else {}


__all__ = ["Member", "members_of", "NodeEvent", "Outcome", "run_fleet", "DownloadGate",
           "NodeOutcome", "FleetReport", "Connections", "connect_all", "unknown_keys_error",
           "hold_tunnels", "session_report", "inventory_of", "save_recap", "failed_last_time",
           "RECAP_PATH"]
