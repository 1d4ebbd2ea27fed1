"""What each command does, as functions that return data (the CLI renders it).

Nothing here prints or exits; errors are raised as ``ProvisionError``s.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, Literal, Optional

from pydantic import BaseModel, ConfigDict

from ..core.config import NodeConfig, load_node
from ..core.errors import ConfigError, DownloadError, ProvisionError, StepFailed
from ..core.units import format_bytes
from ..install.engine import EventSink, StepResult, probe_steps, run_steps
from ..install.playbook import load_steps
from ..install.sizing import ModelPlan
from ..install.steps import StepContext
from ..node.facts import NodeFacts
from ..node.memory import MemorySample
from ..node.remote import NodeStats

if TYPE_CHECKING:
    import datetime

    from ..fleet.run import FleetEventSink, FleetReport
    from ..node.tunnel import Tunnel
    from ..teardown.down import DownReport, TeardownEvent
    from ..teardown.session import SessionEvent, SessionReport


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
def open_node(cfg: NodeConfig, *, accept_new_host_key: bool = False, reuse=None) -> Iterator:
    """Connect to the node of ``cfg`` for the duration of a ``with`` block.

    With ``reuse`` (a connection a fleet opened) that connection is used and left open."""
    from ..node.remote import connect, target_of

    if reuse is not None:
        yield reuse
        return
    node = connect(target_of(cfg), accept_new_host_key=accept_new_host_key)
    try:
        yield node
    finally:
        node.close()


def plan(config_path: str, *, memory_bytes: Optional[int] = None,
         accept_new_host_key: bool = False, config: Optional[NodeConfig] = None,
         connection=None) -> PlanReport:
    """Say what ``up`` would do: facts, model choice with reasons, memory, disk, steps.

    With ``memory_bytes`` it runs offline on assumed facts; else it connects once and reads
    the node's facts in one round trip. A fleet passes ``config`` (then ``config_path`` only
    names the node in errors) and its open ``connection``.
    """
    from ..install.catalog import load_catalog
    from ..install.sizing import SizingOptions, choose_models
    from ..node.facts import assumed_facts, gather

    cfg = config or load_node(config_path)
    stats = None
    if memory_bytes is not None:
        platform = "linux" if cfg.platform == "linux" else "macos"
        facts = assumed_facts(memory_bytes, platform)
    else:
        with open_node(cfg, accept_new_host_key=accept_new_host_key, reuse=connection) as node:
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
       lock_wait: int = 10, on_event: EventSink = lambda event: None,
       hold: Optional[Callable[[UpReport, "Tunnel"], None]] = None,
       on_tunnel_event: Callable[[str], None] = lambda message: None,
       config: Optional[NodeConfig] = None, connection=None,
       download_slot: Optional[Callable[[], ContextManager[object]]] = None) -> UpReport:
    """Bring the node to the playbook's state: facts -> sizing -> steps (-> launch).

    Raises ``StepFailed`` (with ``.report``, the UpReport so far) when a step fails. With
    ``hold``, once ComfyUI is healthy the tunnel is opened on the same connection and
    ``hold(report, tunnel)`` runs (it returns when the user is done, e.g. on Ctrl-C).
    A fleet passes ``config`` (then ``config_path`` only names the node in errors), its open
    ``connection``, and ``download_slot``, entered around the model downloads only.
    """
    from ..install.catalog import load_catalog
    from ..install.sizing import SizingOptions, choose_models
    from ..node.facts import gather
    from ..node.layout import node_paths
    from ..node.lock import node_lock
    from ..node.state import read_state, write_state

    started = time.monotonic()
    cfg = config or load_node(config_path)
    with open_node(cfg, accept_new_host_key=accept_new_host_key, reuse=connection) as node:
        facts = gather(node, cfg.workdir)
        check_platform(config_path, cfg, facts)
        model_plan = choose_models(facts, load_catalog(), SizingOptions.from_config(cfg))
        # The disk check is preflight_downloads': it counts only the bytes still to fetch, so
        # a re-run after the models landed is not refused for the space they now take.
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
            probed = probe_steps(node, steps)
            steps = preflight_downloads(cfg, facts, steps, probed, token)
            try:
                results = run_steps(node, steps, ctx, on_event=on_event, probed=probed,
                                    gates={"download": download_slot} if download_slot else None)
            except StepFailed as error:
                results = getattr(error, "results", [])
                write_state(node, paths.state_file,
                            installed_state(cfg, facts, model_plan, paths, results, previous), previous)
                error.report = report(results, str(error))  # type: ignore[attr-defined]
                raise
            write_state(node, paths.state_file,
                        installed_state(cfg, facts, model_plan, paths, results, previous), previous)
        final = report(results)
        launched = any(r.name == "health" and r.status in ("ok", "changed") for r in results)
        if hold is not None and launched:
            with open_tunnel(cfg, node, on_tunnel_event, accept_new_host_key) as tunnel:
                hold(final, tunnel)
        return final


@contextlib.contextmanager
def open_tunnel(cfg: NodeConfig, node, on_event: Callable[[str], None],
                accept_new_host_key: bool = False, remote_port: Optional[int] = None):
    """Open the local tunnel to ComfyUI over ``node``'s connection; reconnect if it drops."""
    from ..node.remote import connect, target_of
    from ..node.tunnel import Tunnel

    tunnel = Tunnel(node, remote_port or cfg.tunnel.remote_port, cfg.tunnel.local_port,
                    pinned=cfg.tunnel.pin_local_port, on_event=on_event,
                    reconnect=lambda: connect(target_of(cfg), accept_new_host_key=accept_new_host_key))
    with tunnel:
        try:
            yield tunnel
        finally:
            if tunnel.node is not node:
                tunnel.node.close()


