"""What an ``up`` records in the node's state.json, and how later commands read it back.

``installed_state`` builds the record (versions, refs, paths, models, which steps are done);
``installed_port`` and ``health_as_installed`` read it back (the port ComfyUI was launched on,
the health check of what is really installed) for ``status``, ``restart`` and ``tunnel``.
All are pure: reading and writing the file is ``node.state``'s.
"""

from __future__ import annotations

from typing import Any

from ..core.config import NodeConfig
from ..node.facts import NodeFacts
from ..node.layout import NodePaths, choose_python
from .engine import StepResult
from .sizing import ModelPlan
from .steps.wait_http import WaitHttpStep


def installed_state(cfg: NodeConfig, facts: NodeFacts, model_plan: ModelPlan, paths: NodePaths,
                    results: list[StepResult], previous: dict) -> dict:
    """Return what state.json records after an ``up``: versions, refs, paths, models."""
    # What is installed accumulates across runs: a later `up --no-models` does not un-install.
    this_run = {r.name for r in results if r.status in ("ok", "changed")}
    done = this_run | set((previous.get("last_up") or {}).get("steps_done", []))
    failed = next((r.name for r in results if r.status == "failed"), None)
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
        "models": [dict(f.model_dump(), dest=f"{paths.models}/{f.folder}/{f.file}")
                   for f in model_plan.files],
        "model_plan": {"model": model_plan.model, "quality": model_plan.quality},
        "remote_port": cfg.tunnel.remote_port,
        "last_up": {"status": "failed" if failed else "ok", "failed_step": failed,
                    "steps_done": sorted(done)},
        "downloads_verified": previous.get("downloads_verified", {}),
    }


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
