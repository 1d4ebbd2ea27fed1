"""Rendering of ``bench``: live progress of the runs, the runs table, and the seed comparison.

Data is shown verbatim: see ``console.py``.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..core.units import format_bytes, gib
from .console import VERDICT_STYLE, ProgressView, add_row, styled, title


def format_seconds(value) -> str:
    """Return seconds as ``1.23s`` (``12.3s`` from 10 s up); ``-`` when unknown."""
    return "-" if value is None else f"{value:.1f}s" if value >= 10 else f"{value:.2f}s"


def format_stat(stat, unit: str = "s") -> str:
    """Return a min / median / max statistic; ``-`` when unknown."""
    if stat is None:
        return "-"
    if unit == "s":
        return f"{format_seconds(stat.min)} / {format_seconds(stat.median)} / {format_seconds(stat.max)}"
    return f"{stat.min:.2f} / {stat.median:.2f} / {stat.max:.2f}"


def format_swap(n_bytes) -> str:
    """Return a change of swap, signed; ``-`` when unknown."""
    if n_bytes is None:
        return "-"
    sign = "+" if n_bytes > 0 else ""
    return f"{sign}{format_bytes(n_bytes)}"


def _pressure(pressure) -> Text:
    return styled(pressure, VERDICT_STYLE.get(pressure, ""))


class BenchProgress(ProgressView):
    """Live progress of a bench: a bar for the current run's sampler steps with the latest
    memory pressure on a terminal; one line per finished run elsewhere (CI logs)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress = None
        self._task = None
        self._memory = ""

    def __enter__(self) -> "BenchProgress":
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
            )

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[memory]}"),
                                      console=self.console, transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task("connecting, checking the workflow...", total=None,
                                                 memory="")
        return self

    def handle(self, event) -> None:
        """Render one ``benchrun.BenchEvent``."""
        label = "warm-up" if event.warmup else f"run {event.run}/{event.runs}"
        if event.kind == "memory" and event.memory is not None:
            # Progress columns are markup: escape the data in them.
            style = VERDICT_STYLE.get(event.memory.pressure, "")
            pressure = f"[{style}]{escape(event.memory.pressure)}[/]" if style else escape(event.memory.pressure)
            self._memory = f"pressure {pressure}, swap {format_bytes(event.memory.swap_used_bytes)}"
            self._update(memory=self._memory)
        elif event.kind == "run-start":
            self._update(description=escape(f"{label} (seed {event.seed}): loading"), completed=0,
                         total=None)
        elif event.kind == "step":
            self._update(description=escape(f"{label} (seed {event.seed}): sampling"),
                         completed=event.value, total=event.total)
        elif event.kind == "run-end" and event.result is not None:
            result = event.result
            line = Text.assemble(f"{label} (seed {result.seed}): ",
                                 styled("ok", "green") if result.ok else styled("failed", "bold red"),
                                 f" {format_seconds(result.timing.total_s)}")
            memory = result.memory
            if memory:
                line.append_text(Text.assemble(", peak pressure ", _pressure(memory.peak_pressure),
                                               f", swap {format_swap(memory.swap_delta_bytes)}"))
            self.console.print(line, highlight=False)

    def _update(self, **fields) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, **fields)


def _image_cell(run):
    if run.images:
        image = Text(", ").join(Text.assemble(("BLACK", "bold red"), " ", i.filename) if i.black
                                else Text(i.filename) for i in run.images)
    else:
        image = Text("-")
    if not run.ok and not run.images:
        image = Text.assemble(("failed", "bold red"), f": {run.error}")
    return image


