"""Rendering of fleet commands: the live per-node table, and one recap table per command.

Data is shown verbatim: see ``console.py``.
"""

from __future__ import annotations

import datetime
import os

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..core.units import format_bytes, gib
from .bench_views import format_stat
from .console import STATUS_STYLE, VERDICT_STYLE, ProgressView, add_row, styled

FLEET_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow"}


class FleetProgress(ProgressView):
    """Live progress of a fleet; ``handle(name, event)`` may be called from any thread.

    On a terminal: one table row per node (node, phase, progress, elapsed), redrawn in place.
    Elsewhere (CI logs), with ``plain``: one line per finished step and per finished node.
    A step running in the background (the download) has its own part of the phase, so its
    bytes go on showing while the next steps run; its events never move the step counter.
    """

    def __init__(self, console: Console, plain: bool = True) -> None:
        import threading

        self.console = console
        self.plain = plain
        self._rows: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._progress = None

    def __enter__(self) -> "FleetProgress":
        if self.console.is_terminal:
            from rich.live import Live

            self._progress = Live(console=self.console, get_renderable=self._table,
                                  refresh_per_second=4, transient=True)
            self._progress.__enter__()
        return self

    def handle(self, name: str, event) -> None:
        """Render a ``fleet.NodeEvent`` or an ``engine.StepEvent`` of node ``name``."""
        import time

        now = time.monotonic()
        with self._lock:
            row = self._rows.setdefault(name, {"phase": "queued", "index": 0, "total": 0,
                                               "started": now, "ended": None, "status": None,
                                               "bytes": {}, "background": ""})
            line = self._update(row, event, now)
        if line and self.plain and self._progress is None:
            self.console.print(Text.assemble(f"{name}: ", line), highlight=False, soft_wrap=True)

    def _update(self, row: dict, event, now: float) -> Text:
        """Update ``row`` from ``event``; return the plain log line it makes (empty: none)."""
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
                return Text.assemble((f"{event.status}", FLEET_STYLE.get(event.status or "", "")),
                                     f" ({now - row['started']:.1f}s){detail}")
            row["phase"] = event.detail or phase
            return Text(event.detail if phase == "waiting" else "")
        background = getattr(step, "background", False)
        if phase == "start" or not background:
            row.update(index=event.index, total=event.total)
        if phase == "start":
            row["phase"] = step.name
        elif phase == "background":
            row["background"] = f"{step.name} started"
        elif phase == "progress" and event.data and event.data.get("dest"):
            sizes = row["bytes"]
            data = event.data
            done, total = data.get("done", data.get("bytes")), data.get("total", data.get("bytes"))
            if done is not None:
                sizes[data["dest"]] = (done, total or sizes.get(data["dest"], (0, 0))[1])
            got = sum(d for d, _ in sizes.values())
            want = sum(t or 0 for _, t in sizes.values())
            row["background" if background else "phase"] = \
                f"{step.name} {format_bytes(got)}" + (f" / {format_bytes(want)}" if want else "")
        elif phase == "end" and event.result is not None:
            result = event.result
            if background:
                row["background"] = "" if result.status in ("ok", "changed") else \
                    f"{step.name} {result.status}"
            else:
                row["index"] = event.index + 1
            if result.status in ("ok", "skipped"):
                return Text()  # plain logs name what changed or failed; the recap has the rest
            return Text.assemble(f"[{event.index + 1}/{event.total}] ",
                                 (result.status, STATUS_STYLE.get(result.status, "")),
                                 f" {result.name} ", (f"({result.duration:.2f}s)", "dim"))
        return Text()

    @staticmethod
    def _teardown(row: dict, event) -> Text:
        if event.kind == "note":
            row["phase"] = event.message[:60]
            return Text(event.message)
        harvest = event.harvest
        if harvest is None:
            return Text()
        if harvest.kind == "start":
            row.update(phase="harvest", index=0, total=harvest.total_files)
        elif harvest.kind in ("file", "failed"):
            row["index"] += 1
            row["phase"] = f"harvest {os.path.basename(harvest.file)}"
        elif harvest.kind == "end":
            row["phase"] = "harvested"
            return Text(f"harvested {row['index']} file(s)")
        return Text()

    @staticmethod
    def _bench(row: dict, event) -> Text:
        label = "warm-up" if event.warmup else f"run {event.run}/{event.runs}"
        if event.kind == "run-start":
            row.update(phase=label, index=0, total=0)
        elif event.kind == "step" and event.total:
            row.update(phase=f"{label}: step {event.value}/{event.total}", index=event.value,
                       total=event.total)
        elif event.kind == "run-end" and event.result is not None:
            total = event.result.timing.total_s
            return Text(f"{label}: {'ok' if event.result.ok else 'failed'}"
                        + (f" in {total:.1f}s" if total is not None else ""))
        return Text()

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
            total = row["total"] or 1
            bar = ProgressBar(total=total, completed=row["index"] if row["total"] else 0, width=24)
            elapsed = (row["ended"] or now) - row["started"]
            steps = f"{row['index']}/{row['total']}" if row["total"] else ""
            phase = str(row["phase"]) + (f" | {row['background']}" if row.get("background") else "")
            add_row(table, name, styled(phase, style), bar, steps, f"{elapsed:.0f}s")
        return table