def hub_token(cfg: NodeConfig) -> Optional[str]:
    """Read the HF token from the env var node.yaml names; register it for redaction."""
    import os

    from ..core.redact import register_secret

    token = os.environ.get(cfg.hf.token_env) or None
    register_secret(token)
    return token


def preflight_downloads(cfg: NodeConfig, facts: NodeFacts, steps: list, probed: dict[int, str],
                        token: Optional[str]) -> list:
    """Before any byte moves: resolve exact sizes and sha256 of the files still to fetch,
    check the token may read gated repos, and check the node's disk has room for them.

    ``probed`` holds the steps' probe outputs (``engine.probe_steps``)."""
    from ..install import hub
    from ..install.steps.download import DownloadStep

    checked = []
    for index, step in enumerate(steps):
        if not isinstance(step, DownloadStep) or not step.when:
            checked.append(step)
            continue
        todo, partial = step.pending(probed.get(index))
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
    from ..node.layout import choose_python

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


# ---------------------------------------------------------------------------- after up


class ServiceState(BaseModel):
    model_config = ConfigDict(frozen=True)

    loaded: bool
    running: bool
    pid: Optional[int] = None
    uptime: Optional[str] = None  # ps etime, e.g. "01:02:03"


class Health(BaseModel):
    model_config = ConfigDict(frozen=True)

    answering: bool
    healthy: bool = False
    problem: Optional[str] = None
    device: Optional[str] = None
    comfyui_version: Optional[str] = None
    pytorch_version: Optional[str] = None
    unets: list[str] = []
    text_encoders: list[str] = []


class StatusReport(BaseModel):
    """What ``provision status`` shows; ``--json`` is this model's JSON."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    node: str
    host: str
    installed: bool
    last_up: Optional[dict[str, Any]] = None
    model_plan: Optional[dict[str, Any]] = None
    remote_port: int
    service: ServiceState
    health: Health
    memory: Optional[MemorySample] = None


def _node_steps(cfg: NodeConfig, node, facts: NodeFacts) -> dict[str, Any]:
    """Return the playbook's steps by name, as ``up`` renders them for this node."""
    from ..install.catalog import load_catalog
    from ..install.sizing import SizingOptions, choose_models

    model_plan = choose_models(facts, load_catalog(), SizingOptions.from_config(cfg))
    return {step.name: step for step in load_steps(cfg, facts, model_plan)}


