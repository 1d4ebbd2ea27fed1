"""What an ``up`` records in the node's state.json, and how later commands read it back.

``installed_state`` builds the record (versions, refs, paths, models, which steps are done,
when, on which boot); ``installed_port``, ``health_as_installed`` and ``rebooted_since_up``
read it back (the port ComfyUI was launched on, the health check of what is really
installed, whether the node rebooted since) for ``status``, ``restart`` and ``tunnel``.
All are pure: reading and writing the file is ``node.state``'s.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from ..core.config import NodeConfig
from ..node.facts import NodeFacts
from ..node.layout import NodePaths
from .engine import StepResult
from .sizing import ModelPlan
from .steps.wait_http import WaitHttpStep
from .toolchain import choose_python


def installed_state(cfg: NodeConfig, facts: NodeFacts, model_plan: ModelPlan, paths: NodePaths,
                    results: list[StepResult], previous: dict,
                    now: Optional[datetime] = None) -> dict:
    """Return what state.json records after an ``up``: versions, refs, paths, models, and
    when it ran (``now``, default the current time) on which boot of the node."""
    # What is installed accumulates across runs: a later `up --no-models` does not un-install.
    this_run = {r.name for r in results if r.status in ("ok", "changed")}
    done = this_run | set((previous.get("last_up") or {}).get("steps_done", []))
    failed = next((r.name for r in results if r.status == "failed"), None)
    at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="seconds")
    booted_at = facts.booted_at
    seen = previous.get("last_up") or {}
    # A run that changed nothing keeps the record as it was: a no-op `up` writes no state.
    if not failed and not any(r.status == "changed" for r in results) and seen.get("at") \
            and _same_boot(seen.get("booted_at"), booted_at):
        at, booted_at = seen["at"], seen["booted_at"]
    python = choose_python(cfg, facts)
    return {
        "node": cfg.name,
        "platform": facts.platform,
        "workdir": paths.workdir,
        "paths": paths.model_dump(),
        "python": {"path": python.path, "version": python.version},
        "torch": cfg.torch.model_dump(),
        "comfyui": cfg.comfyui.model_dump() if "comfyui" in this_run else previous.get("comfyui"),
        "gguf_node": cfg.gguf_node.model_dump() if "gguf-node" in this_run else previous.get("gguf_node"),
        "custom_nodes": _custom_nodes(cfg, this_run, previous),
        "models": [dict(f.model_dump(), dest=f"{paths.models}/{f.folder}/{f.file}")
                   for f in model_plan.files],
        "model_plan": {"model": model_plan.model, "quality": model_plan.quality},
        "remote_port": cfg.tunnel.remote_port,
        "last_up": {"status": "failed" if failed else "ok", "failed_step": failed,
                    "steps_done": sorted(done),
                    "at": at,
                    # the node's own boot time then: `status` compares it with today's, same clock
                    "booted_at": booted_at},
        "downloads_verified": previous.get("downloads_verified", {}),
    }


def _custom_nodes(cfg: NodeConfig, this_run: set[str], previous: dict) -> list[dict]:
    """node.yaml's custom nodes checked out by this run, or recorded by an earlier one."""
    before = {entry.get("name"): entry for entry in previous.get("custom_nodes") or []
              if isinstance(entry, dict)}
    return [node.model_dump() if f"custom-node:{node.name}" in this_run else before[node.name]
            for node in cfg.custom_nodes
            if f"custom-node:{node.name}" in this_run or node.name in before]


def installed_port(state: dict, cfg: NodeConfig) -> int:
    """Return the port ComfyUI was launched on; node.yaml's when nothing was recorded."""
    return int(state.get("remote_port") or cfg.tunnel.remote_port)


def health_as_installed(health_step: WaitHttpStep, state: dict, cfg: NodeConfig) -> WaitHttpStep:
    """Return the health check for what ``up`` actually installed: its port, and the model
    files only if the models step ever ran (``up --no-models`` installs none)."""
    checks: dict[str, Any] = {"port": installed_port(state, cfg), "when": True}
    if "models" not in (state.get("last_up") or {}).get("steps_done", []):
        checks.update(expect_unet=None, expect_clips=[])
    return health_step.model_copy(update=checks)


# Linux derives btime from the clock minus the uptime: it may move by a second or so between
# two readings of the same boot (and more after a large clock step by NTP).
BOOT_TIME_SLACK = 60


def rebooted_since_up(state: dict, booted_at: Optional[int]) -> bool:
    """Tell whether the node booted after the last ``up`` recorded in ``state``.

    Compares the boot time that ``up`` saw with ``booted_at`` (both the node's clock); a
    record without it (written before the field existed) falls back to the time of the
    ``up`` itself (the laptop's clock, so only as good as the two clocks agree)."""
    last_up = state.get("last_up") or {}
    if booted_at is None or not last_up:
        return False
    seen = last_up.get("booted_at")
    if isinstance(seen, int):
        return booted_at > seen + BOOT_TIME_SLACK
    at = up_time(state)
    return at is not None and booted_at > at.timestamp()


def _same_boot(seen: Any, booted_at: Optional[int]) -> bool:
    return isinstance(seen, int) and booted_at is not None and abs(booted_at - seen) <= BOOT_TIME_SLACK


def up_time(state: dict) -> Optional[datetime]:
    """Return when the last ``up`` recorded in ``state`` ran (UTC), or None if not recorded."""
    at = (state.get("last_up") or {}).get("at")
    try:
        when = datetime.fromisoformat(str(at)) if at else None
    except ValueError:
        return None
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when
