"""The bench table, its paths and its progress lines are verbatim."""

from __future__ import annotations

from types import SimpleNamespace as NS

from provisioner.cli import bench_views
from tests.unit.bench.cases import sample_report
from tests.unit.cli.render import plain_console, text


def test_bracketed_paths_and_image_names_are_verbatim():
    report = sample_report(node="m4[bold]", plot_file="/tmp/runs[plot]/bench.png",
                           history_file="/tmp/[history].csv",
                           memory_errors=["vm_stat: [fatal] no such page size"])
    console = plain_console()
    bench_views.show_bench(console, report)
    out = text(console)
    assert "Bench of m4[bold] (Apple M4 Pro, 64 GB, mps)" in out
    assert "plot: /tmp/runs[plot]/bench.png" in out and "history: /tmp/[history].csv" in out
    assert "memory sampling: vm_stat: [fatal] no such page size" in out


def test_a_failed_run_shows_its_bracketed_error_verbatim():
    report = sample_report(ok=False)
    failed = report.runs[2].model_copy(update={"images": [], "error": "node 4: [unet_name] not in list"})
    console = plain_console()
    bench_views.show_bench(console, report.model_copy(update={"runs": [*report.runs[:2], failed]}))
    assert "failed: node 4: [unet_name] not in list" in text(console)


def test_a_run_line_is_unchanged():
    run = sample_report().runs[1]
    console = plain_console()
    bench_views.BenchProgress(console).handle(NS(kind="run-end", warmup=False, run=1, runs=2,
                                                 seed=run.seed, result=run))
    assert text(console).startswith(f"run 1/2 (seed {run.seed}): ok ")
    assert ", peak pressure " in text(console)