def status(config_path: str, *, accept_new_host_key: bool = False,
           config: Optional[NodeConfig] = None, connection=None) -> StatusReport:
    """Report the service, its health, its device and models, and memory pressure.

    A fleet passes ``config`` (``config_path`` then names the node) and its ``connection``."""
    from ..install.steps.service import parse_status, parse_uptime, status_script
    from ..node.facts import gather
    from ..node.layout import node_paths
    from ..node.memory import memory_script, parse_memory
    from ..node.shell import q, sections

    cfg = config or load_node(config_path)
    with open_node(cfg, accept_new_host_key=accept_new_host_key, reuse=connection) as node:
        facts = gather(node, cfg.workdir)
        paths = node_paths(cfg, facts)
        steps = _node_steps(cfg, node, facts)
        launch, health = steps["launch"], steps["health"]
        script = (f"echo @@state; cat {q(paths.state_file)} 2>/dev/null; "
                  f"echo @@service; {status_script(launch)}; "
                  f"echo @@memory; {memory_script(facts.platform)}")
        output = node.run("/bin/sh -s", stdin=script + "\n", check=False).stdout
        found = sections(output)
        state = _json_or_empty(found.get("state", ""))
        service = parse_status(found.get("service", ""))
        health = health_as_installed(health, state, cfg)
        try:
            memory = parse_memory(facts.platform, output)
        except ProvisionError:
            memory = None
        return StatusReport(
            node=cfg.name, host=cfg.host, installed=bool(state), last_up=state.get("last_up"),
            model_plan=state.get("model_plan"), remote_port=health.port,
            service=ServiceState(uptime=parse_uptime(found.get("service", "")), **service),
            health=check_health(node, health),
            memory=memory,
        )


def health_as_installed(health_step, state: dict, cfg: NodeConfig):
    """Return the health check for what ``up`` actually installed: its port, and the model
    files only if the models step ever ran (``up --no-models`` installs none)."""
    checks: dict[str, Any] = {"port": int(state.get("remote_port") or cfg.tunnel.remote_port),
                              "when": True}
    if "models" not in (state.get("last_up") or {}).get("steps_done", []):
        checks.update(expect_unet=None, expect_clips=[])
    return health_step.model_copy(update=checks)


def _json_or_empty(text: str) -> dict:
    import json

    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def check_health(node, health_step) -> Health:
    """Ask ComfyUI once (no waiting) whether it is up, on which device, with which models."""
    from ..comfy.client import ComfyClient, ComfyUnavailable

    client = ComfyClient(node, health_step.port, timeout=5)
    try:
        stats = client.system_stats()
        problem = health_step.check(client)
        unets = client.choices(health_step.unet_loader, "unet_name")
        encoders = client.choices("DualCLIPLoaderGGUF", "clip_name1")
    except ComfyUnavailable as error:
        return Health(answering=False, problem=str(error))
    system = stats.get("system", {})
    devices = stats.get("devices") or [{}]
    return Health(answering=True, healthy=problem is None, problem=problem,
                  device=devices[0].get("type"), comfyui_version=system.get("comfyui_version"),
                  pytorch_version=system.get("pytorch_version"), unets=unets, text_encoders=encoders)


def logs(config_path: str, *, lines: int = 200, follow: bool = False,
         on_line: Callable[[str], None], accept_new_host_key: bool = False) -> None:
    """Send the node's ComfyUI log to ``on_line``; with ``follow``, until interrupted."""
    from ..node.facts import gather
    from ..node.layout import node_paths
    from ..node.shell import q

    cfg = load_node(config_path)
    with open_node(cfg, accept_new_host_key=accept_new_host_key) as node:
        paths = node_paths(cfg, gather(node, cfg.workdir))
        log = q(paths.comfyui_log)
        exists = node.run(f"test -f {log}", check=False)
        if exists.exit_code != 0:
            raise ConfigError(f"{config_path}: no ComfyUI log on the node yet ({paths.comfyui_log})",
                              "run `provision up` first")
        command = f"tail -n {int(lines)} {'-F ' if follow else ''}{log}"
        node.run(command, on_output=on_line, check=False)


