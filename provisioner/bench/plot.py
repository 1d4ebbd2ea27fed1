"""``bench --plot out.png``: time per run and memory over time (matplotlib, an optional extra).

matplotlib is imported only here and only when a plot is asked for; ``require_matplotlib``
lets the CLI refuse before a long bench rather than after it. The Agg canvas is used
directly (no pyplot, no global state, no display needed).
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import UsageError
from .report import PRESSURE_RANK, BenchReport

PRESSURE_COLOURS = {"green": "#2e7d32", "yellow": "#f9a825", "red": "#c62828"}
INSTALL_HINT = "install the plot extra: pip install 'provision[plot]' (matplotlib)"


def require_matplotlib() -> None:
    """Raise ``UsageError`` when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib, which is not installed", INSTALL_HINT) from None


def plot_report(report: BenchReport, path: str | Path) -> Path:
    """Draw time per run (top) and pressure + swap over time (bottom) into a PNG."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    figure = Figure(figsize=(9, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    times_axis, memory_axis = figure.subplots(2, 1, height_ratios=[1, 1.3])
    title = (f"{report.node}: Flux.1 {report.model} {report.quality}, {report.width}x{report.height}, "
             f"{report.steps} steps ({report.chip}, {report.memory_bytes / 1024**3:.0f} GB)")
    figure.suptitle(title, fontsize=10)

    labels, totals, colours, hatches = [], [], [], []
    for run in report.runs:
        labels.append("warm-up" if run.warmup else f"run {run.index}")
        totals.append(run.timing.total_s or 0.0)
        pressure = run.memory.peak_pressure if run.memory else None
        colours.append(PRESSURE_COLOURS.get(pressure or "", "#90a4ae"))
        hatches.append("//" if run.warmup else "")
    bars = times_axis.bar(labels, totals, color=colours, edgecolor="black", linewidth=0.6)
    for bar, hatch, run in zip(bars, hatches, report.runs):
        bar.set_hatch(hatch)
        if not run.ok:
            bar.set_edgecolor("#c62828")
            bar.set_linewidth(2)
    for bar, total in zip(bars, totals):
        times_axis.annotate(f"{total:.1f} s", (bar.get_x() + bar.get_width() / 2, total),
                            ha="center", va="bottom", fontsize=8)
    times_axis.set_ylabel("time per image (s)")
    times_axis.set_title("time per run (bar colour: peak memory pressure; hatched: warm-up)",
                         fontsize=9)
    if report.compare and report.compare.seed is not None:
        seed = report.compare.seed
        times_axis.axhline(seed.time_s, color="#37474f", linestyle="--", linewidth=1)
        times_axis.text(0.99, seed.time_s, f"seed: {seed.time_s:.0f} s ({seed.memory_gb} GB, {seed.models})",
                        transform=times_axis.get_yaxis_transform(), ha="right", va="bottom",
                        fontsize=8, color="#37474f")
        times_axis.set_ylim(0, max(totals + [seed.time_s]) * 1.15)

    points = report.memory
    for run in report.runs:
        memory_axis.axvspan(run.started_s, run.ended_s, color="#eceff1" if run.warmup else "#e3f2fd",
                            zorder=0)
    if points:
        ts = [p.t for p in points]
        swap = [p.swap_used_bytes / 1e9 for p in points]
        memory_axis.plot(ts, swap, color="#1565c0", linewidth=1.5, label="swap used (GB)")
        memory_axis.set_ylim(bottom=0, top=max(max(swap) * 1.2, 1.0))
        level_axis = memory_axis.twinx()
        level_axis.scatter(ts, [PRESSURE_RANK[p.pressure] for p in points],
                           c=[PRESSURE_COLOURS[p.pressure] for p in points], s=14, zorder=3)
        level_axis.set_yticks([0, 1, 2], ["green", "yellow", "red"])
        level_axis.set_ylim(-0.5, 2.5)
        level_axis.set_ylabel("memory pressure")
    memory_axis.set_xlabel("seconds since the bench started (shaded: runs; grey: warm-up)")
    memory_axis.set_ylabel("swap used (GB)")
    memory_axis.set_title(f"memory on the node, sampled every {report.memory_interval_s:g} s",
                          fontsize=9)
    memory_axis.legend(handles=[Patch(color=c, label=k) for k, c in PRESSURE_COLOURS.items()]
                       + memory_axis.get_legend_handles_labels()[0], fontsize=8, loc="upper left")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
