"""After ``up``: the running ComfyUI service (status, health, logs, restart, tunnel).

Each reads back what ``up`` recorded on the node (``install.record``) so it checks what is
really installed there, not what node.yaml would install today.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict

from ..core.config import NodeConfig, load_node
from ..core.errors import ConfigError, ProvisionError, ServiceDown
from ..core.report import NodeReport
from ..install.engine import EventSink, run_steps
from ..install.record import health_as_installed, installed_port, rebooted_since_up, up_time
from ..install.steps import StepContext
from ..node.memory import MemorySample
from .connection import open_node, open_tunnel
from .planning import node_steps

if TYPE_CHECKING:
    from ..node.tunnel import Tunnel


DownReason = Literal["rebooted", "not_launched", "stopped"]


class ServiceState(BaseModel):
    model_config = ConfigDict(frozen=True)

    loaded: bool
    running: bool
    pid: Optional[int] = None
    uptime: Optional[str] = None  # ps etime, e.g. "01:02:03"
    # Why it is not running (None while it runs, or before any up): the node rebooted since
    # the last up, that up did not launch it, or it stopped (crashed, was stopped).
    reason: Optional[DownReason] = None
    explanation: Optional[str] = None  # the reason in words, with what brings it back


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


class StatusReport(NodeReport):
    """What ``provision status`` shows; ``--json`` is this model's JSON."""

    installed: bool
    booted_at: Optional[datetime] = None  # when the node last booted (kern.boottime, btime)
    last_up: Optional[dict[str, Any]] = None
    model_plan: Optional[dict[str, Any]] = None
    remote_port: int
    service: ServiceState
    health: Health
    memory: Optional[MemorySample] = None
    first_image: Optional[dict[str, Any]] = None  # the last smoke result (up's first image)
    node_warnings: list[str] = []  # the node's settings that can cost the rental (advice.py)


def status(config_path: str, *, accept_new_host_key: bool = False,
           config: Optional[NodeConfig] = None, connection=None) -> StatusReport:
    """Report the service, its health, its device and models, and memory pressure.

    A fleet passes ``config`` (``config_path`` then names the node) and its ``connection``."""
    from ..install.steps.service import parse_status, parse_uptime
    from ..node.advice import node_warnings
    from ..node.facts import gather
    from ..node.layout import node_paths
    from ..node.memory import memory_script, parse_memory
    from ..node.shell import q, sections

    cfg = config or load_node(config_path)
    with open_node(cfg, accept_new_host_key=accept_new_host_key, reuse=connection) as node:
        facts = gather(node, cfg.workdir)
        paths = node_paths(cfg, facts)
        steps = node_steps(cfg, facts)
        launch, health = steps["launch"], steps["health"]
        smoke = steps.get("smoke")  # a user playbook may skip it
        script = (installed_and_running_script(paths, launch) + "; "
                  + (f"echo @@smoke; cat {q(smoke.record)} 2>/dev/null; " if smoke else "")
                  + f"echo @@memory; {memory_script(facts.platform)}")
        output = node.run("/bin/sh -s", stdin=script + "\n", check=False).stdout
        found = sections(output)
        state = _json_or_empty(found.get("state", ""))
        service = parse_status(found.get("service", ""))
        health = health_as_installed(health, state, cfg)
        try:
            memory = parse_memory(facts.platform, output)
        except ProvisionError:
            memory = None
        reason, explanation = why_not_running(facts.platform, state, facts.booted_at,
                                              uid=facts.uid, **service)
        return StatusReport(
            node=cfg.name, host=cfg.host, installed=bool(state), last_up=state.get("last_up"),
            booted_at=_utc(facts.booted_at),
            model_plan=state.get("model_plan"), remote_port=health.port,
            service=ServiceState(uptime=parse_uptime(found.get("service", "")), reason=reason,
                                 explanation=explanation, **service),
            health=check_health(node, health),
            memory=memory,
            first_image=_json_or_empty(found.get("smoke", "")) or None,
            node_warnings=node_warnings(facts),
        )


_BRING_BACK = "run `provision up NODE.yaml` or `provision restart NODE.yaml`"
# What a reboot does to the service `up` started, by platform (FACTS.md "launchd over SSH").
_AFTER_REBOOT = {
    "macos": "a LaunchAgent in the user domain (user/<uid>) is started again only by a login "
             "session",
    "linux": "the supervisor `up` started is a plain process, which a reboot ends",
}


