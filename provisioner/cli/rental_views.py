"""Rendering of the end of a rental (down, session): teardown progress, recap, countdown.

Data is shown verbatim: see ``console.py``.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..core.units import format_bytes
from .console import ProgressView, add_row, styled, title


class TeardownProgress(ProgressView):
    """Live progress of ``down``: notes as lines; the harvest as a bar on a terminal, else
    a line when it starts and one when it ends (and one per failed file)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress = None
        self._task = None
        self._started = 0.0

    def handle(self, event) -> None:
        """Render one ``teardown.TeardownEvent``."""
        import time

        if event.kind == "note":
            self.console.print(Text.assemble(("down:", "dim"), f" {event.message}"), highlight=False)
            return
        harvest = event.harvest
        if harvest.kind == "start":
            self._started = time.monotonic()
        elif harvest.kind == "queued":
            # Files are queued as the node lists them: the bar's total grows.
            if self.console.is_terminal and self._progress is None:
                from rich.progress import (
                    BarColumn,
                    DownloadColumn,
                    Progress,
                    TextColumn,
                    TransferSpeedColumn,
                )

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
            self.console.print(Text.assemble("  ", ("not copied:", "red"),
                                             f" {harvest.file}: {harvest.error}"), highlight=False)
        elif harvest.kind == "end":
            self.close()
            if harvest.total_files:
                seconds = max(time.monotonic() - self._started, 1e-6)
                self.console.print(Text.assemble(
                    ("down:", "dim"), f" copied {harvest.total_files} file(s), "
                    f"{format_bytes(harvest.total_bytes)} in {seconds:.1f}s "
                    f"({format_bytes(harvest.total_bytes / seconds)}/s)"), highlight=False)


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


def _queue_cell(report):
    queue = report.queue
    if not queue.answered:
        return "ComfyUI not answering: nothing to wait for"
    if queue.interrupted or queue.dropped:
        return Text.assemble(("interrupted", "yellow"), f" {', '.join(queue.interrupted) or 'nothing'}, "
                             f"dropped {len(queue.dropped)} waiting prompt(s)")
    if queue.running or queue.pending:
        verb = "would wait for" if report.dry_run else f"waited {queue.waited_seconds:.0f}s for"
        return f"{verb} {len(queue.running)} running, {len(queue.pending)} waiting"
    return "empty"


def _service_cell(report):
    service = report.service
    if report.dry_run:
        state = "running" if service.was_running else "loaded" if service.was_loaded else "not running"
        return f"{state}; would be stopped" if service.was_loaded or service.was_running else state
    free = {True: Text(f"port {service.port} free"),
            False: styled(f"port {service.port} still taken", "red"), None: Text("")}[service.port_free]
    return Text.assemble(f"{'stopped' if service.stopped else 'was not running'}; ", free)


def _harvest_cell(report):
    harvest = report.harvest
    if report.dry_run:
        size = format_bytes(sum(f.bytes for f in harvest.to_pull))
        return (f"would copy {len(harvest.to_pull)} file(s), {size}, to "
                f"{harvest.dest}; {harvest.skipped} already there")
    cell = Text.assemble((f"{len(harvest.pulled)} file(s) copied", "green" if harvest.ok else "red"),
                         f" ({format_bytes(harvest.bytes_pulled)}) to {harvest.dest}; "
                         f"{harvest.skipped} already there")
    if not harvest.ok:
        cell.append("; ")
        cell.append(f"{len(harvest.failed) + len(harvest.refused)} not copied", style="red")
    return cell


def _token_cell(report):
    secrets = report.secrets
    if report.dry_run:
        return "token file would be removed" if secrets.removed else "no token file on the node"
    removed = "token file removed" if secrets.removed else "no token file on the node"
    if secrets.check == "clean":
        check = Text.assemble(("searched, not found", "green"), f" ({secrets.files_searched} files, "
                              f"{format_bytes(secrets.bytes_searched)})")
    elif secrets.check == "found":
        check = styled(f"FOUND in {', '.join(secrets.found_in)}", "bold red")
    else:
        check = Text.assemble(("not searched", "yellow"), f": {secrets.note}")
    return Text.assemble(f"{removed}; ", check)


