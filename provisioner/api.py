"""What each command does, as functions that return data (the CLI renders it).

Nothing here prints or exits; errors are raised as ``ProvisionError``s.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator, Literal, Optional

from pydantic import BaseModel, ConfigDict

from .config import NodeConfig, load_node
from .engine import EventSink, StepResult, run_steps
from .errors import ConfigError, DownloadError, SizingError, StepFailed
from .facts import NodeFacts
from .playbook import load_steps
from .remote import NodeStats
from .sizing import ModelPlan
from .steps import StepContext
from .units import format_bytes


# Preflight disk check for downloads: the bytes still to fetch, 10% for the filesystem and
# the partial-file rename, and a fixed headroom so the node is not left with a full disk.
DOWNLOAD_DISK_FACTOR = 1.10
DOWNLOAD_DISK_HEADROOM = 2 * 10**9


class StepPreview(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    description: str


class RunCost(BaseModel):
    """SSH cost of a command: held to a budget by tests and benchmarks."""

    model_config = ConfigDict(frozen=True)

    connections: int = 0
    commands: int = 0
    transfers: int = 0

    @classmethod
    def of(cls, stats: NodeStats | None) -> "RunCost":
        if stats is None:
            return cls()
        return cls(connections=stats.connections, commands=stats.commands, transfers=stats.transfers)


class PlanReport(BaseModel):
    """Everything ``provision plan`` shows; ``--json`` is this model's JSON."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    node: str
    host: str
    facts_source: Literal["node", "assumed"]
    facts: NodeFacts
    plan: ModelPlan
    steps: list[StepPreview]
    cost: RunCost


@contextlib.contextmanager
def open_node(cfg: NodeConfig, *, accept_new_host_key: bool = False) -> Iterator:
    """Connect to the node of ``cfg`` for the duration of a ``with`` block."""
    from .remote import connect, target_of

    node = connect(target_of(cfg), accept_new_host_key=accept_new_host_key)
    try:
        yield node
    finally:
        node.close()


def plan(config_path: str, *, memory_bytes: Optional[int] = None,
         accept_new_host_key: bool = False) -> PlanReport:
    """Say what ``up`` would do: facts, model choice with reasons, memory, disk, steps.

    With ``memory_bytes`` it runs offline on assumed facts; else it connects once and reads
    the node's facts in one round trip.
    """
    from .catalog import load_catalog
    from .facts import assumed_facts, gather
    from .sizing import SizingOptions, choose_models

    cfg = load_node(config_path)
    stats = None
    if memory_bytes is not None:
        platform = "linux" if cfg.platform == "linux" else "macos"
        facts = assumed_facts(memory_bytes, platform)
    else:
        with open_node(cfg, accept_new_host_key=accept_new_host_key) as node:
            facts = gather(node, cfg.workdir)
            stats = node.stats
        check_platform(config_path, cfg, facts)
    model_plan = choose_models(facts, load_catalog(), SizingOptions.from_config(cfg))
    return PlanReport(
        node=cfg.name, host=cfg.host, facts_source="assumed" if facts.assumed else "node",
        facts=facts, plan=model_plan, steps=preview_steps(cfg, facts, model_plan),
        cost=RunCost.of(stats),
    )