def why_not_running(platform: str, state: dict, booted_at: Optional[int], *, loaded: bool,
                    running: bool, pid: Optional[int] = None,
                    uid: Optional[int] = None) -> tuple[Optional[DownReason], Optional[str]]:
    """Say why ComfyUI is not running, and what brings it back; (None, None) while it runs.

    ``state`` is the node's state.json (``{}`` before any up), ``booted_at`` the node's boot
    time now (epoch seconds), ``loaded``/``running``/``pid`` what the supervisor says, ``uid``
    the node user's (it names the launchd domain)."""
    if running or not state:
        return None, None
    if "launch" not in ((state.get("last_up") or {}).get("steps_done") or []):
        return "not_launched", ("no up has launched it yet (`up --no-launch`, or the up stopped "
                                "before the launch step): run `provision up NODE.yaml`")
    if rebooted_since_up(state, booted_at):
        at = up_time(state)
        after = f" (after the last up at {_when(at)})" if at is not None else ""
        why = _AFTER_REBOOT.get(platform, "a reboot stops it").replace(
            "<uid>", "<uid>" if uid is None else str(uid))
        return "rebooted", (f"the node rebooted at {_when(_utc(booted_at))}{after}; {why}: "
                            f"{_BRING_BACK}")
    if loaded:
        held = ("launchd has it loaded but it is not running" if platform == "macos" else
                "its supervisor runs but ComfyUI does not")
        return "stopped", (f"{held} (exiting again and again? see `provision logs NODE.yaml`); "
                           "`provision restart NODE.yaml` starts it again")
    gone = ("it is not loaded in launchd (booted out, or every process of the user was killed)"
            if platform == "macos" else
            "its supervisor is not running (killed, or the node restarted)")
    return "stopped", f"{gone}: {_BRING_BACK}"


def _utc(epoch: Optional[int]) -> Optional[datetime]:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)


def _when(moment: Optional[datetime]) -> str:
    if moment is None:
        return "an unknown time"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def installed_and_running_script(paths, launch) -> str:
    """One read-only snippet: state.json (section ``state``), the service (``service``)."""
    from ..install.steps.service import status_script
    from ..node.shell import q

    return (f"echo @@state; cat {q(paths.state_file)} 2>/dev/null; "
            f"echo @@service; {status_script(launch)}")


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
    """Restart ComfyUI and wait until it is healthy again.

    A running ComfyUI is restarted in place; one that is not running (after a reboot launchd
    has forgotten the agent, and the Linux supervisor is gone) is started as ``up`` would,
    from the unit already installed: nothing is reinstalled."""
    from ..install.steps.service import parse_status, restart_service
    from ..node.facts import gather
    from ..node.layout import node_paths
    from ..node.shell import sections

    cfg = load_node(config_path)
    with open_node(cfg, accept_new_host_key=accept_new_host_key) as node:
        facts = gather(node, cfg.workdir)
        paths = node_paths(cfg, facts)
        steps = node_steps(cfg, facts)
        launch = steps["launch"]
        found = sections(node.run("/bin/sh -s", check=False,
                                  stdin=installed_and_running_script(paths, launch) + "\n").stdout)
        health = health_as_installed(steps["health"], _json_or_empty(found.get("state", "")), cfg)
        if parse_status(found.get("service", ""))["running"]:
            restart_service(node, launch)
            time.sleep(0.5)  # let the old process go before asking the new one
        # Not running: the launch step starts it (bootstrap again, or a new supervisor).
        run_steps(node, [launch, health], StepContext(node=node, paths=paths), on_event=on_event)
        return check_health(node, health)


def tunnel(config_path: str, *, hold: Callable[["Tunnel"], None],
           on_event: Callable[[str], None] = lambda message: None,
           accept_new_host_key: bool = False) -> None:
    """Open the tunnel to a node where ComfyUI already runs and hold it; refuse, saying why,
    when it does not run (after a reboot launchd has not loaded it again)."""
    from ..node.facts import gather

    cfg = load_node(config_path)
    with open_node(cfg, accept_new_host_key=accept_new_host_key) as node:
        state, why = service_down_reason(node, cfg, gather(node, cfg.workdir))
        if why is not None:
            raise ServiceDown(f"{cfg.name}: ComfyUI is not running on the node: {why}",
                              "then run `provision tunnel NODE.yaml` again")
        with open_tunnel(cfg, node, on_event, accept_new_host_key,
                         remote_port=installed_port(state, cfg)) as opened:
            hold(opened)


def service_down_reason(node, cfg: NodeConfig, facts) -> tuple[dict, Optional[str]]:
    """Read state.json and the service in one round trip; return the state and, when ComfyUI
    is not running, why and what brings it back (None while it runs)."""
    from ..install.steps.service import parse_status
    from ..node.layout import node_paths
    from ..node.shell import sections

    paths = node_paths(cfg, facts)
    launch = node_steps(cfg, facts)["launch"]
    found = sections(node.run("/bin/sh -s", check=False,
                              stdin=installed_and_running_script(paths, launch) + "\n").stdout)
    state = _json_or_empty(found.get("state", ""))
    service = parse_status(found.get("service", ""))
    if service["running"]:
        return state, None
    _, why = why_not_running(facts.platform, state, facts.booted_at, uid=facts.uid, **service)
    return state, why or "`provision up` has not run here: run `provision up NODE.yaml`"
