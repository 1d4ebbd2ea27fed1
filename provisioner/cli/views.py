"""Rendering for the CLI (rich): the presentation half of ``cli.py``.

Only the CLI imports this module; it turns the data that ``api`` returns into tables.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table

from ..core.units import format_bytes, gib

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
    """Live progress of the step loop.

    On a terminal: a spinner line for the current step with its last output line, and one
    bar per downloading file plus a total (bytes, rate, ETA). Elsewhere (CI logs): one plain
    line per finished step and a download line per file at most every 10 seconds.
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

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def handle(self, event) -> None:
        """Render one ``engine.StepEvent``."""
        counter = f"[{event.index + 1}/{event.total}]"
        if event.phase == "start":
            self._describe(f"{counter} {event.step.name}: {event.step.describe()}"[:110])
        elif event.phase == "output":
            if self.verbose:
                self.console.print(f"  [dim]{event.step.name}[/] | {event.line}", markup=True,
                                   highlight=False, soft_wrap=True)
            else:
                self._describe(f"{counter} {event.step.name}: [dim]{event.line[-80:]}[/]")
        elif event.phase == "progress" and event.data:
            self._download(event.data)
        elif event.phase == "end" and event.result is not None:
            result = event.result
            style = STATUS_STYLE.get(result.status, "")
            self.console.print(f"{counter} [{style}]{result.status:>12}[/] {result.name} "
                               f"[dim]({result.duration:.2f}s)[/]", highlight=False)

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
            self.console.print(f"  [yellow]{name}: {kind}[/] {message}", highlight=False)
        if self._progress is None:
            now = time.monotonic()
            if kind == "progress" and now - self._last_log.get(name, 0.0) >= self.LOG_EVERY:
                self._last_log[name] = now
                share = f" ({100 * done / total:.0f}%)" if done is not None and total else ""
                self.console.print(f"  {name}: {format_bytes(done or 0)}"
                                   f"{' / ' + format_bytes(total) if total else ''}{share}")
            elif kind == "done":
                self.console.print(f"  {name}: verified ({format_bytes(data.get('bytes', 0))})")
            return
        if kind == "start":
            self._file_tasks[name] = self._progress.add_task(f"  {name}", total=total or None)
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


