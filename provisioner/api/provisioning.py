"""``up``: bring a node to the playbook's state (facts -> sizing -> steps -> launch)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Optional

from pydantic import Field

from ..core.config import NodeConfig, load_node
from ..core.errors import StepFailed
from ..core.report import NodeReport
from ..install.engine import EventSink, StepResult, probe_steps, run_steps
from ..install.playbook import load_steps
from ..install.sizing import ModelPlan
from ..install.steps import StepContext
from .connection import hub_token, open_node, open_tunnel
from .planning import RunCost, check_platform, check_tools

if TYPE_CHECKING:
    from ..node.tunnel import Tunnel


class UpReport(NodeReport):
    """What ``provision up`` did; ``--json`` is this model's JSON."""

    dry_run: bool
    ok: bool
    plan: ModelPlan
    steps: list[StepResult]
    changed: int
    duration: float
    cost: RunCost
    error: Optional[str] = None
    first_image: Optional[dict[str, Any]] = Field(
        None, description="the smoke step's result: made this run or recorded by an earlier one")


def launched(results: list[StepResult]) -> bool:
    """Tell whether ComfyUI is up and healthy after these steps (the health check passed)."""
    return any(r.name == "health" and r.status in ("ok", "changed") for r in results)


def up(config_path: str, *, dry_run: bool = False, no_launch: bool = False,
       no_models: bool = False, no_smoke: bool = False, accept_new_host_key: bool = False,
       break_lock: bool = False, lock_wait: int = 10, on_event: EventSink = lambda event: None,
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
    from ..install.preflight import preflight_downloads
    from ..install.record import installed_state
    from ..install.sizing import SizingOptions, choose_models
    from ..node.facts import gather
    from ..node.layout import node_paths
    from ..node.lock import node_lock
    from ..node.state import read_state, write_state

    started = time.monotonic()
    cfg = config or load_node(config_path)
    with open_node(cfg, accept_new_host_key=accept_new_host_key, reuse=connection) as node:
        if not (dry_run or no_models):
            # After the SSH handshake (it needs the CPU), beside the checks (they wait on the
            # node): the Hub preflight then starts warm.
            from ..install.hub import warm_up

            warm_up()
        facts = gather(node, cfg.workdir)
        check_platform(config_path, cfg, facts)
        check_tools(cfg, facts)
        model_plan = choose_models(facts, load_catalog(), SizingOptions.from_config(cfg))
        # The disk check is preflight_downloads': it counts only the bytes still to fetch, so
        # a re-run after the models landed is not refused for the space they now take.
        steps = load_steps(cfg, facts, model_plan,
                           {"skip_models": no_models, "skip_launch": no_launch,
                            "skip_smoke": no_smoke})
        paths = node_paths(cfg, facts)
        token = hub_token(cfg)
        ctx = StepContext(node=node, paths=paths, secrets={"hf_token": token} if token else {})

        def report(results: list[StepResult], error: Optional[str] = None) -> UpReport:
            return UpReport(
                node=cfg.name, host=cfg.host, dry_run=dry_run, ok=error is None, plan=model_plan,
                steps=results, changed=sum(r.status == "changed" for r in results),
                duration=time.monotonic() - started, cost=RunCost.of(node.stats), error=error,
                first_image=ctx.records.get("smoke"))

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
        if hold is not None and launched(results):
            with open_tunnel(cfg, node, on_tunnel_event, accept_new_host_key) as tunnel:
                hold(final, tunnel)
        return final