def restart(config_path: str, *, accept_new_host_key: bool = False,
            on_event: EventSink = lambda event: None) -> Health:
    """Restart ComfyUI and wait until it is healthy again."""
    from ..install.steps.service import restart_service
    from ..node.facts import gather
    from ..node.layout import node_paths
    from ..node.state import read_state

    cfg = load_node(config_path)
    with open_node(cfg, accept_new_host_key=accept_new_host_key) as node:
        facts = gather(node, cfg.workdir)
        paths = node_paths(cfg, facts)
        steps = _node_steps(cfg, node, facts)
        launch = steps["launch"]
        health = health_as_installed(steps["health"], read_state(node, paths.state_file), cfg)
        restart_service(node, launch)
        time.sleep(0.5)  # let the old process go before asking the new one
        run_steps(node, [launch, health], StepContext(node=node, paths=paths), on_event=on_event)
        return check_health(node, health)


def tunnel(config_path: str, *, hold: Callable[["Tunnel"], None],
           on_event: Callable[[str], None] = lambda message: None,
           accept_new_host_key: bool = False) -> None:
    """Open the tunnel to a node where ComfyUI already runs and hold it."""
    from ..node.facts import gather
    from ..node.layout import node_paths
    from ..node.state import read_state

    cfg = load_node(config_path)
    with open_node(cfg, accept_new_host_key=accept_new_host_key) as node:
        paths = node_paths(cfg, gather(node, cfg.workdir))
        state = read_state(node, paths.state_file)
        port = int(state.get("remote_port") or cfg.tunnel.remote_port)
        with open_tunnel(cfg, node, on_event, accept_new_host_key, remote_port=port) as opened:
            hold(opened)


# ---------------------------------------------------------------------------- the end of a rental


def down(config_path: str, *, wipe: str = "none", keep_outputs_remote: bool = False,
         discard_outputs: bool = False, dry_run: bool = False, force: bool = False,
         drain_timeout: float = 300.0, interrupt_after_timeout: bool = False,
         accept_new_host_key: bool = False, break_lock: bool = False, lock_wait: int = 10,
         on_event: Callable[["TeardownEvent"], None] = lambda event: None,
         config: Optional[NodeConfig] = None, connection=None) -> "DownReport":
    """Harvest the outputs, stop ComfyUI, remove the token, wipe as asked (teardown.py).

    Raises ``TeardownIncomplete`` (with ``.report``) when something is left undone; a re-run
    finishes it. A fleet passes ``config`` and its open ``connection``.
    """
    from ..core.errors import UsageError
    from ..node.facts import gather
    from ..node.layout import node_paths
    from ..teardown.down import DownOptions, service_for
    from ..teardown.down import down as teardown_down

    if wipe not in ("none", "models", "all"):
        raise UsageError(f"--wipe: {wipe!r} is not one of none, models, all",
                         "e.g. --wipe models to free the disk")
    if keep_outputs_remote and wipe == "all":
        raise UsageError("--keep-outputs-remote contradicts --wipe all, which deletes the whole "
                         "work folder", "use --wipe models to free the disk and keep the outputs")
    cfg = config or load_node(config_path)
    options = DownOptions(wipe=wipe, keep_outputs_remote=keep_outputs_remote,
                          discard_outputs=discard_outputs, dry_run=dry_run, force=force,
                          drain_timeout=drain_timeout, interrupt_after_timeout=interrupt_after_timeout,
                          lock_wait=lock_wait, break_lock=break_lock)
    token = hub_token(cfg)
    with open_node(cfg, accept_new_host_key=accept_new_host_key, reuse=connection) as node:
        facts = gather(node, cfg.workdir)
        paths = node_paths(cfg, facts)
        try:
            service = _node_steps(cfg, node, facts)["launch"]
        except (ProvisionError, KeyError):  # sizing or a user playbook must not block a teardown
            service = service_for(facts, paths)
        return teardown_down(node, cfg=cfg, config_path=config_path, facts=facts, paths=paths,
                             service=service, token=token, options=options, on_event=on_event)


