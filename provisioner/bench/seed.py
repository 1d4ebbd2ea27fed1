"""The seed article's benchmark as data, and the side-by-side ``bench --compare seed`` shows.

The rows are FACTS.md "The seed's benchmark table" (M4 Pro, 1024x1024, Euler); the same
numbers are quoted in sizing.SEED_BENCHMARK's warnings. Where the table leaves the model or
the step count implicit, the row says how it was read. Pure.
"""

from __future__ import annotations

from typing import Optional

from ..core.units import gib
from .report import BenchReport, SeedComparison, SeedRow

_GGUF_Q4 = "GGUF Q4_K_S + T5 Q4_K_M"
SEED_ROWS: tuple[SeedRow, ...] = (
    SeedRow(memory_gb=16, models=_GGUF_Q4, quality="q4", model="dev", steps=20, pressure="red",
            swap_gb=4.6, time_s=760),
    SeedRow(memory_gb=16, models=_GGUF_Q4, quality="q4", model="schnell", steps=4, pressure="red",
            swap_gb=4.6, time_s=200, note="~200 s; the swap figure is the 16 GB row's"),
    SeedRow(memory_gb=32, models=_GGUF_Q4, quality="q4", model="dev", steps=20, pressure="yellow",
            swap_gb=1.0, time_s=180,
            note="~180 s; the table does not name the model: read as dev, 20 steps"),
    SeedRow(memory_gb=64, models=_GGUF_Q4, quality="q4", model="dev", steps=20, pressure="green",
            swap_gb=0.0, time_s=95, note="~95 s"),
    SeedRow(memory_gb=64, models=_GGUF_Q4, quality="q4", model="schnell", steps=4,
            pressure="green", swap_gb=0.0, time_s=20, note="~20 s"),
    SeedRow(memory_gb=64, models="BF16", quality="bf16", model="dev", steps=20, pressure="green",
            swap_gb=0.0, time_s=75,
            note="~75 s; the table does not name the model: read as dev, 20 steps"),
)


def seed_row(memory_bytes: int, model: str, quality: str) -> tuple[Optional[SeedRow], list[str]]:
    """Return the seed's row for this memory size and model (BF16 or GGUF as the node runs),
    with notes on what differs; None when the seed measured nothing comparable."""
    memory_gb = round(gib(memory_bytes))
    rows = [row for row in SEED_ROWS if row.memory_gb == memory_gb and row.model == model]
    if not rows:
        sizes = sorted({row.memory_gb for row in SEED_ROWS if row.model == model})
        return None, [f"the seed measured {model} only on {', '.join(f'{s} GB' for s in sizes)}; "
                      f"this node has {memory_gb} GB"]
    kind = "bf16" if quality == "bf16" else "q4"
    same = [row for row in rows if row.quality == kind]
    row = same[0] if same else rows[0]
    notes = []
    if row.quality != quality:
        notes.append(f"the seed ran {row.models}; this node runs {quality}")
    return row, notes


def compare_with_seed(report: BenchReport) -> SeedComparison:
    """Put the seed's row for the report's memory size and model next to the measurement."""
    row, notes = seed_row(report.memory_bytes, report.model, report.quality)
    summary = report.summary
    measured = summary.total_s.median if summary and summary.total_s else None
    if row is not None and row.steps != report.steps:
        notes.append(f"the seed's time is for {row.steps} steps, this bench ran {report.steps} steps")
    if row is not None and row.note:
        notes.append(f"seed row: {row.note}")
    if report.platform != "macos":
        notes.append(f"this node is {report.platform} ({report.device or 'unknown device'}), "
                     "not an Apple Silicon Mac: the seed's numbers are from an M4 Pro")
    ratio = measured / row.time_s if (row is not None and measured is not None and row.time_s) else None
    return SeedComparison(
        seed=row, measured_s=measured, ratio=ratio,
        measured_pressure=summary.peak_pressure if summary else None,
        measured_swap_peak_bytes=summary.swap_peak_bytes if summary else None,
        notes=notes,
    )
