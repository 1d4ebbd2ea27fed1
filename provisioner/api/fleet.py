"""The fleet commands: every ``fleet_*`` connects every node first (unknown host keys are
refused together), then runs the single-node function on each over that one connection, in
parallel (``provisioner.fleet``); one node's failure never stops the others."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..core.config import load_fleet
from ..core.errors import ProvisionError
from ..fleet.connect import connect_all, hold_tunnels
from ..fleet.report import FleetReport, failed_last_time, save_recap, session_report
from ..fleet.run import DownloadGate, FleetEventSink, inventory_of, members_of
from .benchmark import bench
from .connection import open_tunnel
from .planning import PlanReport, plan
from .provisioning import UpReport, launched, up
from .rental import check_wipe_options, down
from .service import StatusReport, status

if TYPE_CHECKING:
    import datetime

    from ..bench.report import BenchOptions, BenchReport
    from ..node.tunnel import Tunnel
    from ..teardown.report import DownReport
    from ..teardown.session import SessionEvent, SessionReport


FleetHold = Callable[[FleetReport, dict[str, "Tunnel"]], None]


def fleet_plan(fleet_path: str, *, accept_new_host_key: bool = False, parallel: Optional[int] = None,
               on_event: FleetEventSink = lambda name, event: None) -> "FleetReport[PlanReport]":
    """Plan every node of a fleet in parallel, each sized from its own facts."""
    config = load_fleet(fleet_path)
    workers = parallel or config.parallel
    with connect_all(fleet_path, members_of(fleet_path, config),
                     accept_new_host_key=accept_new_host_key, parallel=workers,
                     on_event=on_event) as connected:
        return connected.run("plan", lambda member, node: plan(
            member.label, config=member.config, connection=node), PlanReport, parallel=workers)


def fleet_up(fleet_path: str, *, parallel: Optional[int] = None, max_downloads: Optional[int] = None,
             fail_fast: bool = False, retry_failed: bool = False, timeout: Optional[float] = None,
             no_launch: bool = False, no_models: bool = False, no_smoke: bool = False,
             accept_new_host_key: bool = False,
             lock_wait: int = 10, on_event: FleetEventSink = lambda name, event: None,
             hold: Optional[FleetHold] = None,
             on_tunnel_event: Callable[[str, str], None] = lambda name, message: None,
             ) -> "FleetReport[UpReport]":
    """Bring every node up in parallel; a node that fails never stops the others.

    The recap is saved to ``.provision/last-fleet.json``; ``retry_failed`` redoes only the
    nodes that did not succeed there. At most ``max_downloads`` nodes fetch models at once.
    With ``hold``, a tunnel is opened to every healthy node on its own local port and
    ``hold(report, tunnels)`` runs until the user is done.
    """
    config = load_fleet(fleet_path)
    only = failed_last_time(fleet_path) if retry_failed else None
    members = members_of(fleet_path, config, only)
    workers = parallel or config.parallel
    gate = DownloadGate(max_downloads)

    def one(member, node) -> UpReport:
        return up(member.label, config=member.config, connection=node, no_launch=no_launch,
                  no_models=no_models, no_smoke=no_smoke, lock_wait=lock_wait,
                  download_slot=gate.slot_for(member.name, on_event),
                  on_event=lambda event: on_event(member.name, event))

    with connect_all(fleet_path, members, accept_new_host_key=accept_new_host_key,
                     parallel=workers, on_event=on_event) as connected:
        report = connected.run("up", one, UpReport, parallel=workers, fail_fast=fail_fast,
                               timeout=timeout)
        save_recap(report)
        if hold is None:
            return report
        healthy = [line.node for line in report.nodes if line.status == "ok" and launched(line.report.steps)]
        return hold_tunnels(report, healthy, lambda name: open_tunnel(
            connected.members[name].config, connected.nodes[name],
            lambda message: on_tunnel_event(name, message), accept_new_host_key), hold)


def fleet_status(fleet_path: str, *, accept_new_host_key: bool = False, parallel: Optional[int] = None,
                 on_event: FleetEventSink = lambda name, event: None) -> "FleetReport[StatusReport]":
    """Report every node's service and health; an unhealthy node counts as failed."""
    config = load_fleet(fleet_path)
    workers = parallel or config.parallel
    with connect_all(fleet_path, members_of(fleet_path, config),
                     accept_new_host_key=accept_new_host_key, parallel=workers,
                     on_event=on_event) as connected:
        return connected.run("status", lambda member, node: status(
            member.label, config=member.config, connection=node), StatusReport, parallel=workers,
            judge=_unhealthy)


