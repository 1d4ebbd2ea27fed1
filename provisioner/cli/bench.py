"""``bench``: time Flux.1 images on one node, with memory pressure and swap."""

from __future__ import annotations

from typing import Optional

import click

from ..core.errors import ExitStatus
from .app import Output, cli, console, run
from .options import ACCEPT_NEW_HOST_KEY, BENCH_PROMPT, BENCH_STEPS, NODE_YAML


@cli.command()
@NODE_YAML
@click.option("--model", type=click.Choice(["dev", "schnell"]),
              help="Model to bench (default: node.yaml's model:).")
@BENCH_STEPS
@click.option("--runs", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Measured runs, after one warm-up that is not counted.")
@click.option("--seed", type=click.IntRange(0, 2**63), help="Base seed; run i uses SEED+i "
              "(default: random; ComfyUI would answer a repeated seed from its cache).")
@BENCH_PROMPT
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (docs/bench.md).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="OUT.png",
              help="Draw time per run and memory pressure over time (needs the plot extra).")
@click.option("--compare", type=click.Choice(["seed"]),
              help="Show the seed article's row for this memory size and model, with the ratio.")
@ACCEPT_NEW_HOST_KEY
def bench(node_yaml: str, model: Optional[str], steps: Optional[int], runs: int,
          seed: Optional[int], prompt: Optional[str], as_json: bool, plot_path: Optional[str],
          compare: Optional[str], accept_new_host_key: bool) -> None:
    """Benchmark Flux.1 1024x1024 on the node: time per image, memory pressure and swap."""
    out = Output(as_json)

    def body() -> int:
        from .. import api
        from ..bench.report import BenchOptions
        from ..core.errors import BenchFailed
        from . import bench_views as views

        options = BenchOptions(model=model, steps=steps, runs=runs, seed=seed, prompt=prompt,
                               compare=compare)
        progress = views.BenchProgress(console(stderr=True))
        try:
            with progress:
                report = api.bench(node_yaml, options=options, plot_path=plot_path,
                                   accept_new_host_key=accept_new_host_key, on_event=progress.handle)
        except BenchFailed as error:
            out.partial(error, views.show_bench)
            raise
        out.report(report, views.show_bench)
        return ExitStatus.OK

    run(body, out)
