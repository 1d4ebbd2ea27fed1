"""A batch from start to recap, once the nodes are connected: make the jobs, skip those the
manifest has, check the rest on every node, then run one lane per node until every job has
ended (or no node is left) and say who made what.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..core.errors import Interrupted, UsageError
from .checks import check_jobs, check_targets
from .lane import Lane, LaneEvent, LaneTally
from .manifest import Manifest
from .pool import JobPool
from .prepare import Builtin, NodeSide
from .report import BatchReport, JobLine, NodeShare
from .sweep import Job, expand_jobs, job_workflow, parse_set, prompt_sweep, read_lines, seed_sweep

STOP_WAIT = 15.0  # after Ctrl-C, how long lanes may take their prompts off the nodes


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What ``provision run`` was asked to do (besides where)."""

    workflow: Optional[str] = None  # an API-format JSON file; None: the built-in Flux workflow
    sets: tuple[str, ...] = ()
    prompts: Optional[str] = None  # a file, one prompt per line
    seeds: Optional[int] = None  # seeds per job: first_seed .. first_seed+seeds-1
    first_seed: int = 1
    builtin: Builtin = Builtin()
    out: Optional[str] = None  # None: outputs.pull_to/run
    depth: int = 2  # jobs queued on each node at once
    job_timeout: float = 1800.0
    dry_run: bool = False


@dataclasses.dataclass(frozen=True)
class BatchEvent:
    """The batch as a whole: ``kind`` "start" (``total`` jobs to run, ``skipped``)."""

    kind: str
    total: int = 0
    skipped: int = 0


RunSink = Callable[[Any], None]  # BatchEvent | LaneEvent


def load_workflow(path: str) -> dict:
    """Read an API-format workflow (ComfyUI's "Export (API)"); refuse the UI format."""
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"{path}: cannot read: {error.strerror or error}", "check the path") from None
    except ValueError as error:
        raise UsageError(f"{path}: not JSON: {error}", "export the workflow with ComfyUI's "
                         "Export (API)") from None
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise UsageError(f"{path}: this is ComfyUI's UI format, not the API format",
                         "in ComfyUI, use Workflow > Export (API) and pass that file")
    graph = data.get("prompt") if isinstance(data, dict) and isinstance(data.get("prompt"), dict) else data
    if not isinstance(graph, dict) or not graph or not all(
            isinstance(node, dict) and "class_type" in node for node in graph.values()):
        raise UsageError(f"{path}: not an API-format workflow ({{id: {{class_type, inputs}}}})",
                         "export the workflow with ComfyUI's Export (API)")
    return graph


def make_jobs(canonical: dict, options: RunOptions) -> list[Job]:
    """The batch's jobs: --prompts outermost, then each --set, then --seeds."""
    groups = []
    if options.prompts:
        source = f"--prompts {options.prompts}"
        groups.append(prompt_sweep(canonical, read_lines(Path(options.prompts), source), source))
    groups.extend([parse_set(spec, canonical)] for spec in options.sets)
    if options.seeds:
        groups.append(seed_sweep(canonical, options.seeds, options.first_seed,
                                 f"--seeds {options.seeds}"))
    return expand_jobs(canonical, groups)


def check_all(sides: list[NodeSide], jobs: list[Job]) -> None:
    """Raise ``WorkflowError`` for the first node that lacks something any job needs."""
    targets = [target for target, _ in jobs[0].values] if jobs else []
    for side in sides:
        workflows = [job_workflow(job, side.base) for job in jobs]
        check_targets(side.name, workflows[0] if workflows else {}, targets, side.object_info)
        check_jobs(side.name, workflows, side.object_info)


def run_batch(sides: list[NodeSide], jobs: list[Job], manifest: Manifest, options: RunOptions,
              report: BatchReport, on_event: RunSink) -> BatchReport:
    """Run ``jobs`` (those not yet done) over the nodes' lanes; return the finished report."""
    done = manifest.done_keys()
    todo = [job for job in jobs if job.key not in done]
    skipped = len(jobs) - len(todo)
    if todo:
        check_all(sides, todo)
    if options.dry_run:
        planned = [JobLine(job=job.index, key=job.key, inputs=dict(job.values),
                           status="done" if job.key in done else "todo") for job in jobs]
        return report.model_copy(update={"skipped": skipped, "planned": planned, "dry_run": True})
    on_event(BatchEvent("start", total=len(todo), skipped=skipped))
    pool = JobPool(todo, options.depth)
    lanes = [Lane(side.name, side.node, side.port, side.output_dir, pool, manifest,
                  base=side.base, job_timeout=options.job_timeout, on_event=on_event)
             for side in sides]
    started = time.monotonic()
    tallies = _run_lanes(lanes, pool)
    seconds = time.monotonic() - started
    return _recap(report, pool, sides, tallies, skipped, seconds)


def _run_lanes(lanes: list[Lane], pool: JobPool) -> dict[str, LaneTally]:
    tallies: dict[str, LaneTally] = {}

    def body(lane: Lane) -> None:
        tallies[lane.name] = lane.run()

    threads = [threading.Thread(target=body, args=(lane,), name=f"run-{lane.name}", daemon=True)
               for lane in lanes]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except KeyboardInterrupt:
        pool.stop()
        deadline = time.monotonic() + STOP_WAIT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        finished = len(pool.finished)
        raise Interrupted(f"the batch was stopped after {finished} of {pool.total} jobs; "
                          "this batch's prompts were taken off the nodes' queues",
                          "run the same command again: the jobs in the manifest are skipped") from None
    return tallies


def _recap(report: BatchReport, pool: JobPool, sides: list[NodeSide], tallies: dict[str, LaneTally],
           skipped: int, seconds: float) -> BatchReport:
    shares = [_share(side, tallies.get(side.name) or LaneTally(), seconds) for side in sides]
    problems = [JobLine(job=failure.job.index, key=failure.job.key, inputs=dict(failure.job.values),
                        status="failed", node=failure.node, error=failure.message)
                for failure in sorted(pool.failures.values(), key=lambda item: item.job.index)]
    unrun = pool.unrun()
    problems += [JobLine(job=job.index, key=job.key, inputs=dict(job.values), status="unrun",
                         error="no node was left to run it") for job in unrun]
    done = len(pool.finished)
    return report.model_copy(update={
        "skipped": skipped, "done": done, "failed": len(pool.failures), "unrun": len(unrun),
        "requeued": pool.requeued, "images": sum(share.images for share in shares),
        "seconds": round(seconds, 3),
        "jobs_per_s": round(done / seconds, 4) if seconds > 0 and done else None,
        "nodes": report.nodes + shares, "problems": problems,
    })


def _share(side: NodeSide, tally: LaneTally, seconds: float) -> NodeShare:
    return NodeShare(
        node=side.name, host=side.cfg.host,
        status="left" if tally.error else "ok", jobs=tally.jobs, images=tally.images,
        failed=tally.failed, handed_back=tally.handed_back,
        steps_per_s=round(tally.steps / tally.step_seconds, 3) if tally.step_seconds > 0 else None,
        jobs_per_s=round(tally.jobs / seconds, 4) if seconds > 0 and tally.jobs else None,
        error=tally.error,
        hint=("`provision status NODE.yaml` says whether ComfyUI still runs there"
              if tally.error else None))


__all__ = ["RunOptions", "BatchEvent", "LaneEvent", "load_workflow", "make_jobs", "run_batch",
           "check_all"]