def _fleet_summary(console: Console, report) -> None:
    counts = {status: len(report.names(status)) for status in ("ok", "failed", "skipped")}
    summary = Text(f"{counts['ok']} of {len(report.nodes)} node(s) ok")
    for status in ("failed", "skipped"):
        if counts[status]:
            summary.append(", ")
            summary.append(f"{counts[status]} {status}", style=FLEET_STYLE[status])
    summary.append(f" in {report.seconds:.1f}s")
    console.print(summary)
    for line in report.nodes:
        if line.status == "failed" and line.hint:
            console.print(Text.assemble((f"{line.node}: hint:", "dim"), f" {line.hint}"),
                          highlight=False, soft_wrap=True)


def _fleet_table(heading: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=heading, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in ("changed", "time", "memory") else "left")
    return table


def _status_cell(line) -> Text:
    return styled(line.status, FLEET_STYLE.get(line.status, ""))


def _error_cell(line) -> Text:
    return styled(f"{line.error}", "red")


def show_fleet_up(console: Console, report) -> None:
    """Print the recap of a ``fleet up``: node, status, changed steps, time, URL or error."""
    table = _fleet_table("Fleet recap: up", ("node", "status", "changed", "time", "first image",
                                             "url or error"))
    for line in report.nodes:
        changed = str(line.report.changed) if line.report is not None else "-"
        first = getattr(line.report, "first_image", None) or {}
        image = (styled(f"{first['seconds']:.1f}s", "green") if first.get("ok") and first.get("seconds")
                 else styled("failed", "red") if first and not first.get("ok") else "-")
        if line.url:
            where = line.url
        elif line.error:
            where = _error_cell(line)
        else:
            launched = line.report is not None and any(
                r.name == "health" and r.status in ("ok", "changed") for r in line.report.steps)
            where = "healthy (no tunnel)" if launched else "installed (not launched)"
        add_row(table, line.node, _status_cell(line), changed, f"{line.seconds:.1f}s", image, where)
    console.print(table)
    _fleet_summary(console, report)


