"""After ``up``: the running ComfyUI service (status, health, logs, restart, tunnel).

Each reads back what ``up`` recorded on the node (``install.record``) so it checks what is
really installed there, not what node.yaml would install today.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from pydantic import BaseModel, ConfigDict

from ..core.config import NodeConfig, load_node
from ..core.errors import ConfigError, ProvisionError
from ..core.report import NodeReport
from ..install.engine import EventSink, run_steps
from ..install.record import health_as_installed, installed_port
from ..install.steps import StepContext
from ..node.memory import MemorySample
from .connection import open_node, open_tunnel
from .planning import node_steps

if TYPE_CHECKING:
    from ..node.tunnel import Tunnel


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


class StatusReport(NodeReport):
    """What ``provision status`` shows; ``--json`` is this model's JSON."""

    installed: bool
    last_up: Optional[dict[str, Any]] = None
    model_plan: Optional[dict[str, Any]] = None
    remote_port: int
    service: ServiceState
    health: Health
    memory: Optional[MemorySample] = None
    first_image: Optional[dict[str, Any]] = None  # the last smoke result (up's first image)


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
        steps = node_steps(cfg, facts)
        launch, health = steps["launch"], steps["health"]
        smoke = steps.get("smoke")  # a user playbook may skip it
        script = (f"echo @@state; cat {q(paths.state_file)} 2>/dev/null; "
                  f"echo @@service; {status_script(launch)}; "
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
        return StatusReport(
            node=cfg.name, host=cfg.host, installed=bool(state), last_up=state.get("last_up"),
            model_plan=state.get("model_plan"), remote_port=health.port,
            service=ServiceState(uptime=parse_uptime(found.get("service", "")), **service),
            health=check_health(node, health),
            memory=memory,
            first_image=_json_or_empty(found.get("smoke", "")) or None,
        )


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
        steps = node_steps(cfg, facts)
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
        with open_tunnel(cfg, node, on_event, accept_new_host_key,
                         remote_port=installed_port(state, cfg)) as opened:
            hold(opened)
