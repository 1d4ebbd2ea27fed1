"""What a fleet command did on every node (``FleetReport``), and the recap of the last run
kept in ``.provision/last-fleet.json`` so ``--retry-failed`` knows which nodes to redo."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Generic, Literal, Optional, TypeVar

from pydantic import BaseModel, ConfigDict

from ..core.errors import UsageError
from .run import Status

R = TypeVar("R")

RECAP_PATH = Path(".provision") / "last-fleet.json"  # relative to the current directory


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


__all__ = ["NodeOutcome", "FleetReport", "session_report", "save_recap", "failed_last_time",
           "RECAP_PATH"]
