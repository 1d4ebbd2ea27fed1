"""The API layer: what each command does, as functions that return data.

Each command is one function (``plan``, ``up``, ``status``, ``down``, ``session``, ``bench``,
``fleet_*``...) that connects, calls into the layers below (install, node, comfy, teardown,
bench, fleet) and returns a report (a pydantic model whose JSON is the command's ``--json``).
Nothing here prints or exits: progress goes to the callbacks the caller passes, errors are
raised as ``ProvisionError``s, and the CLI renders both. The functions live in modules by
capability; this package re-exports them, loaded on first use, so callers use
``api.<name>``.
"""

import importlib
from typing import Any

# name -> the module that defines it; loaded on first use, so a command imports only the
# modules it needs (``up`` does not load the fleet or the benchmark).
_WHERE = {
    "bench": "benchmark", "run_jobs": "batch",
    "hub_token": "connection", "open_node": "connection", "open_tunnel": "connection",
    "FleetHold": "fleet", "fleet_bench": "fleet", "fleet_down": "fleet",
    "fleet_inventory": "fleet", "fleet_plan": "fleet", "fleet_session": "fleet",
    "fleet_status": "fleet", "fleet_tunnel": "fleet", "fleet_up": "fleet",
    "PlanReport": "planning", "RunCost": "planning", "StepPreview": "planning",
    "check_platform": "planning", "plan": "planning", "preview_steps": "planning",
    "UpReport": "provisioning", "up": "provisioning",
    "down": "rental", "session": "rental",
    "Health": "service", "ServiceState": "service", "StatusReport": "service",
    "check_health": "service", "logs": "service", "restart": "service", "status": "service",
    "tunnel": "service",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
