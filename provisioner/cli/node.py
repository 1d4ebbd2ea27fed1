"""One node's commands: plan, up, status, logs, tunnel, restart."""

from __future__ import annotations

from typing import Optional

import click

from ..core.errors import ExitStatus
from .app import Output, cli, console, parse_memory_option, run, wait_for_interrupt
from .options import (
    ACCEPT_NEW_HOST_KEY,
    BREAK_LOCK,
    JSON_DOCUMENT,
    JSON_RECAP,
    LOCK_WAIT,
    NO_LAUNCH,
    NO_MODELS,
    NO_SMOKE,
    NODE_YAML,
    OPEN_BROWSER,
)


@cli.command()
@NODE_YAML
@click.option("--memory", metavar="SIZE", help="Plan offline for a node of this memory, e.g. 64GB.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (docs/plan-json.md).")
@ACCEPT_NEW_HOST_KEY
def plan(node_yaml: str, memory: Optional[str], as_json: bool, accept_new_host_key: bool) -> None:
    """Show what `up` would do: facts, model choice, memory and disk checks, steps."""
    out = Output(as_json)

    def body() -> int:
        from .. import api
        from . import node_views as views

        report = api.plan(node_yaml, memory_bytes=parse_memory_option(memory),
                          accept_new_host_key=accept_new_host_key)
        out.report(report, views.show_plan)
        return ExitStatus.OK

    run(body, out)


@cli.command()
@NODE_YAML
@click.option("--dry-run", is_flag=True, help="Check every step and say what would change; change nothing.")
@NO_LAUNCH
@NO_MODELS
@NO_SMOKE
@JSON_RECAP
@click.option("-v", "--verbose", is_flag=True, help="Stream the node's full output.")
@ACCEPT_NEW_HOST_KEY
@BREAK_LOCK
@LOCK_WAIT
@click.option("--no-tunnel", is_flag=True, help="Do not hold the tunnel open after launching.")
@OPEN_BROWSER
def up(node_yaml: str, dry_run: bool, no_launch: bool, no_models: bool, no_smoke: bool, as_json: bool,
       verbose: bool, accept_new_host_key: bool, break_lock: bool, lock_wait: int,
       no_tunnel: bool, open_browser: bool) -> None:
    """Bring the node up: facts -> sizing -> steps -> launch; re-running resumes."""
    out = Output(as_json)

    def body() -> int:
        from .. import api
        from ..core.errors import StepFailed
        from . import node_views as views

        progress = views.StepProgress(console(stderr=as_json), verbose=verbose)
        held = []

        def hold(report, tunnel) -> None:
            progress.__exit__(None, None, None)
            out.report(report, views.show_up)
            held.append(tunnel.url)
            hold_tunnel(tunnel, open_browser)

        try:
            with progress:
                report = api.up(node_yaml, dry_run=dry_run, no_launch=no_launch,
                                no_models=no_models, no_smoke=no_smoke,
                                accept_new_host_key=accept_new_host_key,
                                break_lock=break_lock, lock_wait=lock_wait,
                                on_event=progress.handle,
                                hold=None if (no_tunnel or dry_run) else hold,
                                on_tunnel_event=tunnel_note)
            if held:
                return ExitStatus.OK
        except StepFailed as error:
            partial = getattr(error, "report", None)
            if partial is not None:
                out.report(partial, views.show_up)
            raise
        out.report(report, views.show_up)
        return ExitStatus.OK

    run(body, out)


def tunnel_note(message: str) -> None:
    """Print a note of the tunnel on stderr."""
    from .node_views import show_tunnel_note

    show_tunnel_note(console(stderr=True), message)


def hold_tunnel(tunnel, open_browser: bool = False) -> None:
    """Print the URL and keep the tunnel open until Ctrl-C (or SIGTERM)."""

    from .node_views import show_tunnel_ready

    err = console(stderr=True)
    show_tunnel_ready(err, tunnel.url)
    # Scripts read the URL from stdout; people read the line above.
    click.echo(tunnel.url)
    if open_browser:
        import webbrowser

        webbrowser.open(tunnel.url)
    wait_for_interrupt()
    err.print("tunnel closed")


@cli.command()
@NODE_YAML
@ACCEPT_NEW_HOST_KEY
def tunnel(node_yaml: str, accept_new_host_key: bool) -> None:
    """(Re)open the tunnel to ComfyUI and hold it until Ctrl-C."""

    def body() -> int:
        from .. import api

        api.tunnel(node_yaml, hold=hold_tunnel, on_event=tunnel_note,
                   accept_new_host_key=accept_new_host_key)
        return ExitStatus.OK

    run(body)


@cli.command()
@NODE_YAML
@JSON_DOCUMENT
@ACCEPT_NEW_HOST_KEY
def status(node_yaml: str, as_json: bool, accept_new_host_key: bool) -> None:
    """Service state, health, device, models and memory pressure of a node."""
    out = Output(as_json)

    def body() -> int:
        from .. import api
        from . import node_views as views

        report = api.status(node_yaml, accept_new_host_key=accept_new_host_key)
        out.report(report, views.show_status)
        return ExitStatus.OK if report.health.healthy else ExitStatus.FAILED

    run(body, out)


@cli.command()
@NODE_YAML
@click.option("-n", "--lines", type=click.IntRange(0, 100000), default=200, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@ACCEPT_NEW_HOST_KEY
def logs(node_yaml: str, lines: int, follow: bool, accept_new_host_key: bool) -> None:
    """Print the node's ComfyUI log."""

    def body() -> int:
        from .. import api

        api.logs(node_yaml, lines=lines, follow=follow, accept_new_host_key=accept_new_host_key,
                 on_line=lambda line: click.echo(line))
        return ExitStatus.OK

    run(body)


@cli.command()
@NODE_YAML
@ACCEPT_NEW_HOST_KEY
def restart(node_yaml: str, accept_new_host_key: bool) -> None:
    """Restart ComfyUI on the node and wait until it is healthy."""

    def body() -> int:
        from .. import api
        from . import node_views as views

        progress = views.StepProgress(console())
        with progress:
            health = api.restart(node_yaml, accept_new_host_key=accept_new_host_key,
                                 on_event=progress.handle)
        views.show_restart(console(), health)
        return ExitStatus.OK if health.healthy else ExitStatus.FAILED

    run(body)