def show_bench(console: Console, report) -> None:
    """Print a ``BenchReport``: one row per run, the summary, and the seed's row if compared."""
    table = Table(title=title(f"Bench of {report.node} ({report.chip}, {gib(report.memory_bytes):.0f} GB, "
                              f"{report.device or '?'}): Flux.1 {report.model} {report.quality}, "
                              f"{report.width}x{report.height}, {report.steps} steps, euler"),
                  title_justify="left")
    for column, justify in (("run", "left"), ("seed", "right"), ("total", "right"),
                            ("to 1st step", "right"), ("steps/s", "right"), ("VAE decode", "right"),
                            ("peak pressure", "left"), ("swap Δ", "right"), ("swapouts Δ", "right"),
                            ("image", "left")):
        table.add_column(column, justify=justify)
    for run in report.runs:
        memory = run.memory
        timing = run.timing
        add_row(table, "warm-up" if run.warmup else str(run.index), str(run.seed),
                format_seconds(timing.total_s), format_seconds(timing.first_step_s),
                "-" if timing.steps_per_s is None else f"{timing.steps_per_s:.2f}",
                format_seconds(timing.vae_decode_s), _pressure(memory.peak_pressure) if memory else "-",
                format_swap(memory.swap_delta_bytes) if memory else "-",
                "-" if not memory or memory.swapouts_delta is None else f"{memory.swapouts_delta:+d}",
                _image_cell(run))
    console.print(table)
    summary = report.summary
    if summary and summary.runs:
        console.print(Text(f"over {summary.runs} run(s), min / median / max: time per image "
                           f"{format_stat(summary.total_s)}; steps/s {format_stat(summary.steps_per_s, '')}; "
                           f"to first step {format_stat(summary.first_step_s)}"))
        if summary.warmup_first_step_s is not None:
            console.print(Text(f"warm-up (not counted): {format_seconds(summary.warmup_total_s)}, of "
                               f"which {format_seconds(summary.warmup_first_step_s)} to the first step "
                               "(model load)"))
        if summary.peak_pressure:
            console.print(Text.assemble(
                "memory: peak pressure ", _pressure(summary.peak_pressure), ", swap used up to "
                f"{format_bytes(summary.swap_peak_bytes or 0)} (largest growth in a run "
                f"{format_swap(summary.swap_delta_bytes)}), "
                f"{len(report.memory)} samples every {report.memory_interval_s:g}s"))
    for note in report.memory_errors:
        console.print(Text.assemble(("memory sampling:", "yellow"), f" {note}"))
    if report.compare is not None:
        _show_seed_comparison(console, report)
    for label, path in (("images", report.images_dir), ("history", report.history_file),
                        ("plot", report.plot_file)):
        if path:
            console.print(styled(f"{label}: {path}", "dim"))


def _show_seed_comparison(console: Console, report) -> None:
    compare = report.compare
    table = Table(title="Compared with the seed's table (M4 Pro, 1024x1024, Euler)", title_justify="left")
    for column in ("", "memory", "models", "steps", "pressure", "swap", "time per image"):
        table.add_column(column, justify="right" if column in ("steps", "swap", "time per image") else "left")
    seed = compare.seed
    if seed is not None:
        add_row(table, "seed", f"{seed.memory_gb} GB", seed.models, str(seed.steps),
                _pressure(seed.pressure), f"{seed.swap_gb:g} GB", f"{seed.time_s:.0f}s")
    pressure = compare.measured_pressure
    add_row(table, "measured", f"{gib(report.memory_bytes):.0f} GB",
            f"{report.quality}: {report.files.get('unet', '')}", str(report.steps),
            _pressure(pressure) if pressure else "-",
            format_bytes(compare.measured_swap_peak_bytes) if compare.measured_swap_peak_bytes is not None else "-",
            format_seconds(compare.measured_s) + " (median)")
    console.print(table)
    if compare.ratio is not None:
        faster = "faster" if compare.ratio < 1 else "slower"
        console.print(f"ratio measured / seed: {compare.ratio:.2f} "
                      f"({abs(1 - compare.ratio) * 100:.0f}% {faster} than the seed)")
    elif seed is None:
        console.print("no seed row to compare with")
    for note in compare.notes:
        console.print(Text.assemble("  ", ("note:", "dim"), f" {note}"))