def session(config_path: str, *, deadline: "datetime.datetime",
            warn_before: tuple = (), wipe: str = "none", keep_outputs_remote: bool = False,
            discard_outputs: bool = False, drain_timeout: float = 60.0, no_models: bool = False,
            accept_new_host_key: bool = False, on_step: EventSink = lambda event: None,
            on_event: Callable[["SessionEvent"], None] = lambda event: None,
            on_teardown: Callable[["TeardownEvent"], None] = lambda event: None,
            on_tunnel_event: Callable[[str], None] = lambda message: None,
            ask: Callable[[], str] = lambda: "teardown") -> "SessionReport":
    """``up``, hold the tunnel until ``deadline`` (warning ``warn_before`` it), then ``down``.

    Ctrl-C calls ``ask()``: "teardown" ends now, "leave" keeps the node running. At the
    deadline, work still queued is interrupted after ``drain_timeout``. A teardown that cannot
    connect is retried until the link is back (session.py).
    """
    from ..teardown.session import run_session

    cfg = load_node(config_path)
    if keep_outputs_remote and wipe == "all":
        from ..core.errors import UsageError

        raise UsageError("--keep-outputs-remote contradicts --wipe all, which deletes the whole "
                         "work folder", "use --wipe models to free the disk and keep the outputs")

    def bring_up(hold) -> UpReport:
        return up(config_path, no_models=no_models, accept_new_host_key=accept_new_host_key,
                  on_event=on_step, hold=hold, on_tunnel_event=on_tunnel_event, config=cfg)

    def tear_down():
        return down(config_path, wipe=wipe, keep_outputs_remote=keep_outputs_remote,
                    discard_outputs=discard_outputs, drain_timeout=drain_timeout,
                    interrupt_after_timeout=True, accept_new_host_key=accept_new_host_key,
                    on_event=on_teardown, config=cfg)

    return run_session(cfg.name, deadline, warn_before=list(warn_before), bring_up=bring_up,
                       tear_down=tear_down, on_event=on_event, ask=ask)


# ---------------------------------------------------------------------------- fleets
# Each fleet_* connects every node first (unknown host keys are refused together), then runs
# the single-node function above on each over that one connection (provisioner/fleet.py).

FleetHold = Callable[["FleetReport", dict[str, "Tunnel"]], None]


def fleet_plan(fleet_path: str, *, accept_new_host_key: bool = False, parallel: Optional[int] = None,
               on_event: "FleetEventSink" = lambda name, event: None) -> "FleetReport[PlanReport]":
    """Plan every node of a fleet in parallel, each sized from its own facts."""
    from ..core.config import load_fleet
    from ..fleet import run as fleets

    config = load_fleet(fleet_path)
    workers = parallel or config.parallel
    with fleets.connect_all(fleet_path, fleets.members_of(fleet_path, config),
                            accept_new_host_key=accept_new_host_key, parallel=workers,
                            on_event=on_event) as connected:
        return connected.run("plan", lambda member, node: plan(
            member.label, config=member.config, connection=node), PlanReport, parallel=workers)


