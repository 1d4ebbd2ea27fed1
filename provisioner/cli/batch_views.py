"""Rendering of ``run``: a live bar for the batch and one line per node, then the recap.

Data is shown verbatim: see ``console.py``.
"""

from __future__ import annotations

import re

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..core.errors import UsageError
from .console import STATUS_STYLE, ProgressView, add_row, styled, title

SHARE_STYLE = {"ok": "green", "left": "bold red", "unavailable": "bold red", "stopped": "magenta"}
PROBLEMS_SHOWN = 10


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``WxH`` (e.g. 1024x768)."""
    match = re.fullmatch(r"([0-9]+)x([0-9]+)", text.lower())
    if not match or not int(match[1]) or not int(match[2]):
        raise UsageError(f"--size {text}: expected WIDTHxHEIGHT, e.g. 1024x1024", "use two whole numbers")
    return int(match[1]), int(match[2])


class BatchProgress(ProgressView):
    """On a terminal: the batch's bar (done of total, ETA) and a line per node (its job's
    steps, steps/s, queue). Elsewhere (CI logs): a line per finished or failed job."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._batch = None
        self._nodes: dict[str, int] = {}
        self._done: dict[str, int] = {}

    def __enter__(self) -> "BatchProgress":
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeRemainingColumn(),
                                      TextColumn("{task.fields[info]}"), console=self.console,
                                      transient=True)
            self._progress.__enter__()
            self._batch = self._progress.add_task("connecting, checking the jobs...", total=None,
                                                  info="")
        return self

    def handle(self, event) -> None:
        """Render a ``BatchEvent`` or a ``LaneEvent``."""
        if event.kind == "start":
            skipped = f" ({event.skipped} already done)" if event.skipped else ""
            self._update(self._batch, description=escape(f"batch{skipped}"), total=event.total,
                         completed=0)
            if self._progress is None:
                self.console.print(Text(f"{event.total} job(s) to run{skipped}"))
            return
        node = event.node
        if event.kind == "done":
            self._done[node] = self._done.get(node, 0) + 1
            if self._batch is not None:
                self._progress.advance(self._batch)
            else:
                self.console.print(Text(f"{node}: job {event.job} done ({event.images} image(s))"))
        elif event.kind == "failed":
            self._print(Text.assemble(f"{node}: job {event.job} ", styled("failed", "bold red"),
                                      f": {event.message}"))
        elif event.kind == "left":
            self._print(Text.assemble(f"{node}: ", styled("left the batch", "bold red"),
                                      f": {event.message}; its jobs go to the other nodes"))
        self._node_line(event)

    def _node_line(self, event) -> None:
        if self._progress is None:
            return
        node = event.node
        if node not in self._nodes:
            self._nodes[node] = self._progress.add_task("", total=None, info="")
        rate = "-" if event.steps_per_s is None else f"{event.steps_per_s:.2f}"
        info = f"{rate} steps/s, queue {event.queue}, {self._done.get(node, 0)} done"
        fields = {"info": escape(info)}
        if event.kind == "step":
            fields.update(description=escape(f"  {node}: job {event.job}"), completed=event.value,
                          total=event.total)
        elif event.kind == "left":
            fields.update(description=escape(f"  {node}: left"), total=None)
        self._update(self._nodes[node], **fields)

    def _print(self, line: Text) -> None:
        self.console.print(line, highlight=False)

    def _update(self, task, **fields) -> None:
        if self._progress is not None and task is not None:
            self._progress.update(task, **fields)


def show_batch(console: Console, report) -> None:
    """Print a ``BatchReport``: the planned jobs (dry run) or who made what, and what failed."""
    if report.dry_run:
        _show_plan(console, report)
        return
    table = Table(title=title(f"Batch of {report.jobs} job(s) from {_name(report.workflow)} on "
                              f"{_name(report.source)}"), title_justify="left")
    for column, justify in (("node", "left"), ("status", "left"), ("jobs", "right"),
                            ("images", "right"), ("failed", "right"), ("handed back", "right"),
                            ("steps/s", "right"), ("jobs/s", "right"), ("note", "left")):
        table.add_column(column, justify=justify)
    for share in report.nodes:
        add_row(table, share.node, styled(share.status, SHARE_STYLE.get(share.status, "")),
                str(share.jobs), str(share.images), str(share.failed), str(share.handed_back),
                "-" if share.steps_per_s is None else f"{share.steps_per_s:.2f}",
                "-" if share.jobs_per_s is None else f"{share.jobs_per_s:.3f}", share.error or "")
    console.print(table)
    rate = f", {report.jobs_per_s:.3f} jobs/s" if report.jobs_per_s else ""
    console.print(Text(f"{report.done} done, {report.skipped} skipped (already in the manifest), "
                       f"{report.failed} failed, {report.unrun} not run; {report.images} image(s) "
                       f"in {report.seconds:.1f}s{rate}"
                       + (f"; {report.requeued} job(s) moved to another node" if report.requeued else "")))
    for line in report.problems[:PROBLEMS_SHOWN]:
        console.print(Text.assemble(("  job ", "dim"), str(line.job), " ",
                                    styled(line.status, STATUS_STYLE.get(line.status, "bold red")),
                                    f" {_inputs(line.inputs)}: {line.error}"))
    if len(report.problems) > PROBLEMS_SHOWN:
        console.print(Text(f"  ... and {len(report.problems) - PROBLEMS_SHOWN} more (--json lists all)"))
    if report.problems:
        console.print(Text.assemble(("hint:", "dim"), " run the same command again: the jobs done "
                                    "are skipped, the others run"))
    console.print(styled(f"images: {report.out}  manifest: {report.manifest_csv}", "dim"))


def _show_plan(console: Console, report) -> None:
    table = Table(title=title(f"Dry run: {report.jobs} job(s) from {_name(report.workflow)} on "
                              f"{_name(report.source)}, nothing queued"), title_justify="left")
    for column in ("job", "key", "status", "inputs"):
        table.add_column(column, justify="right" if column == "job" else "left")
    for line in report.planned:
        add_row(table, str(line.job), line.key[:12],
                styled(line.status, "dim" if line.status == "done" else "cyan"), _inputs(line.inputs))
    console.print(table)
    console.print(Text(f"{report.jobs - report.skipped} to run, {report.skipped} already in "
                       f"{report.manifest_json}; every job checked on every node"))


def _inputs(inputs: dict) -> str:
    text = ", ".join(f"{name}={value!r}" for name, value in inputs.items())
    return text if len(text) <= 100 else text[:97] + "..."


def _name(path: str) -> str:
    """A file's name for a title (the recap's JSON keeps the whole path)."""
    return path.rsplit("/", 1)[-1]
