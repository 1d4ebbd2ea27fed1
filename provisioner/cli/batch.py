"""``run``: a batch of prompts on a node, or spread over a fleet."""

from __future__ import annotations

from typing import Optional

import click

from ..core.errors import ExitStatus
from .app import Output, cli, console, run
from .options import ACCEPT_NEW_HOST_KEY, BENCH_STEPS, PARALLEL


@cli.command(name="run")
@click.argument("target", metavar="NODE_OR_FLEET_YAML", type=click.Path(dir_okay=False))
@click.argument("workflow", required=False, type=click.Path(dir_okay=False),
                metavar="[WORKFLOW_API.json]")
@click.option("--prompts", type=click.Path(dir_okay=False), metavar="FILE",
              help="One prompt per line, for the positive prompt (found by following the sampler).")
@click.option("--seeds", type=click.IntRange(1, 100_000), metavar="N",
              help="N seeds per job: --seed .. --seed+N-1 on every seed input.")
@click.option("--seed", "first_seed", type=click.IntRange(0, 2**63), default=1, show_default=True,
              help="The first seed of --seeds (and the built-in workflow's seed).")
@click.option("--set", "sets", multiple=True, metavar="NODE.INPUT=VALUES",
              help="Sweep an input: a,b,c | 1..8 | 0.5..1.0:0.25 | [json list] | @file (one per "
                   "line). Jobs are the product of every sweep. Repeatable.")
@click.option("--model", type=click.Choice(["dev", "schnell"]),
              help="The built-in workflow's model (default: node.yaml's model:).")
@BENCH_STEPS
@click.option("--size", default="1024x1024", show_default=True, metavar="WxH",
              help="The built-in workflow's image size.")
@click.option("--out", type=click.Path(file_okay=False), metavar="DIR",
              help="Where images and the manifest go (default: outputs.pull_to/output/run).")
@click.option("--depth", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Jobs queued on each node at once (so none idles between two).")
@click.option("--timeout", "job_timeout", type=click.FloatRange(min=1), default=1800,
              show_default=True, metavar="SECONDS", help="Longest a job may take once queued.")
@click.option("--dry-run", is_flag=True,
              help="Make and check the jobs on the nodes; list them; queue nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the recap as one JSON document.")
@PARALLEL
@ACCEPT_NEW_HOST_KEY
def run_command(target: str, workflow: Optional[str], prompts: Optional[str], seeds: Optional[int],
                first_seed: int, sets: tuple[str, ...], model: Optional[str], steps: Optional[int],
                size: str, out: Optional[str], depth: int, job_timeout: float, dry_run: bool,
                as_json: bool, parallel: Optional[int], accept_new_host_key: bool) -> None:
    """Make a batch of images on a node, or spread over every node of a fleet.

    Without WORKFLOW, the built-in Flux text-to-image workflow with the node's models.
    Images are pulled as they finish, verified by sha256, and listed in DIR/manifest.csv
    and .json; running the same command again skips the jobs already there."""
    out_doc = Output(as_json)

    def body() -> int:
        from .. import api
        from ..batch.prepare import Builtin
        from ..batch.run import RunOptions
        from . import batch_views as views

        width, height = views.parse_size(size)
        options = RunOptions(workflow=workflow, sets=sets, prompts=prompts, seeds=seeds,
                             first_seed=first_seed, out=out, depth=depth, job_timeout=job_timeout,
                             dry_run=dry_run,
                             builtin=Builtin(model=model, steps=steps, width=width, height=height,
                                             seed=first_seed))
        progress = views.BatchProgress(console(stderr=True))
        with progress:
            report = api.run_jobs(target, options, accept_new_host_key=accept_new_host_key,
                                  parallel=parallel, on_event=progress.handle)
        out_doc.report(report, views.show_batch)
        return ExitStatus.OK if report.ok or report.dry_run else ExitStatus.FAILED

    run(body, out_doc)