def show_down(console: Console, report) -> None:
    """Print a ``DownReport`` for a person."""
    heading = f"{'Dry run of down' if report.dry_run else 'Down'}: {report.node} ({report.host})"
    if report.nothing_to_do:
        console.print(Text(heading), highlight=False)
        for note in report.notes:
            console.print(Text(f"  {note}"), highlight=False)
        return
    table = Table(title=title(heading), show_header=False, title_justify="left", box=None,
                  padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    if report.queue is not None:
        add_row(table, "queue", _queue_cell(report))
    if report.service is not None:
        add_row(table, "service", _service_cell(report))
    harvest = report.harvest
    if harvest is not None:
        add_row(table, "harvest", _harvest_cell(report))
        if not report.dry_run and harvest.manifest:
            add_row(table, "manifest", harvest.manifest)
    if report.secrets is not None:
        add_row(table, "token", _token_cell(report))
    console.print(table)
    if report.dry_run and harvest is not None and harvest.to_pull:
        copy = Table(title="Would copy", title_justify="left")
        copy.add_column("file")
        copy.add_column("size", justify="right")
        copy.add_column("why")
        for item in harvest.to_pull:
            add_row(copy, item.file, format_bytes(item.bytes), item.reason)
        console.print(copy)
    rows = _removal_rows(report.removals)
    if rows:
        removed = Table(title="Would delete on the node" if report.dry_run else "Deleted on the node",
                        title_justify="left")
        removed.add_column("what")
        removed.add_column("path")
        removed.add_column("size", justify="right")
        for row in rows:
            add_row(removed, *row)
        console.print(removed)
    elif not report.dry_run:
        console.print("nothing deleted on the node")
    for item in ([*harvest.failed] if harvest is not None else []):
        console.print(Text.assemble(("not copied:", "red"), f" {item.file}: {item.error}"), highlight=False)
    for item in ([*harvest.refused] if harvest is not None else []):
        console.print(Text.assemble(("not copied:", "red"), f" {item.file}: {item.reason}"), highlight=False)
    for note in report.notes:
        console.print(Text.assemble(("note:", "dim"), f" {note}"), highlight=False)
    for problem in report.problems:
        console.print(Text.assemble(("problem:", "bold red"), f" {problem}"), highlight=False)
    cost = (f"(ssh: {report.cost.get('connections', 0)} connection, {report.cost.get('commands', 0)} "
            f"commands, {report.cost.get('transfers', 0)} transfers)")
    console.print(Text.assemble(f"{report.duration:.2f}s ", (cost, "dim")))


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
                self._live.update(Text.assemble((format_remaining(event.remaining), "bold"),
                                                f" left until {event.deadline:%H:%M:%S}; then harvest "
                                                "and teardown (Ctrl-C to end now)"))
            return
        if event.kind in ("teardown", "left-running"):
            self.stop()
        style = {"warning": "bold yellow", "late": "bold yellow", "retry": "yellow"}.get(event.kind, "bold")
        label = {"warning": "warning", "late": "late", "retry": "link down",
                 "teardown": "session", "left-running": "session"}.get(event.kind, event.kind)
        self.console.print(Text.assemble((f"{label}:", style), f" {event.message}"), highlight=False)


def show_session_ready(console: Console, url: str, until: str) -> None:
    """Print that ComfyUI answers at ``url`` until the session's end."""
    console.print(Text.assemble(("ComfyUI ready:", "bold green"),
                                f" {url} until {until} (Ctrl-C ends the session early)"),
                  highlight=False)


def show_session(console: Console, report) -> None:
    """Print the end of a ``SessionReport`` (the teardown's recap is printed by show_down)."""
    if report.ended_by == "left-running":
        console.print(Text(f"session over: {report.node} left running; `provision down` ends it"))
        return
    why = "deadline" if report.ended_by == "deadline" else "interrupted"
    console.print(Text(f"session over ({why}): {report.node} harvested and torn down"), highlight=False)
    for note in report.notes:
        console.print(Text.assemble(("note:", "dim"), f" {note}"), highlight=False)
