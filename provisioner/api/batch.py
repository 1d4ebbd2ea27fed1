"""``run``: a batch of prompts on one node, or spread over a fleet (provisioner/batch)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..core.errors import ProvisionError

if TYPE_CHECKING:
    from ..batch.prepare import NodeSide
    from ..batch.report import BatchReport
    from ..batch.run import RunOptions, RunSink


def run_jobs(target: str, options: "RunOptions", *, accept_new_host_key: bool = False,
             parallel: Optional[int] = None,
             on_event: "RunSink" = lambda event: None) -> "BatchReport":
    """Run a batch on the node of a node.yaml, or over every node of a fleet.yaml.

    The jobs are made (and bad sweeps refused) before any connection; every job is checked
    on every node before any is queued (``WorkflowError``); a node whose ComfyUI is down is
    refused saying why (``ServiceDown``; in a fleet, that node sits out)."""
    from ..batch.manifest import Manifest
    from ..batch.report import BatchReport
    from ..batch.run import load_workflow, make_jobs, run_batch
    from ..core.config import load_node

    fleet = _fleet_or_none(target)
    configs = [member.config for member in fleet[1]] if fleet else [load_node(target)]
    if options.workflow:
        canonical = load_workflow(options.workflow)
        label = options.workflow
    else:
        model = options.builtin.model or configs[0].model
        canonical = options.builtin.canonical(model)
        label = f"built-in flux-{model}"
    jobs = make_jobs(canonical, options)
    out = (Path(options.out).expanduser() if options.out
           else _default_out(target, configs, bool(fleet))).absolute()
    manifest = Manifest.load(out)
    user_workflow = canonical if options.workflow else None
    report = BatchReport(source=str(target), workflow=label, out=str(out),
                         manifest_json=str(manifest.json_path), manifest_csv=str(manifest.csv_path),
                         jobs=len(jobs))
    if fleet is None:
        from .connection import open_node

        cfg = configs[0]
        with open_node(cfg, accept_new_host_key=accept_new_host_key) as node:
            side = _prepare(cfg.name, node, cfg, options, user_workflow)
            return run_batch([side], jobs, manifest, options, report, on_event)
    return _run_on_fleet(target, fleet, jobs, manifest, options, report, user_workflow,
                         accept_new_host_key=accept_new_host_key, parallel=parallel,
                         on_event=on_event)


def _run_on_fleet(target: str, fleet: tuple, jobs: list, manifest, options, report,
                  user_workflow, *, accept_new_host_key: bool, parallel: Optional[int],
                  on_event: Callable[[Any], None]) -> "BatchReport":
    from ..batch.report import NodeShare
    from ..batch.run import run_batch
    from ..fleet.connect import connect_all
    from ..fleet.run import run_fleet

    config, members = fleet
    workers = parallel or config.parallel
    by_name = {member.name: member for member in members}
    with connect_all(target, members, accept_new_host_key=accept_new_host_key,
                     parallel=workers) as connected:
        def prepare(name: str) -> "NodeSide":
            return _prepare(name, connected.nodes[name], by_name[name].config, options, user_workflow)

        outcomes = dict(connected.failures)
        outcomes.update(run_fleet(list(connected.nodes), prepare, parallel=workers))
        sides = [outcomes[name].value for name in by_name if outcomes[name].status == "ok"]
        away = [NodeShare(node=name, host=by_name[name].config.host, status="unavailable",
                          error=str(outcomes[name].error),
                          hint=getattr(outcomes[name].error, "hint", None) or None)
                for name in by_name if outcomes[name].status != "ok"]
        if not sides:
            listed = "; ".join(f"{share.node}: {share.error}" for share in away)
            raise ProvisionError(f"no node of {target} can run the batch: {listed}",
                                 away[0].hint or "`provision fleet status FLEET.yaml` shows each node")
        report = report.model_copy(update={"nodes": away})
        return run_batch(sides, jobs, manifest, options, report, on_event)


def _prepare(name: str, node, cfg, options: "RunOptions", user_workflow) -> "NodeSide":
    from ..batch.prepare import prepare_node
    from .service import service_down_reason

    return prepare_node(name, node, cfg, builtin=None if user_workflow else options.builtin,
                        workflow=user_workflow,
                        why_down=lambda facts: service_down_reason(node, cfg, facts)[1])


def _fleet_or_none(target: str) -> Optional[tuple]:
    """Return (FleetConfig, members) when ``target`` is a fleet.yaml (it has ``nodes:``)."""
    import yaml

    from ..core.config import SAFE_LOADER, load_fleet
    from ..fleet.run import members_of

    try:
        data = yaml.load(Path(target).read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except (OSError, yaml.YAMLError):
        return None  # the node loader says what is wrong with it
    if not isinstance(data, dict) or "nodes" not in data:
        return None
    config = load_fleet(target)
    return config, members_of(target, config)


def _default_out(target: str, configs: list, fleet: bool) -> Path:
    """``outputs.pull_to``/output/run: where ``down``'s harvest puts the node's output/run, so
    it finds the images already there and pulls none twice. For a fleet, ``{name}`` is the
    fleet file's name."""
    if not fleet:
        return configs[0].outputs_dir() / "output" / "run"
    pull_to = configs[0].outputs.pull_to.replace("{name}", Path(target).stem)
    return Path(pull_to).expanduser() / "output" / "run"