class UpReport(BaseModel):
    """What ``provision up`` did; ``--json`` is this model's JSON."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    node: str
    host: str
    dry_run: bool
    ok: bool
    plan: ModelPlan
    steps: list[StepResult]
    changed: int
    duration: float
    cost: RunCost
    error: Optional[str] = None


def up(config_path: str, *, dry_run: bool = False, no_launch: bool = False,
       no_models: bool = False, accept_new_host_key: bool = False, break_lock: bool = False,
       lock_wait: int = 10, on_event: EventSink = lambda event: None) -> UpReport:
    """Bring the node to the playbook's state: facts -> sizing -> steps (-> launch).

    Raises ``StepFailed`` (with ``.report``, the UpReport so far) when a step fails.
    """
    from .catalog import load_catalog
    from .facts import gather
    from .layout import node_paths
    from .lock import node_lock
    from .sizing import SizingOptions, choose_models
    from .state import read_state, write_state

    started = time.monotonic()
    cfg = load_node(config_path)
    with open_node(cfg, accept_new_host_key=accept_new_host_key) as node:
        facts = gather(node, cfg.workdir)
        check_platform(config_path, cfg, facts)
        model_plan = choose_models(facts, load_catalog(), SizingOptions.from_config(cfg))
        if not model_plan.disk_ok and not no_models and not dry_run:
            raise SizingError(
                f"not enough free disk on {facts.disk_path}: need {format_bytes(model_plan.disk_needed_bytes)}, "
                f"have {format_bytes(model_plan.disk_free_bytes)} (short by "
                f"{format_bytes(model_plan.disk_shortfall_bytes)}); nothing was changed",
                "free space on the node, or choose a smaller quality: in node.yaml",
            )
        steps = load_steps(cfg, facts, model_plan,
                           {"skip_models": no_models, "skip_launch": no_launch})
        paths = node_paths(cfg, facts)
        token = hub_token(cfg)
        ctx = StepContext(node=node, paths=paths, secrets={"hf_token": token} if token else {})

        def report(results: list[StepResult], error: Optional[str] = None) -> UpReport:
            return UpReport(
                node=cfg.name, host=cfg.host, dry_run=dry_run, ok=error is None, plan=model_plan,
                steps=results, changed=sum(r.status == "changed" for r in results),
                duration=time.monotonic() - started, cost=RunCost.of(node.stats), error=error)

        if dry_run:
            return report(run_steps(node, steps, ctx, dry_run=True, on_event=on_event))
        with node_lock(node, paths.lock_dir, wait_seconds=lock_wait, force=break_lock):
            previous = read_state(node, paths.state_file)
            steps = preflight_downloads(node, cfg, facts, steps, token)
            try:
                results = run_steps(node, steps, ctx, on_event=on_event)
            except StepFailed as error:
                results = getattr(error, "results", [])
                write_state(node, paths.state_file,
                            installed_state(cfg, facts, model_plan, paths, results, previous), previous)
                error.report = report(results, str(error))  # type: ignore[attr-defined]
                raise
            write_state(node, paths.state_file,
                        installed_state(cfg, facts, model_plan, paths, results, previous), previous)
        return report(results)


def hub_token(cfg: NodeConfig) -> Optional[str]:
    """Read the HF token from the env var node.yaml names; register it for redaction."""
    import os

    from .redact import register_secret

    token = os.environ.get(cfg.hf.token_env) or None
    register_secret(token)
    return token


def preflight_downloads(node, cfg: NodeConfig, facts: NodeFacts, steps: list, token: Optional[str]) -> list:
    """Before any byte moves: resolve exact sizes and sha256 of the files still to fetch,
    check the token may read gated repos, and check the node's disk has room for them."""
    from . import hub
    from .engine import probe_one
    from .steps.download import DownloadStep

    checked = []
    for step in steps:
        if not isinstance(step, DownloadStep) or not step.when:
            checked.append(step)
            continue
        todo, partial = step.pending(probe_one(node, step))
        resolved = hub.resolve([step.files[i] for i in todo], step.endpoint, token, cfg.hf.token_env)
        files = list(step.files)
        for index, spec in zip(todo, resolved):
            files[index] = spec
        remaining = sum(max((files[i].size or 0) - partial.get(i, 0), 0) for i in todo)
        needed = int(remaining * DOWNLOAD_DISK_FACTOR) + DOWNLOAD_DISK_HEADROOM
        if todo and needed > facts.disk_free_bytes:
            raise DownloadError(
                f"not enough free disk on {facts.disk_path} for the models: need "
                f"{format_bytes(needed)} ({format_bytes(remaining)} still to fetch + 10% + "
                f"{format_bytes(DOWNLOAD_DISK_HEADROOM)}), have {format_bytes(facts.disk_free_bytes)}, "
                f"short by {format_bytes(needed - facts.disk_free_bytes)}; nothing was downloaded",
                "free space on the node, or choose a smaller quality: in node.yaml",
            )
        checked.append(step.model_copy(update={"files": files}))
    return checked


def installed_state(cfg: NodeConfig, facts: NodeFacts, model_plan: ModelPlan, paths,
                    results: list[StepResult], previous: dict) -> dict:
    """Return what state.json records after an ``up``: versions, refs, paths, models."""
    from .layout import choose_python

    done = {r.name for r in results if r.status in ("ok", "changed")}
    failed = next((r.name for r in results if r.status == "failed"), None)
    python = choose_python(cfg, facts)
    return {
        "node": cfg.name,
        "platform": facts.platform,
        "workdir": paths.workdir,
        "paths": paths.model_dump(),
        "python": {"path": python.path, "version": python.version},
        "torch": cfg.torch.model_dump(),
        "comfyui": cfg.comfyui.model_dump() if "comfyui" in done else previous.get("comfyui"),
        "gguf_node": cfg.gguf_node.model_dump() if "gguf-node" in done else previous.get("gguf_node"),
        "models": [dict(f.model_dump(), dest=f"{paths.models}/{f.folder}/{f.file}")
                   for f in model_plan.files],
        "model_plan": {"model": model_plan.model, "quality": model_plan.quality},
        "remote_port": cfg.tunnel.remote_port,
        "last_up": {"status": "failed" if failed else "ok", "failed_step": failed,
                    "steps_done": sorted(done)},
        "downloads_verified": previous.get("downloads_verified", {}),
    }


def check_platform(config_path: str, cfg: NodeConfig, facts: NodeFacts) -> None:
    """Refuse when node.yaml pins a platform the node does not run."""
    if cfg.platform != "auto" and cfg.platform != facts.platform:
        raise ConfigError(
            f"{config_path}: platform: says {cfg.platform}, but the node runs {facts.platform} "
            f"({facts.os_name} {facts.os_version})",
            "set platform: auto, or point host: at the right node",
        )


def preview_steps(cfg: NodeConfig, facts: NodeFacts, model_plan) -> list[StepPreview]:
    """List the steps ``up`` would run for this node, in order."""
    return [StepPreview(name=step.name, kind=step.kind, description=step.describe())
            for step in load_steps(cfg, facts, model_plan)]