def show_fleet_plan(console: Console, report) -> None:
    """Print one table of every node's facts and model choice."""
    table = _fleet_table("Fleet plan", ("node", "status", "platform", "memory", "chip", "models",
                                        "verdict", "download", "disk"))
    for line in report.nodes:
        plan_report = line.report
        if plan_report is None:
            add_row(table, line.node, _status_cell(line), "", "", "", _error_cell(line), "", "", "")
            continue
        facts, plan = plan_report.facts, plan_report.plan
        verdict = styled(plan.verdict.upper(), VERDICT_STYLE.get(plan.verdict, ""))
        disk = (styled("ok", "green") if plan.disk_ok
                else styled(f"short {format_bytes(plan.disk_shortfall_bytes)}", "red"))
        add_row(table, line.node, _status_cell(line), facts.platform, f"{gib(facts.memory_bytes):.0f} GB",
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
            add_row(table, line.node, _status_cell(line), "", _error_cell(line), "", "")
            continue
        service = status.service
        running = (f"running (pid {service.pid}, up {service.uptime})" if service.running
                   else "loaded, not running" if service.loaded else "not running")
        health = (Text.assemble(("healthy", "green"), f" on {status.health.device}") if status.health.healthy
                  else styled(f"{status.health.problem}", "red"))
        models = (f"{status.model_plan.get('model')} {status.model_plan.get('quality')}"
                  if status.model_plan else "")
        memory = status.memory.pressure if status.memory else ""
        add_row(table, line.node, _status_cell(line), running, health, models, memory)
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
            add_row(table, line.node, line.url)
    console.print(table)


def show_fleet_down(console: Console, report) -> None:
    """Print the recap of a ``fleet down``: what each node's harvest brought and where."""
    table = _fleet_table("Fleet recap: down", ("node", "status", "pulled", "removed", "time",
                                               "folder or error"))
    for line in report.nodes:
        down = line.report
        if down is None or line.error:
            add_row(table, line.node, _status_cell(line), "", "", f"{line.seconds:.1f}s", _error_cell(line))
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
        add_row(table, line.node, _status_cell(line), pulled, str(removed), f"{line.seconds:.1f}s", folder)
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
            add_row(table, line.node, _status_cell(line), "", "", _error_cell(line), "", "", "", "", "")
            continue
        summary = bench.summary
        pressure = summary.peak_pressure if summary and summary.peak_pressure else None
        add_row(
            table, line.node, _status_cell(line), bench.chip, f"{gib(bench.memory_bytes):.0f} GB",
            f"{bench.model} {bench.quality}, {bench.steps} steps",
            format_stat(summary.total_s) if summary else "-",
            format_stat(summary.steps_per_s, "") if summary else "-",
            format_stat(summary.first_step_s) if summary else "-",
            styled(pressure, VERDICT_STYLE.get(pressure, "")) if pressure else "-",
            format_bytes(summary.swap_peak_bytes) if summary and summary.swap_peak_bytes is not None else "-")
    console.print(table)
    _fleet_summary(console, report)
    history = next((line.report.history_file for line in report.nodes
                    if line.report is not None and line.report.history_file), None)
    if history:
        console.print(styled(f"history: {history}", "dim"))


def show_fleet_session(console: Console, report) -> None:
    """Print the end of a fleet session: per node, how it ended and what was harvested."""
    table = _fleet_table("Fleet session", ("node", "status", "ended by", "url", "harvested",
                                           "time", "error"))
    for line in report.nodes:
        session = line.report
        harvest = session.down.harvest if session and session.down else None
        harvested = (f"{len(harvest.pulled)} file(s) to {harvest.dest}" if harvest is not None
                     else "-")
        add_row(table, line.node, _status_cell(line), session.ended_by if session else "",
                line.url or "-", harvested, f"{line.seconds:.1f}s",
                _error_cell(line) if line.error else "")
    console.print(table)
    _fleet_summary(console, report)


def show_fleet_tunnel_note(console: Console, name: str, message: str) -> None:
    """Print a note of node ``name``'s tunnel."""
    console.print(Text.assemble((f"tunnel {name}:", "dim"), f" {message}"), highlight=False)


def show_fleet_session_start(console: Console, deadline: datetime.datetime) -> None:
    """Print until when the fleet session runs."""
    console.print(Text.assemble((f"session until {deadline:%Y-%m-%d %H:%M:%S}", "bold green"),
                                " (Ctrl-C ends it early)"), highlight=False)