def fleet_up(fleet_path: str, *, parallel: Optional[int] = None, max_downloads: Optional[int] = None,
             fail_fast: bool = False, retry_failed: bool = False, timeout: Optional[float] = None,
             no_launch: bool = False, no_models: bool = False, accept_new_host_key: bool = False,
             lock_wait: int = 10, on_event: "FleetEventSink" = lambda name, event: None,
             hold: Optional[FleetHold] = None,
             on_tunnel_event: Callable[[str, str], None] = lambda name, message: None,
             ) -> "FleetReport[UpReport]":
    """Bring every node up in parallel; a node that fails never stops the others.

    The recap is saved to ``.provision/last-fleet.json``; ``retry_failed`` redoes only the
    nodes that did not succeed there. At most ``max_downloads`` nodes fetch models at once.
    With ``hold``, a tunnel is opened to every healthy node on its own local port and
    ``hold(report, tunnels)`` runs until the user is done.
    """
    from ..core.config import load_fleet
    from ..fleet import run as fleets

    config = load_fleet(fleet_path)
    only = fleets.failed_last_time(fleet_path) if retry_failed else None
    members = fleets.members_of(fleet_path, config, only)
    workers = parallel or config.parallel
    gate = fleets.DownloadGate(max_downloads)

    def one(member, node) -> UpReport:
        return up(member.label, config=member.config, connection=node, no_launch=no_launch,
                  no_models=no_models, lock_wait=lock_wait, download_slot=gate.slot_for(member.name, on_event),
                  on_event=lambda event: on_event(member.name, event))

    with fleets.connect_all(fleet_path, members, accept_new_host_key=accept_new_host_key,
                            parallel=workers, on_event=on_event) as connected:
        report = connected.run("up", one, UpReport, parallel=workers, fail_fast=fail_fast,
                               timeout=timeout)
        fleets.save_recap(report)
        if hold is None:
            return report
        healthy = [line.node for line in report.nodes if line.status == "ok" and any(
            r.name == "health" and r.status in ("ok", "changed") for r in line.report.steps)]
        return fleets.hold_tunnels(report, healthy, lambda name: open_tunnel(
            connected.members[name].config, connected.nodes[name],
            lambda message: on_tunnel_event(name, message), accept_new_host_key), hold)


def fleet_status(fleet_path: str, *, accept_new_host_key: bool = False, parallel: Optional[int] = None,
                 on_event: "FleetEventSink" = lambda name, event: None) -> "FleetReport[StatusReport]":
    """Report every node's service and health; an unhealthy node counts as failed."""
    from ..core.config import load_fleet
    from ..fleet import run as fleets

    config = load_fleet(fleet_path)
    workers = parallel or config.parallel
    with fleets.connect_all(fleet_path, fleets.members_of(fleet_path, config),
                            accept_new_host_key=accept_new_host_key, parallel=workers,
                            on_event=on_event) as connected:
        return connected.run("status", lambda member, node: status(
            member.label, config=member.config, connection=node), StatusReport, parallel=workers,
            judge=_unhealthy)


def fleet_tunnel(fleet_path: str, *, hold: FleetHold, accept_new_host_key: bool = False,
                 parallel: Optional[int] = None, on_event: "FleetEventSink" = lambda name, event: None,
                 on_tunnel_event: Callable[[str, str], None] = lambda name, message: None,
                 ) -> "FleetReport[StatusReport]":
    """Reopen the tunnel to every node where ComfyUI is healthy and hold them all."""
    from ..core.config import load_fleet
    from ..fleet import run as fleets

    config = load_fleet(fleet_path)
    workers = parallel or config.parallel
    with fleets.connect_all(fleet_path, fleets.members_of(fleet_path, config),
                            accept_new_host_key=accept_new_host_key, parallel=workers,
                            on_event=on_event) as connected:
        report = connected.run("tunnel", lambda member, node: status(
            member.label, config=member.config, connection=node), StatusReport, parallel=workers,
            judge=_unhealthy)
        ports = {line.node: line.report.remote_port for line in report.nodes if line.status == "ok"}
        return fleets.hold_tunnels(report, list(ports), lambda name: open_tunnel(
            connected.members[name].config, connected.nodes[name],
            lambda message: on_tunnel_event(name, message), accept_new_host_key,
            remote_port=ports[name]), hold)


def _unhealthy(report: StatusReport) -> Optional[str]:
    return None if report.health.healthy else f"ComfyUI not healthy: {report.health.problem}"


def fleet_inventory(fleet_path: str) -> dict[str, Any]:
    """Return the fleet as an Ansible YAML inventory (``all.hosts.<name>``); no SSH."""
    from ..core.config import load_fleet
    from ..fleet.run import inventory_of

    return inventory_of(load_fleet(fleet_path))


