"""Step 5 of ``down``: list the node in one round trip and harvest its outputs as it goes.

``list_and_harvest`` runs templates/node_inventory.py and hands each file the node has
hashed to a ``Harvester`` at once; a dry run only plans. What it returns tells ``down``
which node files are now safe on the laptop and may be removed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..node.programs import run_program
from . import inventory as listing
from .harvest import Harvester, HarvestFailure
from .harvest_plan import Refused, plan_harvest
from .inventory import HarvestError, parse_inventory, remote_file
from .manifest import local_view, read_manifest
from .options import DownOptions
from .probe import NodeProbe
from .report import HarvestReport, PlannedFile, TeardownEvent, TeardownSink


def inventory_spec(paths, roots, probe: NodeProbe, options: DownOptions) -> dict:
    """Return what node_inventory.py lists: the harvest, the models a ``--wipe models``
    deletes, the size of the work folder a ``--wipe all`` deletes."""
    recorded = [str(m.get("dest")) for m in probe.state.get("models", []) if isinstance(m, dict)]
    return listing.inventory_spec(
        roots, models=paths.models if options.wipe == "models" else None, model_files=recorded,
        sizes=[paths.workdir] if options.wipe == "all" else [])


def list_and_harvest(node, spec: dict, roots, candidates: list[str], dest: Path, node_name: str,
                     options: DownOptions, on_event: TeardownSink
                     ) -> tuple[dict, HarvestReport, list[tuple[str, int]]]:
    """List the node (one round trip) and, unless dry, pull each file as soon as the node
    has hashed it. Returns the inventory, the harvest's report and the removable node files
    now safe on the laptop (path, bytes)."""
    started = time.monotonic()
    removable = {root.label for root in roots if root.removable}
    by_label = {root.label: root for root in roots}
    harvester = None if options.dry_run else Harvester(
        node, dest, node_name=node_name,
        on_event=lambda event: on_event(TeardownEvent(kind="harvest", harvest=event)))

    def on_line(line: str) -> None:
        if harvester is None or not line.startswith('{"'):
            return
        try:
            record = json.loads(line)
        except ValueError:
            return
        if record.get("kind") == "file" and record.get("label") in by_label:
            harvester.offer(remote_file(record, by_label[record["label"]]))

    try:
        result = run_program(node, "node_inventory.py", spec, candidates, on_output=on_line)
        if result.exit_code != 0:
            raise HarvestError(f"cannot list the node's outputs: {result.tail(3)}",
                               "the node needs a working python3")
        inventory = parse_inventory(result.stdout, roots)
    except HarvestError as error:
        inventory = {"files": [], "models": [], "sizes": {},
                     "problems": [Refused(file=roots[0].path, reason=str(error))]}
    finally:
        outcome = harvester.finish() if harvester is not None else None
    files = inventory["files"]
    if outcome is None:
        try:
            local = local_view(dest, read_manifest(dest), files)
        except OSError:
            local = {}
        plan = plan_harvest(files, local)
        refused = list(plan.refused) + list(inventory["problems"])
        planned = [PlannedFile(file=item.dest, bytes=item.source.bytes, reason=item.reason)
                   for item in plan.to_pull]
        would = [(i.source.remote, i.source.bytes) for i in plan.items if i.source.label in removable]
        return inventory, HarvestReport(dest=str(dest), files_on_node=len(files),
                                        skipped=len(plan.to_skip), refused=refused,
                                        to_pull=planned, ok=not refused), would
    refused = list(outcome.plan.refused) + list(inventory["problems"])
    done = outcome.verified()
    verified = [(i.source.remote, i.source.bytes) for i in outcome.plan.items
                if i.source.label in removable and i.dest in done]
    report = HarvestReport(
        dest=str(dest), files_on_node=len(files), skipped=len(outcome.plan.to_skip),
        refused=refused, pulled=outcome.pulled, bytes_pulled=sum(p.bytes for p in outcome.pulled),
        failed=outcome.failed, manifest=outcome.manifest, seconds=time.monotonic() - started,
        ok=not outcome.failed and not refused)
    return inventory, report, verified


def harvest_problems(report: HarvestReport) -> list[str]:
    return [] if report.ok else [f"harvest failed: {harvest_summary(report)}"]


def harvest_summary(report: HarvestReport) -> str:
    bad = [*report.failed, *report.refused]
    first = bad[0] if bad else None
    detail = ""
    if isinstance(first, HarvestFailure):
        detail = f" (first: {first.file}: {first.error})"
    elif isinstance(first, Refused):
        detail = f" (first: {first.file}: {first.reason})"
    return f"{len(bad)} file(s) not copied to {report.dest}{detail}"