def fleet_tunnel(fleet_path: str, *, hold: FleetHold, accept_new_host_key: bool = False,
                 parallel: Optional[int] = None, on_event: FleetEventSink = lambda name, event: None,
                 on_tunnel_event: Callable[[str, str], None] = lambda name, message: None,
                 ) -> "FleetReport[StatusReport]":
    """Reopen the tunnel to every node where ComfyUI is healthy and hold them all."""
    config = load_fleet(fleet_path)
    workers = parallel or config.parallel
    with connect_all(fleet_path, members_of(fleet_path, config),
                     accept_new_host_key=accept_new_host_key, parallel=workers,
                     on_event=on_event) as connected:
        report = connected.run("tunnel", lambda member, node: status(
            member.label, config=member.config, connection=node), StatusReport, parallel=workers,
            judge=_unhealthy)
        ports = {line.node: line.report.remote_port for line in report.nodes if line.status == "ok"}
        return hold_tunnels(report, list(ports), lambda name: open_tunnel(
            connected.members[name].config, connected.nodes[name],
            lambda message: on_tunnel_event(name, message), accept_new_host_key,
            remote_port=ports[name]), hold)


def _unhealthy(report: StatusReport) -> Optional[str]:
    return None if report.health.healthy else f"ComfyUI not healthy: {report.health.problem}"


def fleet_inventory(fleet_path: str) -> dict[str, Any]:
    """Return the fleet as an Ansible YAML inventory (``all.hosts.<name>``); no SSH."""
    return inventory_of(load_fleet(fleet_path))


def fleet_down(fleet_path: str, *, wipe: str = "none", keep_outputs_remote: bool = False,
               discard_outputs: bool = False, dry_run: bool = False, force: bool = False,
               drain_timeout: float = 300.0, accept_new_host_key: bool = False,
               break_lock: bool = False, lock_wait: int = 10, parallel: Optional[int] = None,
               on_event: FleetEventSink = lambda name, event: None) -> "FleetReport[DownReport]":
    """Harvest every node into its own folder (outputs.pull_to with {name}) and tear it down."""
    from ..teardown.report import DownReport

    check_wipe_options(wipe, keep_outputs_remote)
    config = load_fleet(fleet_path)
    workers = parallel or config.parallel

    def one(member, node) -> "DownReport":
        return down(member.label, config=member.config, connection=node, wipe=wipe,
                    keep_outputs_remote=keep_outputs_remote, discard_outputs=discard_outputs,
                    dry_run=dry_run, force=force, drain_timeout=drain_timeout,
                    break_lock=break_lock, lock_wait=lock_wait,
                    on_event=lambda event: on_event(member.name, event))

    with connect_all(fleet_path, members_of(fleet_path, config),
                     accept_new_host_key=accept_new_host_key, parallel=workers,
                     on_event=on_event) as connected:
        return connected.run("down", one, DownReport, parallel=workers,
                             judge=lambda report: None if report.ok else "; ".join(report.problems))


def fleet_bench(fleet_path: str, *, options: Optional["BenchOptions"] = None, history: bool = True,
                accept_new_host_key: bool = False, parallel: Optional[int] = None,
                on_event: FleetEventSink = lambda name, event: None) -> "FleetReport[BenchReport]":
    """Benchmark every node (in parallel: each on its own hardware); one row per node in the
    local CSV history, images pulled into each node's own outputs folder."""
    from ..bench.report import BenchReport

    config = load_fleet(fleet_path)
    workers = parallel or config.parallel

    def one(member, node) -> "BenchReport":
        return bench(member.label, config=member.config, connection=node, options=options,
                     history=history, on_event=lambda event: on_event(member.name, event))

    with connect_all(fleet_path, members_of(fleet_path, config),
                     accept_new_host_key=accept_new_host_key, parallel=workers,
                     on_event=on_event) as connected:
        return connected.run("bench", one, BenchReport, parallel=workers,
                             judge=lambda report: None if report.ok else report.error or "bench failed")