def fleet_down(fleet_path: str, *, wipe: str = "none", keep_outputs_remote: bool = False,
               discard_outputs: bool = False, dry_run: bool = False, force: bool = False,
               drain_timeout: float = 300.0, accept_new_host_key: bool = False,
               break_lock: bool = False, lock_wait: int = 10, parallel: Optional[int] = None,
               on_event: "FleetEventSink" = lambda name, event: None) -> "FleetReport[DownReport]":
    """Harvest every node into its own folder (outputs.pull_to with {name}) and tear it down."""
    from ..core.config import load_fleet
    from ..core.errors import UsageError
    from ..fleet import run as fleets
    from ..teardown.down import DownReport

    if keep_outputs_remote and wipe == "all":
        raise UsageError("--keep-outputs-remote contradicts --wipe all, which deletes the whole "
                         "work folder", "use --wipe models to free the disk and keep the outputs")
    config = load_fleet(fleet_path)
    workers = parallel or config.parallel

    def one(member, node) -> "DownReport":
        return down(member.label, config=member.config, connection=node, wipe=wipe,
                    keep_outputs_remote=keep_outputs_remote, discard_outputs=discard_outputs,
                    dry_run=dry_run, force=force, drain_timeout=drain_timeout,
                    break_lock=break_lock, lock_wait=lock_wait,
                    on_event=lambda event: on_event(member.name, event))

    with fleets.connect_all(fleet_path, fleets.members_of(fleet_path, config),
                            accept_new_host_key=accept_new_host_key, parallel=workers,
                            on_event=on_event) as connected:
        return connected.run("down", one, DownReport, parallel=workers,
                             judge=lambda report: None if report.ok else "; ".join(report.problems))


def fleet_bench(fleet_path: str, *, options: Optional["BenchOptions"] = None, history: bool = True,
                accept_new_host_key: bool = False, parallel: Optional[int] = None,
                on_event: "FleetEventSink" = lambda name, event: None) -> "FleetReport[BenchReport]":
    """Benchmark every node (in parallel: each on its own hardware); one row per node in the
    local CSV history, images pulled into each node's own outputs folder."""
    from ..bench.report import BenchReport
    from ..core.config import load_fleet
    from ..fleet import run as fleets

    config = load_fleet(fleet_path)
    workers = parallel or config.parallel

    def one(member, node) -> "BenchReport":
        return bench(member.label, config=member.config, connection=node, options=options,
                     history=history, on_event=lambda event: on_event(member.name, event))

    with fleets.connect_all(fleet_path, fleets.members_of(fleet_path, config),
                            accept_new_host_key=accept_new_host_key, parallel=workers,
                            on_event=on_event) as connected:
        return connected.run("bench", one, BenchReport, parallel=workers,
                             judge=lambda report: None if report.ok else report.error or "bench failed")


