"""The API layer: what each command does, as functions that return data.

Each command is one function (``plan``, ``up``, ``status``, ``down``, ``session``, ``bench``,
``fleet_*``...) that connects, calls into the layers below (install, node, comfy, teardown,
bench, fleet) and returns a report (a pydantic model whose JSON is the command's ``--json``).
Nothing here prints or exits: progress goes to the callbacks the caller passes, errors are
raised as ``ProvisionError``s, and the CLI renders both. The functions live in modules by
capability; this package re-exports them, so callers use ``api.<name>``.
"""

from .benchmark import bench
from .connection import hub_token, open_node, open_tunnel
from .fleet import (
    FleetHold,
    fleet_bench,
    fleet_down,
    fleet_inventory,
    fleet_plan,
    fleet_session,
    fleet_status,
    fleet_tunnel,
    fleet_up,
)
from .planning import PlanReport, RunCost, StepPreview, check_platform, plan, preview_steps
from .provisioning import UpReport, up
from .rental import down, session
from .service import Health, ServiceState, StatusReport, check_health, logs, restart, status, tunnel

__all__ = [
    "PlanReport", "RunCost", "StepPreview", "check_platform", "plan", "preview_steps",
    "UpReport", "up", "open_node", "open_tunnel", "hub_token",
    "Health", "ServiceState", "StatusReport", "check_health", "logs", "restart", "status", "tunnel",
    "down", "session", "bench",
    "FleetHold", "fleet_bench", "fleet_down", "fleet_inventory", "fleet_plan", "fleet_session",
    "fleet_status", "fleet_tunnel", "fleet_up",
]
