"""Rendering of one node's commands (plan, up, status, restart, tunnel): tables and progress.

Data is shown verbatim: see ``console.py``.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..core.units import format_bytes, gib
from .console import STATUS_STYLE, VERDICT_STYLE, ProgressView, add_row, styled, title


def _facts_table(report) -> Table:
    facts = report.facts
    table = Table(title=title(f"Node {report.node} "
                              f"({'assumed: offline plan' if facts.assumed else report.host})"),
                  show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    add_row(table, "os", f"{facts.os_name} {facts.os_version} ({facts.arch})")
    add_row(table, "chip", f"{facts.chip}, {facts.cpu_count} cores")
    add_row(table, "memory", f"{gib(facts.memory_bytes):.0f} GB unified" if facts.platform == "macos"
            else f"{gib(facts.memory_bytes):.1f} GiB")
    plan = report.plan
    add_row(table, "gpu budget", f"{format_bytes(plan.budget_bytes)} ({plan.budget_source})")
    if facts.gpus:
        add_row(table, "gpus", ", ".join(f"{g.name} {format_bytes(g.memory_bytes)}" for g in facts.gpus))
    add_row(table, "free disk", f"{format_bytes(facts.disk_free_bytes)} on {facts.disk_path}")
    pythons = ", ".join(f"{p.version} {p.path}" for p in facts.usable_pythons) or \
        "none in 3.10-3.12 (up installs python@3.12 with Homebrew on macOS)"
    add_row(table, "python", pythons)
    if facts.platform == "macos":
        add_row(table, "homebrew", facts.homebrew or "not found")
        add_row(table, "xcode clt", "present" if facts.xcode_clt else "missing")
    return table


def _models_table(plan) -> Table:
    table = Table(title=title(f"Models: Flux.1 {plan.model}, quality {plan.quality}"
                              + ("" if plan.quality_requested in ("auto", plan.quality)
                                 else f" (asked {plan.quality_requested})")), title_justify="left")
    for column in ("role", "file", "repo", "size", "folder"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for item in plan.files:
        repo = Text.assemble(item.repo, " ", ("(gated)", "yellow")) if item.gated else item.repo
        add_row(table, item.role, item.file, repo, format_bytes(item.bytes), item.folder)
    return table


def show_plan(console: Console, report) -> None:
    """Print a ``PlanReport`` for a person."""
    plan = report.plan
    console.print(_facts_table(report))
    console.print()
    console.print(_models_table(plan))
    for reason in plan.reasons:
        console.print(Text(f"  why: {reason}"))
    console.print()
    style = VERDICT_STYLE.get(plan.verdict, "bold")
    console.print(Text.assemble(f"memory: estimated peak {format_bytes(plan.peak_bytes)} vs budget "
                                f"{format_bytes(plan.budget_bytes)} -> ", (plan.verdict.upper(), style)))
    disk_line = (f"disk: download {format_bytes(plan.download_bytes)}, need "
                 f"{format_bytes(plan.disk_needed_bytes)} with margin, free "
                 f"{format_bytes(plan.disk_free_bytes)}")
    if plan.disk_ok:
        console.print(Text.assemble(disk_line + " -> ", ("OK", "bold green")))
    else:
        console.print(Text.assemble(disk_line + " -> ",
                                    (f"SHORT by {format_bytes(plan.disk_shortfall_bytes)}", "bold red")))
    for warning in (list(plan.warnings) + list(getattr(report, "compatibility", []))
                    + list(getattr(report, "node_warnings", []))):
        console.print(Text.assemble(("warning:", "yellow"), f" {warning}"))
    console.print()
    steps = Table(title="Steps `provision up` would run", title_justify="left")
    steps.add_column("#", justify="right")
    steps.add_column("step")
    steps.add_column("kind")
    steps.add_column("what")
    for number, step in enumerate(report.steps, 1):
        # Two tracks: a background step runs beside the next ones until the join names it.
        kind = f"{step.kind} (background)" if getattr(step, "background", False) else step.kind
        add_row(steps, str(number), step.name, kind, step.description)
    console.print(steps)
    if report.cost.connections:
        console.print(styled(f"ssh: {report.cost.connections} connection, "
                             f"{report.cost.commands} command(s)", "dim"))


class StepProgress(ProgressView):
    """Live progress of the step loop.

    On a terminal: a spinner line for the current step with its last output line, and one
    bar per downloading file plus a total (bytes, rate, ETA). Elsewhere (CI logs): one plain
    line per finished step and a download line per file at most every 10 seconds. A step
    started in the background gets a line when it starts and when it ends; its bars (or
    lines) go on while the next steps run: progress is routed by file, not by current step.
    """

    LOG_EVERY = 10.0

    def __init__(self, console: Console, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self._progress = None
        self._step_task = None
        self._file_tasks: dict[str, int] = {}
        self._total_task = None
        self._last_log: dict[str, float] = {}

    def __enter__(self) -> "StepProgress":
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                                      console=self.console, transient=True)
            self._progress.__enter__()
            self._step_task = self._progress.add_task("connecting and reading facts...", total=None)
        return self

    def handle(self, event) -> None:
        """Render one ``engine.StepEvent``."""
        counter = f"[{event.index + 1}/{event.total}]"
        if event.phase == "start":
            # A progress description is markup: escape the data in it.
            self._describe(escape(f"{counter} {event.step.name}: {event.step.describe()}"[:110]))
        elif event.phase == "output":
            if self.verbose:
                self.console.print(Text.assemble("  ", (event.step.name, "dim"), f" | {event.line}"),
                                   highlight=False, soft_wrap=True)
            else:
                self._describe(f"{escape(f'{counter} {event.step.name}: ')}"
                               f"[dim]{escape(event.line[-80:])}[/]")
        elif event.phase == "background":
            self.console.print(Text.assemble(f"{counter} ", (f"{'background':>12}", "cyan"),
                                             f" {event.step.name}: {event.line} (the next steps "
                                             "run meanwhile)"), highlight=False)
        elif event.phase == "progress" and event.data:
            self._download(event.data)
        elif event.phase == "end" and event.result is not None:
            result = event.result
            style = STATUS_STYLE.get(result.status, "")
            self.console.print(Text.assemble(f"{counter} ", (f"{result.status:>12}", style),
                                             f" {result.name} ", (f"({result.duration:.2f}s)", "dim")),
                               highlight=False)

    def _describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._step_task, description=text)

    def _download(self, data: dict) -> None:
        import os
        import time

        name = os.path.basename(str(data.get("dest", "?")))
        kind = data.get("event")
        done, total = data.get("done"), data.get("total")
        if kind in ("retry", "error", "note"):
            message = data.get("error") or data.get("message") or ""
            self.console.print(Text.assemble("  ", (f"{name}: {kind}", "yellow"), f" {message}"),
                               highlight=False)
        if self._progress is None:
            now = time.monotonic()
            if kind == "progress" and now - self._last_log.get(name, 0.0) >= self.LOG_EVERY:
                self._last_log[name] = now
                share = f" ({100 * done / total:.0f}%)" if done is not None and total else ""
                self.console.print(Text(f"  {name}: {format_bytes(done or 0)}"
                                        f"{' / ' + format_bytes(total) if total else ''}{share}"))
            elif kind == "done":
                self.console.print(Text(f"  {name}: verified ({format_bytes(data.get('bytes', 0))})"))
            return
        if kind == "start":
            self._file_tasks[name] = self._progress.add_task(escape(f"  {name}"), total=total or None)
            self._retotal()
        task = self._file_tasks.get(name)
        if task is None:
            return
        if kind == "progress" and done is not None:
            self._progress.update(task, completed=done)
        elif kind == "done":
            self._progress.update(task, completed=data.get("bytes", 0), total=data.get("bytes", 0))
        self._retotal()

    def _retotal(self) -> None:
        by_id = {task.id: task for task in self._progress.tasks}
        tasks = [by_id[i] for i in self._file_tasks.values()]
        total = sum(task.total or 0 for task in tasks)
        completed = sum(task.completed for task in tasks)
        if self._total_task is None and len(tasks) > 1:
            self._total_task = self._progress.add_task("  all files", total=total)
        if self._total_task is not None:
            self._progress.update(self._total_task, total=total, completed=completed)


def show_up(console: Console, report) -> None:
    """Print the recap of an ``up``."""
    table = Table(title=title(f"{'Dry run' if report.dry_run else 'Recap'}: {report.node}"),
                  title_justify="left")
    table.add_column("step")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("detail")
    for result in report.steps:
        name = Text.assemble(result.name, (" (background)", "dim")) if getattr(result, "background", False) \
            else result.name
        add_row(table, name, styled(result.status, STATUS_STYLE.get(result.status, "")),
                f"{result.duration:.2f}s", result.detail)
    console.print(table)
    changed = sum(r.status == "changed" for r in report.steps)
    pending = sum(r.status == "would-change" for r in report.steps)
    summary = (f"{pending} step(s) would change" if report.dry_run
               else f"{changed} step(s) changed")
    cost = (f"(ssh: {report.cost.connections} connection, {report.cost.commands} commands, "
            f"{report.cost.transfers} transfers)")
    console.print(Text.assemble(f"{summary}, {len(report.steps)} in all, {report.duration:.2f}s ",
                                (cost, "dim")))
    first = getattr(report, "first_image", None)
    if first and first.get("ok") and first.get("made_this_run"):
        from ..install.steps.smoke import first_image_line

        console.print(Text.assemble(("✓ ", "green"), first_image_line(first)), highlight=False)


def show_status(console: Console, report) -> None:
    """Print a ``StatusReport``."""
    table = Table(title=title(f"Status of {report.node} ({report.host})"), show_header=False,
                  title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    if not report.installed:
        add_row(table, "installed", "no: `provision up` has not run here")
    elif report.last_up:
        failed = report.last_up.get("failed_step")
        add_row(table, "last up", styled(f"failed at {failed}", "red") if failed else styled("ok", "green"))
    if report.model_plan:
        add_row(table, "models", f"Flux.1 {report.model_plan.get('model')} {report.model_plan.get('quality')}")
    service = report.service
    running = (Text.assemble(("running", "green"), f" pid {service.pid}, up {service.uptime}")
               if service.running else styled("loaded, not running", "yellow") if service.loaded
               else styled("not running", "red"))
    if not service.running and service.explanation:
        running.append(f": {service.explanation}")
    add_row(table, "service", running)
    if report.booted_at:
        add_row(table, "node booted", report.booted_at.strftime("%Y-%m-%d %H:%M:%S UTC"))
    health = report.health
    if health.healthy:
        add_row(table, "health", Text.assemble(
            ("healthy", "green"), f" on {health.device} (ComfyUI {health.comfyui_version}, "
            f"torch {health.pytorch_version}) at 127.0.0.1:{report.remote_port} on the node"))
    else:
        add_row(table, "health", Text.assemble(("unhealthy", "red"), f": {health.problem}"))
    if health.unets:
        add_row(table, "unets", ", ".join(health.unets))
    if health.text_encoders:
        add_row(table, "text encoders", ", ".join(health.text_encoders))
    if report.first_image:
        add_row(table, "first image", smoke_summary(report.first_image))
    if report.memory:
        style = VERDICT_STYLE.get(report.memory.pressure, "")
        add_row(table, "memory", Text.assemble("pressure ", (report.memory.pressure, style), ", swap used "
                                               f"{format_bytes(report.memory.swap_used_bytes)}"))
    for warning in getattr(report, "node_warnings", []):
        add_row(table, "warning", styled(warning, "yellow"))
    console.print(table)


def smoke_summary(record: dict) -> Text:
    """The last first image (``up``'s smoke step): when, how long, ok or the error."""
    from ..install.steps.smoke import first_image_line

    when = str(record.get("at", "?")).replace("T", " ")
    if record.get("ok"):
        return Text.assemble(("ok", "green"), f" {when}: {first_image_line(record)}")
    return Text.assemble(("failed", "red"), f" {when}: {record.get('error') or record.get('outcome')}")


def show_restart(console: Console, health) -> None:
    """Print how a restart ended: healthy on which device, or the problem."""
    console.print(Text(f"ComfyUI healthy on {health.device}" if health.healthy
                       else f"ComfyUI not healthy: {health.problem}"))


def show_tunnel_note(console: Console, message: str) -> None:
    """Print a note of the tunnel (reconnecting, closed...)."""
    console.print(Text.assemble(("tunnel:", "dim"), f" {message}"), highlight=False)


def show_tunnel_ready(console: Console, url: str) -> None:
    """Print that ComfyUI answers at ``url`` through the tunnel."""
    console.print(Text.assemble(("ComfyUI ready:", "bold green"), f" {url} (tunnel open, Ctrl-C closes)"),
                  highlight=False)
