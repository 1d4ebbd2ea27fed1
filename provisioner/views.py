"""Rendering for the CLI (rich): the presentation half of ``cli.py``.

Only the CLI imports this module; it turns the data that ``api`` returns into tables.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table

from .units import format_bytes, gib

VERDICT_STYLE = {"green": "bold green", "yellow": "bold yellow", "red": "bold red"}


def make_console(stderr: bool = False) -> Console:
    """Return a console that stays readable when output is not a terminal (CI logs)."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "120"))
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def _facts_table(report) -> Table:
    facts = report.facts
    table = Table(title=f"Node {report.node} ({'assumed: offline plan' if facts.assumed else report.host})",
                  show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    table.add_row("os", f"{facts.os_name} {facts.os_version} ({facts.arch})")
    table.add_row("chip", f"{facts.chip}, {facts.cpu_count} cores")
    table.add_row("memory", f"{gib(facts.memory_bytes):.0f} GB unified" if facts.platform == "macos"
                  else f"{gib(facts.memory_bytes):.1f} GiB")
    plan = report.plan
    table.add_row("gpu budget", f"{format_bytes(plan.budget_bytes)} ({plan.budget_source})")
    if facts.gpus:
        table.add_row("gpus", ", ".join(f"{g.name} {format_bytes(g.memory_bytes)}" for g in facts.gpus))
    table.add_row("free disk", f"{format_bytes(facts.disk_free_bytes)} on {facts.disk_path}")
    pythons = ", ".join(f"{p.version} {p.path}" for p in facts.usable_pythons) or \
        "none in 3.10-3.12 (up installs python@3.12 with Homebrew on macOS)"
    table.add_row("python", pythons)
    if facts.platform == "macos":
        table.add_row("homebrew", facts.homebrew or "not found")
        table.add_row("xcode clt", "present" if facts.xcode_clt else "missing")
    return table


def _models_table(plan) -> Table:
    table = Table(title=f"Models: Flux.1 {plan.model}, quality {plan.quality}"
                  + ("" if plan.quality_requested in ("auto", plan.quality)
                     else f" (asked {plan.quality_requested})"), title_justify="left")
    for column in ("role", "file", "repo", "size", "folder"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for item in plan.files:
        gated = " [yellow](gated)[/]" if item.gated else ""
        table.add_row(item.role, item.file, item.repo + gated, format_bytes(item.bytes), item.folder)
    return table


def show_plan(console: Console, report) -> None:
    """Print a ``PlanReport`` for a person."""
    plan = report.plan
    console.print(_facts_table(report))
    console.print()
    console.print(_models_table(plan))
    for reason in plan.reasons:
        console.print(f"  why: {reason}")
    console.print()
    style = VERDICT_STYLE.get(plan.verdict, "bold")
    console.print(f"memory: estimated peak {format_bytes(plan.peak_bytes)} vs budget "
                  f"{format_bytes(plan.budget_bytes)} -> [{style}]{plan.verdict.upper()}[/]")
    disk_line = (f"disk: download {format_bytes(plan.download_bytes)}, need "
                 f"{format_bytes(plan.disk_needed_bytes)} with margin, free "
                 f"{format_bytes(plan.disk_free_bytes)}")
    if plan.disk_ok:
        console.print(disk_line + " -> [bold green]OK[/]")
    else:
        console.print(disk_line + f" -> [bold red]SHORT by {format_bytes(plan.disk_shortfall_bytes)}[/]")
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print()
    steps = Table(title="Steps `provision up` would run", title_justify="left")
    steps.add_column("#", justify="right")
    steps.add_column("step")
    steps.add_column("kind")
    steps.add_column("what")
    for number, step in enumerate(report.steps, 1):
        steps.add_row(str(number), step.name, step.kind, step.description)
    console.print(steps)
    if report.cost.connections:
        console.print(f"[dim]ssh: {report.cost.connections} connection, "
                      f"{report.cost.commands} command(s)[/]")


STATUS_STYLE = {"ok": "green", "changed": "yellow", "would-change": "cyan", "skipped": "dim",
                "failed": "bold red"}


class StepProgress:
    """Live progress of the step loop: a spinner with the step and its last output line on a
    terminal; one plain line per finished step elsewhere (CI logs)."""

    def __init__(self, console: Console, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self._status = None
        self._step = ""

    def __enter__(self) -> "StepProgress":
        if self.console.is_terminal:
            self._status = self.console.status("connecting and reading facts...")
            self._status.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)

    def handle(self, event) -> None:
        """Render one ``engine.StepEvent``."""
        counter = f"[{event.index + 1}/{event.total}]"
        if event.phase == "start":
            self._step = f"{counter} {event.step.name}: {event.step.describe()}"
            if self._status is not None:
                self._status.update(self._step)
        elif event.phase == "output":
            if self.verbose:
                self.console.print(f"  [dim]{event.step.name}[/] | {event.line}", markup=True,
                                   highlight=False, soft_wrap=True)
            elif self._status is not None:
                self._status.update(f"{self._step}\n  [dim]{event.line[-100:]}[/]")
        elif event.phase == "end" and event.result is not None:
            result = event.result
            style = STATUS_STYLE.get(result.status, "")
            self.console.print(f"{counter} [{style}]{result.status:>12}[/] {result.name} "
                               f"[dim]({result.duration:.2f}s)[/]", highlight=False)


def show_up(console: Console, report) -> None:
    """Print the recap of an ``up``."""
    table = Table(title=f"{'Dry run' if report.dry_run else 'Recap'}: {report.node}",
                  title_justify="left")
    table.add_column("step")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("detail")
    for result in report.steps:
        style = STATUS_STYLE.get(result.status, "")
        table.add_row(result.name, f"[{style}]{result.status}[/]", f"{result.duration:.2f}s",
                      result.detail)
    console.print(table)
    changed = sum(r.status == "changed" for r in report.steps)
    pending = sum(r.status == "would-change" for r in report.steps)
    summary = (f"{pending} step(s) would change" if report.dry_run
               else f"{changed} step(s) changed")
    console.print(f"{summary}, {len(report.steps)} in all, {report.duration:.2f}s "
                  f"[dim](ssh: {report.cost.connections} connection, {report.cost.commands} "
                  f"commands, {report.cost.transfers} transfers)[/]")
