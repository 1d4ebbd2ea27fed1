"""Shared test data for the fleet modules: a fleet recap with given node statuses."""

from __future__ import annotations

from provisioner.fleet.report import FleetReport, NodeOutcome


def report_of(fleet_path, statuses: dict[str, str], command: str = "up") -> FleetReport:
    lines = [NodeOutcome(node=name, host="h", status=status, seconds=1.0,
                         error=None if status == "ok" else "connection refused")
             for name, status in statuses.items()]
    return FleetReport(command=command, fleet=str(fleet_path), seconds=2.0, nodes=lines)