def fleet_session(fleet_path: str, *, deadline: "datetime.datetime", warn_before: tuple = (),
                  wipe: str = "none", keep_outputs_remote: bool = False, discard_outputs: bool = False,
                  drain_timeout: float = 60.0, no_models: bool = False, max_downloads: Optional[int] = None,
                  accept_new_host_key: bool = False, parallel: Optional[int] = None,
                  on_event: "FleetEventSink" = lambda name, event: None,
                  on_session: Callable[["SessionEvent"], None] = lambda event: None,
                  on_ready: Callable[["FleetReport"], None] = lambda report: None,
                  on_tunnel_event: Callable[[str, str], None] = lambda name, message: None,
                  ask: Callable[[], str] = lambda: "teardown") -> "FleetReport[SessionReport]":
    """``fleet up``, hold one tunnel per healthy node until ``deadline``, then ``fleet down``.

    ``on_ready(report)`` gets the up recap with the URLs once the tunnels are open. Ctrl-C
    calls ``ask()``: "teardown" ends now, "leave" keeps every node running. Every node that
    was reached is torn down, whether or not its ``up`` succeeded.
    """
    from ..core.config import load_fleet
    from ..core.errors import UsageError
    from ..fleet import run as fleets
    from ..teardown.down import DownReport
    from ..teardown.session import SessionEvent, hold_until

    if keep_outputs_remote and wipe == "all":
        raise UsageError("--keep-outputs-remote contradicts --wipe all, which deletes the whole "
                         "work folder", "use --wipe models to free the disk and keep the outputs")
    config = load_fleet(fleet_path)
    workers = parallel or config.parallel
    gate = fleets.DownloadGate(max_downloads)
    held: dict[str, Any] = {}

    def one_up(member, node) -> UpReport:
        return up(member.label, config=member.config, connection=node, no_models=no_models,
                  download_slot=gate.slot_for(member.name, on_event),
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

    with fleets.connect_all(fleet_path, fleets.members_of(fleet_path, config),
                            accept_new_host_key=accept_new_host_key, parallel=workers,
                            on_event=on_event) as connected:
        ups = connected.run("up", one_up, UpReport, parallel=workers)
        healthy = [line.node for line in ups.nodes if line.status == "ok" and any(
            r.name == "health" and r.status in ("ok", "changed") for r in line.report.steps)]
        ups = fleets.hold_tunnels(ups, healthy, lambda name: open_tunnel(
            connected.members[name].config, connected.nodes[name],
            lambda message: on_tunnel_event(name, message), accept_new_host_key), hold)
        if "end" not in held:
            raise ProvisionError("no node came up healthy, so there is no session to hold",
                                 "run `provision fleet up` to see why")
        if held["end"] == "leave":
            on_session(SessionEvent(kind="left-running", deadline=deadline,
                                    message="the nodes are left running; end them with "
                                            "`provision fleet down`"))
            return fleets.session_report(ups, None, deadline, "left-running", held["warnings"])
        why = "the deadline is reached" if held["end"] == "deadline" else "interrupted"
        on_session(SessionEvent(kind="teardown", deadline=deadline,
                                message=f"{why}: harvesting the outputs and tearing every node down"))
        downs = connected.run("down", one_down, DownReport, parallel=workers,
                              judge=lambda report: None if report.ok else "; ".join(report.problems))
        ended_by = "deadline" if held["end"] == "deadline" else "interrupt"
        return fleets.session_report(ups, downs, deadline, ended_by, held["warnings"])


# ---------------------------------------------------------------------------- bench

if TYPE_CHECKING:
    from ..bench.report import BenchOptions, BenchReport
    from ..bench.run import BenchSink


def bench(config_path: str, *, options: Optional["BenchOptions"] = None,
          plot_path: Optional[str] = None, history: bool = True,
          accept_new_host_key: bool = False, on_event: "BenchSink" = lambda event: None,
          config: Optional[NodeConfig] = None, connection=None) -> "BenchReport":
    """Benchmark Flux text-to-image on the node (warm-up + N runs, memory sampled each second),
    append the result to the local CSV history and draw ``plot_path`` if given.

    Raises ``BenchFailed`` (``.report`` = the BenchReport so far, also recorded) when a run
    fails, ``WorkflowError`` before anything is submitted when the node lacks a node class
    or model file. A fleet passes ``config`` (``config_path`` then names the node) and its
    ``connection``; the report is JSON-serialisable for its one table.
    """
    from ..bench.plot import require_matplotlib
    from ..bench.report import BenchOptions
    from ..bench.run import record_bench, run_bench
    from ..core.errors import BenchFailed

    if plot_path:
        require_matplotlib()  # refuse now, not after a long bench
    cfg = config or load_node(config_path)
    try:
        with open_node(cfg, accept_new_host_key=accept_new_host_key, reuse=connection) as node:
            report = run_bench(node, cfg, options or BenchOptions(), on_event)
    except BenchFailed as error:
        if error.report is not None:
            error.report = record_bench(error.report, plot_path=plot_path, history=history)
        raise
    return record_bench(report, plot_path=plot_path, history=history)
