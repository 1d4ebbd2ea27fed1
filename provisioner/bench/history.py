"""The local bench history: one CSV row per ``provision bench`` of a node, appended.

It lives at ``$PROVISION_HOME/bench-history.csv`` (default
``~/.config/provision/bench-history.csv``), next to the tool's known_hosts, so benches of
different nodes, quantizations and days line up in one file. If a later version changes the
columns, the old file is moved aside (``bench-history.<UTC time>.csv``) and a new one started.
"""

from __future__ import annotations

import csv
import io
import os
import threading
import time
from pathlib import Path
from typing import Optional

from .report import BenchReport

HISTORY_NAME = "bench-history.csv"
_APPEND = threading.Lock()  # fleet benches finish on several threads
COLUMNS = (
    "started_at", "node", "host", "platform", "chip", "memory_gb", "device", "model", "quality",
    "unet", "steps", "width", "height", "runs", "seed", "ok", "median_s", "min_s", "max_s",
    "steps_per_s", "first_step_s", "vae_decode_s", "warmup_s", "warmup_first_step_s",
    "peak_pressure", "swap_peak_gb", "swap_delta_gb", "swapouts_delta", "error",
)


def default_history_path() -> Path:
    """Return ``$PROVISION_HOME/bench-history.csv`` (or ~/.config/provision/...)."""
    from ..node.hostkeys import tool_home

    return tool_home() / HISTORY_NAME


def _number(value: Optional[float], digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def history_row(report: BenchReport) -> dict[str, str]:
    """Return the CSV row of one bench (pure)."""
    summary = report.summary
    total = summary.total_s if summary else None

    def stat(name: str) -> str:
        value = getattr(summary, name) if summary else None
        return _number(value.median if value else None)

    def gb(value: Optional[int]) -> str:
        return "" if value is None else f"{value / 1e9:.3f}"

    return {
        "started_at": report.started_at, "node": report.node, "host": report.host,
        "platform": report.platform, "chip": report.chip,
        "memory_gb": f"{report.memory_bytes / 1024**3:.0f}", "device": report.device or "",
        "model": report.model, "quality": report.quality, "unet": report.files.get("unet", ""),
        "steps": str(report.steps), "width": str(report.width), "height": str(report.height),
        "runs": str(summary.runs if summary else 0), "seed": str(report.seed),
        "ok": "true" if report.ok else "false",
        "median_s": _number(total.median if total else None),
        "min_s": _number(total.min if total else None),
        "max_s": _number(total.max if total else None),
        "steps_per_s": stat("steps_per_s"), "first_step_s": stat("first_step_s"),
        "vae_decode_s": stat("vae_decode_s"),
        "warmup_s": _number(summary.warmup_total_s if summary else None),
        "warmup_first_step_s": _number(summary.warmup_first_step_s if summary else None),
        "peak_pressure": (summary.peak_pressure or "") if summary else "",
        "swap_peak_gb": gb(summary.swap_peak_bytes if summary else None),
        "swap_delta_gb": gb(summary.swap_delta_bytes if summary else None),
        "swapouts_delta": "" if not summary or summary.swapouts_delta is None
        else str(summary.swapouts_delta),
        "error": report.error or "",
    }


def append_history(reports: list[BenchReport], path: Optional[Path] = None) -> Path:
    """Append one row per report to the history CSV (header first in a new file)."""
    path = Path(path) if path is not None else default_history_path()
    with _APPEND:
        return _append(reports, path)


def _append(reports: list[BenchReport], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = _header_of(path)
    if header is not None and header != list(COLUMNS):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        os.replace(path, path.with_name(f"{path.stem}.{stamp}{path.suffix}"))
        header = None
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    if header is None:
        writer.writeheader()
    for report in reports:
        writer.writerow(history_row(report))
    with open(path, "a", encoding="utf-8", newline="") as handle:
        handle.write(buffer.getvalue())
    return path


def _header_of(path: Path) -> Optional[list[str]]:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            first = handle.readline()
    except FileNotFoundError:
        return None
    if not first.strip():
        return None
    return next(csv.reader([first]))
