"""Step 4 of ``down``: stop the ComfyUI service ``up`` started and prove its port is free."""

from __future__ import annotations

import time
from typing import Callable

from .probe import NodeProbe
from .report import ServiceReport

PORT_WAIT = 15.0  # how long the port may take to close after the service stopped


def service_for(facts, paths):
    """Return the service ``up`` runs on this node, for stopping it (no playbook needed)."""
    from ..install.playbook import SERVICE_LABEL
    from ..install.steps.service import ServiceStep

    return ServiceStep(name="launch", label=SERVICE_LABEL, platform=facts.platform, uid=facts.uid,
                       home=facts.home, argv=[], workdir=paths.comfyui, log=paths.comfyui_log,
                       run_dir=paths.run_dir)


def stop(node, service, port: int, probe: NodeProbe, dry_run: bool,
         note: Callable[[str], None]) -> ServiceReport:
    """Stop the service and prove nothing listens on its port any more."""
    from ..install.steps.service import stop_service

    loaded, running = probe.service.get("loaded", False), probe.service.get("running", False)
    report = ServiceReport(was_loaded=loaded, was_running=running, stopped=False, port=port)
    if dry_run:
        return report
    if loaded or running:
        note("stopping ComfyUI")
        stop_service(node, service)
    return report.model_copy(update={"stopped": loaded or running,
                                     "port_free": port_free(node, port)})


def port_free(node, port: int, wait: float = PORT_WAIT) -> bool:
    """Return True once nothing accepts connections on the node's 127.0.0.1:``port``."""
    deadline = time.monotonic() + wait
    while True:
        try:
            channel = node.open_tcp(port, timeout=5)
        except Exception:  # refused: the port is free  # noqa: BLE001
            return True
        channel.close()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