def show_status(console: Console, report) -> None:
    """Print a ``StatusReport``."""
    table = Table(title=f"Status of {report.node} ({report.host})", show_header=False,
                  title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    if not report.installed:
        table.add_row("installed", "no: `provision up` has not run here")
    elif report.last_up:
        failed = report.last_up.get("failed_step")
        table.add_row("last up", f"[red]failed at {failed}[/]" if failed else "[green]ok[/]")
    if report.model_plan:
        table.add_row("models", f"Flux.1 {report.model_plan.get('model')} {report.model_plan.get('quality')}")
    service = report.service
    running = (f"[green]running[/] pid {service.pid}, up {service.uptime}" if service.running
               else "[yellow]loaded, not running[/]" if service.loaded else "[red]not running[/]")
    table.add_row("service", running)
    health = report.health
    if health.healthy:
        table.add_row("health", f"[green]healthy[/] on {health.device} (ComfyUI {health.comfyui_version}, "
                      f"torch {health.pytorch_version}) at 127.0.0.1:{report.remote_port} on the node")
    else:
        table.add_row("health", f"[red]unhealthy[/]: {health.problem}")
    if health.unets:
        table.add_row("unets", ", ".join(health.unets))
    if health.text_encoders:
        table.add_row("text encoders", ", ".join(health.text_encoders))
    if report.memory:
        style = VERDICT_STYLE.get(report.memory.pressure, "")
        table.add_row("memory", f"pressure [{style}]{report.memory.pressure}[/], swap used "
                      f"{format_bytes(report.memory.swap_used_bytes)}")
    console.print(table)


# ---------------------------------------------------------------------------- fleets

FLEET_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow"}


class FleetProgress:
    """Live progress of a fleet; ``handle(name, event)`` may be called from any thread.

    On a terminal: one table row per node (node, phase, progress, elapsed), redrawn in place.
    Elsewhere (CI logs), with ``plain``: one line per finished step and per finished node.
    """

    def __init__(self, console: Console, plain: bool = True) -> None:
        import threading

        self.console = console
        self.plain = plain
        self._rows: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._live = None

    def __enter__(self) -> "FleetProgress":
        if self.console.is_terminal:
            from rich.live import Live

            self._live = Live(console=self.console, get_renderable=self._table,
                              refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the live table (idempotent): the recap is printed next."""
        live, self._live = self._live, None
        if live is not None:
            live.__exit__(None, None, None)

    def handle(self, name: str, event) -> None:
        """Render a ``fleet.NodeEvent`` or an ``engine.StepEvent`` of node ``name``."""
        import time

        now = time.monotonic()
        with self._lock:
            row = self._rows.setdefault(name, {"phase": "queued", "index": 0, "total": 0,
                                               "started": now, "ended": None, "status": None,
                                               "bytes": {}})
            line = self._update(row, event, now)
        if line and self.plain and self._live is None:
            self.console.print(f"{name}: {line}", highlight=False, soft_wrap=True)

    def _update(self, row: dict, event, now: float) -> str:
        if hasattr(event, "harvest"):  # a teardown.TeardownEvent
            return self._teardown(row, event)
        if hasattr(event, "runs"):  # a benchrun.BenchEvent
            return self._bench(row, event)
        phase = getattr(event, "phase", "")
        step = getattr(event, "step", None)
        if step is None:  # a fleet.NodeEvent
            if phase == "done":
                row.update(ended=now, status=event.status, phase=event.status or "done")
                detail = f": {event.detail}" if event.detail and event.status != "ok" else ""
                return f"[{FLEET_STYLE.get(event.status or '', '')}]{event.status}[/] " \
                       f"({now - row['started']:.1f}s){detail}"
            row["phase"] = event.detail or phase
            return event.detail if phase == "waiting" else ""
        row.update(index=event.index, total=event.total)
        if phase == "start":
            row["phase"] = step.name
        elif phase == "progress" and event.data and event.data.get("dest"):
            sizes = row["bytes"]
            data = event.data
            done, total = data.get("done", data.get("bytes")), data.get("total", data.get("bytes"))
            if done is not None:
                sizes[data["dest"]] = (done, total or sizes.get(data["dest"], (0, 0))[1])
            got = sum(d for d, _ in sizes.values())
            want = sum(t or 0 for _, t in sizes.values())
            row["phase"] = f"{step.name} {format_bytes(got)}" + (f" / {format_bytes(want)}" if want else "")
        elif phase == "end" and event.result is not None:
            result = event.result
            row["index"] = event.index + 1
            if result.status in ("ok", "skipped"):
                return ""  # plain logs name what changed or failed; the recap has the rest
            style = STATUS_STYLE.get(result.status, "")
            return (f"[{event.index + 1}/{event.total}] [{style}]{result.status}[/] {result.name} "
                    f"[dim]({result.duration:.2f}s)[/]")
        return ""

    @staticmethod
    def _teardown(row: dict, event) -> str:
        if event.kind == "note":
            row["phase"] = event.message[:60]
            return event.message
        harvest = event.harvest
        if harvest is None:
            return ""
        if harvest.kind == "start":
            row.update(phase="harvest", index=0, total=harvest.total_files)
        elif harvest.kind in ("file", "failed"):
            row["index"] += 1
            row["phase"] = f"harvest {os.path.basename(harvest.file)}"
        elif harvest.kind == "end":
            row["phase"] = "harvested"
            return f"harvested {row['index']} file(s)"
        return ""

    @staticmethod
    def _bench(row: dict, event) -> str:
        label = "warm-up" if event.warmup else f"run {event.run}/{event.runs}"
        if event.kind == "run-start":
            row.update(phase=label, index=0, total=0)
        elif event.kind == "step" and event.total:
            row.update(phase=f"{label}: step {event.value}/{event.total}", index=event.value,
                       total=event.total)
        elif event.kind == "run-end" and event.result is not None:
            total = event.result.timing.total_s
            return f"{label}: {'ok' if event.result.ok else 'failed'}" + \
                (f" in {total:.1f}s" if total is not None else "")
        return ""

    def _table(self) -> Table:
        import time

        from rich.progress_bar import ProgressBar

        now = time.monotonic()
        table = Table(title="provision fleet", title_justify="left")
        for column in ("node", "phase", "progress", "steps", "elapsed"):
            table.add_column(column, justify="right" if column in ("steps", "elapsed") else "left")
        with self._lock:
            rows = [(name, dict(row)) for name, row in self._rows.items()]
        for name, row in rows:
            style = FLEET_STYLE.get(row["status"] or "", "")
            phase = f"[{style}]{row['phase']}[/]" if style else row["phase"]
            total = row["total"] or 1
            bar = ProgressBar(total=total, completed=row["index"] if row["total"] else 0, width=24)
            elapsed = (row["ended"] or now) - row["started"]
            steps = f"{row['index']}/{row['total']}" if row["total"] else ""
            table.add_row(name, phase, bar, steps, f"{elapsed:.0f}s")
        return table


def _fleet_summary(console: Console, report) -> None:
    counts = {status: len(report.names(status)) for status in ("ok", "failed", "skipped")}
    parts = [f"{counts['ok']} of {len(report.nodes)} node(s) ok"]
    parts += [f"[{FLEET_STYLE[s]}]{counts[s]} {s}[/]" for s in ("failed", "skipped") if counts[s]]
    console.print(", ".join(parts) + f" in {report.seconds:.1f}s")
    for line in report.nodes:
        if line.status == "failed" and line.hint:
            console.print(f"[dim]{line.node}: hint:[/] {line.hint}", highlight=False, soft_wrap=True)


def _fleet_table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in ("changed", "time", "memory") else "left")
    return table


def _status_cell(line) -> str:
    return f"[{FLEET_STYLE.get(line.status, '')}]{line.status}[/]"


def show_fleet_up(console: Console, report) -> None:
    """Print the recap of a ``fleet up``: node, status, changed steps, time, URL or error."""
    table = _fleet_table("Fleet recap: up", ("node", "status", "changed", "time", "url or error"))
    for line in report.nodes:
        changed = str(line.report.changed) if line.report is not None else "-"
        if line.url:
            where = line.url
        elif line.error:
            where = f"[red]{line.error}[/]"
        else:
            launched = line.report is not None and any(
                r.name == "health" and r.status in ("ok", "changed") for r in line.report.steps)
            where = "healthy (no tunnel)" if launched else "installed (not launched)"
        table.add_row(line.node, _status_cell(line), changed, f"{line.seconds:.1f}s", where)
    console.print(table)
    _fleet_summary(console, report)


def show_fleet_plan(console: Console, report) -> None:
    """Print one table of every node's facts and model choice."""
    table = _fleet_table("Fleet plan", ("node", "status", "platform", "memory", "chip", "models",
                                        "verdict", "download", "disk"))
    for line in report.nodes:
        plan_report = line.report
        if plan_report is None:
            table.add_row(line.node, _status_cell(line), "", "", "", f"[red]{line.error}[/]", "", "", "")
            continue
        facts, plan = plan_report.facts, plan_report.plan
        verdict = f"[{VERDICT_STYLE.get(plan.verdict, '')}]{plan.verdict.upper()}[/]"
        disk = "[green]ok[/]" if plan.disk_ok else f"[red]short {format_bytes(plan.disk_shortfall_bytes)}[/]"
        table.add_row(line.node, _status_cell(line), facts.platform, f"{gib(facts.memory_bytes):.0f} GB",
                      facts.chip, f"Flux.1 {plan.model} {plan.quality}", verdict,
                      format_bytes(plan.download_bytes), disk)
    console.print(table)
    _fleet_summary(console, report)


def show_fleet_status(console: Console, report) -> None:
    """Print one table of every node's service, health and memory pressure."""
    table = _fleet_table("Fleet status", ("node", "status", "service", "health", "models", "memory"))
    for line in report.nodes:
        status = line.report
        if status is None:
            table.add_row(line.node, _status_cell(line), "", f"[red]{line.error}[/]", "", "")
            continue
        service = status.service
        running = (f"running (pid {service.pid}, up {service.uptime})" if service.running
                   else "loaded, not running" if service.loaded else "not running")
        health = (f"[green]healthy[/] on {status.health.device}" if status.health.healthy
                  else f"[red]{status.health.problem}[/]")
        models = (f"{status.model_plan.get('model')} {status.model_plan.get('quality')}"
                  if status.model_plan else "")
        memory = status.memory.pressure if status.memory else ""
        table.add_row(line.node, _status_cell(line), running, health, models, memory)
    console.print(table)
    _fleet_summary(console, report)


def show_fleet_urls(console: Console, report) -> None:
    """Print the URL of every node whose tunnel is open."""
    table = Table(title="ComfyUI (tunnels open, Ctrl-C closes them all)", title_justify="left",
                  show_header=False, box=None, padding=(0, 2))
    table.add_column()
    table.add_column()
    for line in report.nodes:
        if line.url:
            table.add_row(line.node, line.url)
    console.print(table)


# ---------------------------------------------------------------------------- bench


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f}s" if value >= 10 else f"{value:.2f}s"


def _stat(stat, unit: str = "s") -> str:
    if stat is None:
        return "-"
    if unit == "s":
        return f"{_seconds(stat.min)} / {_seconds(stat.median)} / {_seconds(stat.max)}"
    return f"{stat.min:.2f} / {stat.median:.2f} / {stat.max:.2f}"


def _swap(n_bytes) -> str:
    if n_bytes is None:
        return "-"
    sign = "+" if n_bytes > 0 else ""
    return f"{sign}{format_bytes(n_bytes)}"


class BenchProgress:
    """Live progress of a bench: a bar for the current run's sampler steps with the latest
    memory pressure on a terminal; one line per finished run elsewhere (CI logs)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress = None
        self._task = None
        self._memory = ""

    def __enter__(self) -> "BenchProgress":
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[memory]}"),
                                      console=self.console, transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task("connecting, checking the workflow...", total=None,
                                                 memory="")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def handle(self, event) -> None:
        """Render one ``benchrun.BenchEvent``."""
        label = "warm-up" if event.warmup else f"run {event.run}/{event.runs}"
        if event.kind == "memory" and event.memory is not None:
            style = VERDICT_STYLE.get(event.memory.pressure, "")
            self._memory = (f"pressure [{style}]{event.memory.pressure}[/], swap "
                            f"{format_bytes(event.memory.swap_used_bytes)}")
            self._update(memory=self._memory)
        elif event.kind == "run-start":
            self._update(description=f"{label} (seed {event.seed}): loading", completed=0, total=None)
        elif event.kind == "step":
            self._update(description=f"{label} (seed {event.seed}): sampling", completed=event.value,
                         total=event.total)
        elif event.kind == "run-end" and event.result is not None:
            result = event.result
            status = "[green]ok[/]" if result.ok else "[bold red]failed[/]"
            memory = result.memory
            pressure = (f", peak pressure [{VERDICT_STYLE.get(memory.peak_pressure, '')}]"
                        f"{memory.peak_pressure}[/], swap {_swap(memory.swap_delta_bytes)}") if memory else ""
            self.console.print(f"{label} (seed {result.seed}): {status} "
                               f"{_seconds(result.timing.total_s)}{pressure}", highlight=False)

    def _update(self, **fields) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, **fields)


def show_bench(console: Console, report) -> None:
    """Print a ``BenchReport``: one row per run, the summary, and the seed's row if compared."""
    table = Table(title=f"Bench of {report.node} ({report.chip}, {gib(report.memory_bytes):.0f} GB, "
                        f"{report.device or '?'}): Flux.1 {report.model} {report.quality}, "
                        f"{report.width}x{report.height}, {report.steps} steps, euler",
                  title_justify="left")
    for column, justify in (("run", "left"), ("seed", "right"), ("total", "right"),
                            ("to 1st step", "right"), ("steps/s", "right"), ("VAE decode", "right"),
                            ("peak pressure", "left"), ("swap Δ", "right"), ("swapouts Δ", "right"),
                            ("image", "left")):
        table.add_column(column, justify=justify)
    for run in report.runs:
        memory = run.memory
        pressure = (f"[{VERDICT_STYLE.get(memory.peak_pressure, '')}]{memory.peak_pressure}[/]"
                    if memory else "-")
        if run.images:
            image = ", ".join(("[bold red]BLACK[/] " if i.black else "") + i.filename for i in run.images)
        else:
            image = "-"
        if not run.ok:
            image = f"[bold red]failed[/]: {run.error}" if not run.images else image
        timing = run.timing
        table.add_row("warm-up" if run.warmup else str(run.index), str(run.seed), _seconds(timing.total_s),
                      _seconds(timing.first_step_s),
                      "-" if timing.steps_per_s is None else f"{timing.steps_per_s:.2f}",
                      _seconds(timing.vae_decode_s), pressure,
                      _swap(memory.swap_delta_bytes) if memory else "-",
                      "-" if not memory or memory.swapouts_delta is None else f"{memory.swapouts_delta:+d}",
                      image)
    console.print(table)
    summary = report.summary
    if summary and summary.runs:
        console.print(f"over {summary.runs} run(s), min / median / max: time per image "
                      f"{_stat(summary.total_s)}; steps/s {_stat(summary.steps_per_s, '')}; "
                      f"to first step {_stat(summary.first_step_s)}")
        if summary.warmup_first_step_s is not None:
            console.print(f"warm-up (not counted): {_seconds(summary.warmup_total_s)}, of which "
                          f"{_seconds(summary.warmup_first_step_s)} to the first step (model load)")
        if summary.peak_pressure:
            style = VERDICT_STYLE.get(summary.peak_pressure, "")
            console.print(f"memory: peak pressure [{style}]{summary.peak_pressure}[/], swap used up to "
                          f"{format_bytes(summary.swap_peak_bytes or 0)} (largest growth in a run "
                          f"{_swap(summary.swap_delta_bytes)}), "
                          f"{len(report.memory)} samples every {report.memory_interval_s:g}s")
    for note in report.memory_errors:
        console.print(f"[yellow]memory sampling:[/] {note}")
    if report.compare is not None:
        _show_seed_comparison(console, report)
    for label, path in (("images", report.images_dir), ("history", report.history_file),
                        ("plot", report.plot_file)):
        if path:
            console.print(f"[dim]{label}: {path}[/]")


def _show_seed_comparison(console: Console, report) -> None:
    compare = report.compare
    table = Table(title="Compared with the seed's table (M4 Pro, 1024x1024, Euler)", title_justify="left")
    for column in ("", "memory", "models", "steps", "pressure", "swap", "time per image"):
        table.add_column(column, justify="right" if column in ("steps", "swap", "time per image") else "left")
    seed = compare.seed
    if seed is not None:
        table.add_row("seed", f"{seed.memory_gb} GB", seed.models, str(seed.steps),
                      f"[{VERDICT_STYLE.get(seed.pressure, '')}]{seed.pressure}[/]",
                      f"{seed.swap_gb:g} GB", f"{seed.time_s:.0f}s")
    pressure = compare.measured_pressure
    table.add_row("measured", f"{gib(report.memory_bytes):.0f} GB",
                  f"{report.quality}: {report.files.get('unet', '')}", str(report.steps),
                  f"[{VERDICT_STYLE.get(pressure, '')}]{pressure}[/]" if pressure else "-",
                  format_bytes(compare.measured_swap_peak_bytes) if compare.measured_swap_peak_bytes is not None else "-",
                  _seconds(compare.measured_s) + " (median)")
    console.print(table)
    if compare.ratio is not None:
        faster = "faster" if compare.ratio < 1 else "slower"
        console.print(f"ratio measured / seed: {compare.ratio:.2f} "
                      f"({abs(1 - compare.ratio) * 100:.0f}% {faster} than the seed)")
    elif seed is None:
        console.print("no seed row to compare with")
    for note in compare.notes:
        console.print(f"  [dim]note:[/] {note}")


# ---------------------------------------------------------------------------- down and session


class TeardownProgress:
    """Live progress of ``down``: notes as lines; the harvest as a bar on a terminal, else
    a line when it starts and one when it ends (and one per failed file)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress = None
        self._task = None
        self._started = 0.0

    def __enter__(self) -> "TeardownProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
            self._progress = None

    def handle(self, event) -> None:
        """Render one ``teardown.TeardownEvent``."""
        import time

        if event.kind == "note":
            self.console.print(f"[dim]down:[/] {event.message}", highlight=False)
            return
        harvest = event.harvest
        if harvest.kind == "start":
            self._started = time.monotonic()
        elif harvest.kind == "queued":
            # Files are queued as the node lists them: the bar's total grows.
            if self.console.is_terminal and self._progress is None:
                from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

                self._progress = Progress(TextColumn("  harvest"), BarColumn(), DownloadColumn(),
                                          TransferSpeedColumn(), console=self.console,
                                          transient=True)
                self._progress.__enter__()
                self._task = self._progress.add_task("harvest", total=0)
            if self._progress is not None:
                task = self._progress.tasks[0]
                self._progress.update(self._task, total=(task.total or 0) + harvest.bytes)
        elif harvest.kind == "bytes" and self._progress is not None:
            self._progress.update(self._task, advance=harvest.bytes)
        elif harvest.kind == "failed":
            self.console.print(f"  [red]not copied:[/] {harvest.file}: {harvest.error}",
                               highlight=False)
        elif harvest.kind == "end":
            self.close()
            if harvest.total_files:
                seconds = max(time.monotonic() - self._started, 1e-6)
                self.console.print(f"[dim]down:[/] copied {harvest.total_files} file(s), "
                                   f"{format_bytes(harvest.total_bytes)} in {seconds:.1f}s "
                                   f"({format_bytes(harvest.total_bytes / seconds)}/s)",
                                   highlight=False)


_WHAT = {"output": "output", "token": "token file", "model": "model file",
         "launch-agent": "LaunchAgent plist", "workdir": "work folder"}


def _removal_rows(removals) -> list[tuple[str, str, str]]:
    """Group outputs and models (there can be hundreds); list the rest one by one."""
    rows = []
    for what in ("output", "model"):
        items = [r for r in removals if r.what == what]
        if len(items) > 3:
            rows.append((f"{len(items)} {_WHAT[what]}s", _common_folder([r.path for r in items]),
                         format_bytes(sum(r.bytes for r in items))))
        else:
            rows += [(_WHAT[what], r.path, format_bytes(r.bytes)) for r in items]
    for removal in removals:
        if removal.what not in ("output", "model"):
            size = format_bytes(removal.bytes) if removal.what == "workdir" else ""
            rows.append((_WHAT[removal.what], removal.path, size))
    return rows


def _common_folder(paths: list[str]) -> str:
    import posixpath

    return posixpath.commonpath(paths) + "/..." if paths else ""


def show_down(console: Console, report) -> None:
    """Print a ``DownReport`` for a person."""
    title = f"{'Dry run of down' if report.dry_run else 'Down'}: {report.node} ({report.host})"
    if report.nothing_to_do:
        console.print(title, highlight=False)
        for note in report.notes:
            console.print(f"  {note}", highlight=False)
        return
    table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    queue = report.queue
    if queue is not None:
        if not queue.answered:
            table.add_row("queue", "ComfyUI not answering: nothing to wait for")
        elif queue.interrupted or queue.dropped:
            table.add_row("queue", f"[yellow]interrupted[/] {', '.join(queue.interrupted) or 'nothing'}, "
                          f"dropped {len(queue.dropped)} waiting prompt(s)")
        elif queue.running or queue.pending:
            verb = "would wait for" if report.dry_run else f"waited {queue.waited_seconds:.0f}s for"
            table.add_row("queue", f"{verb} {len(queue.running)} running, {len(queue.pending)} waiting")
        else:
            table.add_row("queue", "empty")
    service = report.service
    if service is not None:
        if report.dry_run:
            state = "running" if service.was_running else "loaded" if service.was_loaded else "not running"
            table.add_row("service", f"{state}; would be stopped" if service.was_loaded or
                          service.was_running else state)
        else:
            free = {True: f"port {service.port} free", False: f"[red]port {service.port} still taken[/]",
                    None: ""}[service.port_free]
            table.add_row("service", f"{'stopped' if service.stopped else 'was not running'}; {free}")
    harvest = report.harvest
    if harvest is not None:
        if report.dry_run:
            size = format_bytes(sum(f.bytes for f in harvest.to_pull))
            table.add_row("harvest", f"would copy {len(harvest.to_pull)} file(s), {size}, to "
                          f"{harvest.dest}; {harvest.skipped} already there")
        else:
            style = "green" if harvest.ok else "red"
            table.add_row("harvest", f"[{style}]{len(harvest.pulled)} file(s) copied[/] "
                          f"({format_bytes(harvest.bytes_pulled)}) to {harvest.dest}; "
                          f"{harvest.skipped} already there"
                          + (f"; [red]{len(harvest.failed) + len(harvest.refused)} not copied[/]"
                             if not harvest.ok else ""))
            if harvest.manifest:
                table.add_row("manifest", harvest.manifest)
    secrets = report.secrets
    if secrets is not None:
        removed = "token file removed" if secrets.removed else "no token file on the node"
        if report.dry_run:
            removed = "token file would be removed" if secrets.removed else "no token file on the node"
        check = {"clean": f"[green]searched, not found[/] ({secrets.files_searched} files, "
                          f"{format_bytes(secrets.bytes_searched)})",
                 "found": f"[bold red]FOUND in {', '.join(secrets.found_in)}[/]",
                 "not-checked": f"[yellow]not searched[/]: {secrets.note}"}[secrets.check]
        table.add_row("token", f"{removed}; {check}" if not report.dry_run else removed)
    console.print(table)
    if report.dry_run and harvest is not None and harvest.to_pull:
        copy = Table(title="Would copy", title_justify="left")
        copy.add_column("file")
        copy.add_column("size", justify="right")
        copy.add_column("why")
        for item in harvest.to_pull:
            copy.add_row(item.file, format_bytes(item.bytes), item.reason)
        console.print(copy)
    rows = _removal_rows(report.removals)
    if rows:
        removed = Table(title="Would delete on the node" if report.dry_run else "Deleted on the node",
                        title_justify="left")
        removed.add_column("what")
        removed.add_column("path")
        removed.add_column("size", justify="right")
        for row in rows:
            removed.add_row(*row)
        console.print(removed)
    elif not report.dry_run:
        console.print("nothing deleted on the node")
    for item in ([*harvest.failed] if harvest is not None else []):
        console.print(f"[red]not copied:[/] {item.file}: {item.error}", highlight=False)
    for item in ([*harvest.refused] if harvest is not None else []):
        console.print(f"[red]not copied:[/] {item.file}: {item.reason}", highlight=False)
    for note in report.notes:
        console.print(f"[dim]note:[/] {note}", highlight=False)
    for problem in report.problems:
        console.print(f"[bold red]problem:[/] {problem}", highlight=False)
    console.print(f"{report.duration:.2f}s [dim](ssh: {report.cost.get('connections', 0)} connection, "
                  f"{report.cost.get('commands', 0)} commands, {report.cost.get('transfers', 0)} "
                  "transfers)[/]")


class Countdown:
    """The session's countdown: a live line on a terminal; elsewhere only the warnings."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live = None

    def start(self) -> None:
        if self.console.is_terminal and self._live is None:
            from rich.live import Live

            self._live = Live("", console=self.console, transient=True, refresh_per_second=2)
            self._live.__enter__()

    def stop(self) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def handle(self, event) -> None:
        """Render one ``session.SessionEvent`` (not ``ready``: the CLI prints the URL)."""
        from ..teardown.deadline import format_remaining

        if event.kind == "tick":
            if self._live is not None:
                self._live.update(f"[bold]{format_remaining(event.remaining)}[/] left until "
                                  f"{event.deadline:%H:%M:%S}; then harvest and teardown "
                                  "(Ctrl-C to end now)")
            return
        if event.kind in ("teardown", "left-running"):
            self.stop()
        style = {"warning": "bold yellow", "late": "bold yellow", "retry": "yellow"}.get(event.kind, "bold")
        label = {"warning": "warning", "late": "late", "retry": "link down",
                 "teardown": "session", "left-running": "session"}.get(event.kind, event.kind)
        self.console.print(f"[{style}]{label}:[/] {event.message}", highlight=False)


def show_session(console: Console, report) -> None:
    """Print the end of a ``SessionReport`` (the teardown's recap is printed by show_down)."""
    if report.ended_by == "left-running":
        console.print(f"session over: {report.node} left running; `provision down` ends it")
        return
    why = "deadline" if report.ended_by == "deadline" else "interrupted"
    console.print(f"session over ({why}): {report.node} harvested and torn down", highlight=False)
    for note in report.notes:
        console.print(f"[dim]note:[/] {note}", highlight=False)


def show_fleet_down(console: Console, report) -> None:
    """Print the recap of a ``fleet down``: what each node's harvest brought and where."""
    table = _fleet_table("Fleet recap: down", ("node", "status", "pulled", "removed", "time",
                                               "folder or error"))
    for line in report.nodes:
        down = line.report
        if down is None or line.error:
            table.add_row(line.node, _status_cell(line), "", "", f"{line.seconds:.1f}s",
                          f"[red]{line.error}[/]")
            continue
        harvest = down.harvest
        if down.dry_run and harvest is not None:
            pulled = f"would copy {len(harvest.to_pull)}"
        elif harvest is not None:
            pulled = f"{len(harvest.pulled)} file(s), {format_bytes(harvest.bytes_pulled)}"
        else:
            pulled = "-"
        removed = sum(1 for removal in down.removals if removal.done or down.dry_run)
        folder = harvest.dest if harvest is not None else ("nothing to do" if down.nothing_to_do else "")
        table.add_row(line.node, _status_cell(line), pulled, str(removed), f"{line.seconds:.1f}s", folder)
    console.print(table)
    _fleet_summary(console, report)


def show_fleet_bench(console: Console, report) -> None:
    """Print one table across the nodes: time per image, steps/s, memory pressure, swap."""
    table = _fleet_table("Fleet bench (min / median / max over the measured runs)",
                         ("node", "status", "chip", "memory", "model", "time per image", "steps/s",
                          "to 1st step", "peak pressure", "swap peak"))
    for line in report.nodes:
        bench = line.report
        if bench is None:
            table.add_row(line.node, _status_cell(line), "", "", f"[red]{line.error}[/]",
                          "", "", "", "", "")
            continue
        summary = bench.summary
        pressure = summary.peak_pressure if summary and summary.peak_pressure else None
        table.add_row(
            line.node, _status_cell(line), bench.chip, f"{gib(bench.memory_bytes):.0f} GB",
            f"{bench.model} {bench.quality}, {bench.steps} steps",
            _stat(summary.total_s) if summary else "-",
            _stat(summary.steps_per_s, "") if summary else "-",
            _stat(summary.first_step_s) if summary else "-",
            f"[{VERDICT_STYLE.get(pressure, '')}]{pressure}[/]" if pressure else "-",
            format_bytes(summary.swap_peak_bytes) if summary and summary.swap_peak_bytes is not None else "-")
    console.print(table)
    _fleet_summary(console, report)
    history = next((line.report.history_file for line in report.nodes
                    if line.report is not None and line.report.history_file), None)
    if history:
        console.print(f"[dim]history: {history}[/]")


def show_fleet_session(console: Console, report) -> None:
    """Print the end of a fleet session: per node, how it ended and what was harvested."""
    table = _fleet_table("Fleet session", ("node", "status", "ended by", "url", "harvested",
                                           "time", "error"))
    for line in report.nodes:
        session = line.report
        harvest = session.down.harvest if session and session.down else None
        harvested = (f"{len(harvest.pulled)} file(s) to {harvest.dest}" if harvest is not None
                     else "-")
        table.add_row(line.node, _status_cell(line), session.ended_by if session else "",
                      line.url or "-", harvested, f"{line.seconds:.1f}s",
                      f"[red]{line.error}[/]" if line.error else "")
    console.print(table)
    _fleet_summary(console, report)