def fleet_session(fleet_path: str, *, deadline: "datetime.datetime", warn_before: tuple = (),
                  wipe: str = "none", keep_outputs_remote: bool = False, discard_outputs: bool = False,
                  drain_timeout: float = 60.0, no_models: bool = False, no_smoke: bool = False,
                  max_downloads: Optional[int] = None,
                  accept_new_host_key: bool = False, parallel: Optional[int] = None,
                  on_event: FleetEventSink = lambda name, event: None,
                  on_session: Callable[["SessionEvent"], None] = lambda event: None,
                  on_ready: Callable[["FleetReport"], None] = lambda report: None,
                  on_tunnel_event: Callable[[str, str], None] = lambda name, message: None,
                  ask: Callable[[], str] = lambda: "teardown") -> "FleetReport[SessionReport]":
    """``fleet up``, hold one tunnel per healthy node until ``deadline``, then ``fleet down``.

    ``on_ready(report)`` gets the up recap with the URLs once the tunnels are open. Ctrl-C
    calls ``ask()``: "teardown" ends now, "leave" keeps every node running. Every node that
    was reached is torn down, whether or not its ``up`` succeeded.
    """
    from ..teardown.report import DownReport
    from ..teardown.session import SessionEvent, hold_until

    check_wipe_options(wipe, keep_outputs_remote)
    config = load_fleet(fleet_path)
    workers = parallel or config.parallel
    gate = DownloadGate(max_downloads)
    held: dict[str, Any] = {}

    def one_up(member, node) -> UpReport:
        return up(member.label, config=member.config, connection=node, no_models=no_models,
                  no_smoke=no_smoke, download_slot=gate.slot_for(member.name, on_event),
                  on_event=lambda event: on_event(member.name, event))

    def one_down(member, node) -> "DownReport":
        return down(member.label, config=member.config, connection=node, wipe=wipe,
                    keep_outputs_remote=keep_outputs_remote, discard_outputs=discard_outputs,
                    drain_timeout=drain_timeout, interrupt_after_timeout=True,
                    on_event=lambda event: on_event(member.name, event))

    def hold(report, tunnels) -> None:
        on_ready(report)
        on_session(SessionEvent(kind="ready", deadline=deadline,
                                remaining=deadline.timestamp() - time.time()))
        held["end"], held["warnings"] = hold_until(deadline, list(warn_before), None, on_session, ask)

    with connect_all(fleet_path, members_of(fleet_path, config),
                     accept_new_host_key=accept_new_host_key, parallel=workers,
                     on_event=on_event) as connected:
        ups = connected.run("up", one_up, UpReport, parallel=workers)
        healthy = [line.node for line in ups.nodes if line.status == "ok" and launched(line.report.steps)]
        ups = hold_tunnels(ups, healthy, lambda name: open_tunnel(
            connected.members[name].config, connected.nodes[name],
            lambda message: on_tunnel_event(name, message), accept_new_host_key), hold)
        if "end" not in held:
            raise ProvisionError("no node came up healthy, so there is no session to hold",
                                 "run `provision fleet up` to see why")
        if held["end"] == "leave":
            on_session(SessionEvent(kind="left-running", deadline=deadline,
                                    message="the nodes are left running; end them with "
                                            "`provision fleet down`"))
            return session_report(ups, None, deadline, "left-running", held["warnings"])
        why = "the deadline is reached" if held["end"] == "deadline" else "interrupted"
        on_session(SessionEvent(kind="teardown", deadline=deadline,
                                message=f"{why}: harvesting the outputs and tearing every node down"))
        downs = connected.run("down", one_down, DownReport, parallel=workers,
                              judge=lambda report: None if report.ok else "; ".join(report.problems))
        ended_by = "deadline" if held["end"] == "deadline" else "interrupt"
        return session_report(ups, downs, deadline, ended_by, held["warnings"])
