"""The command line: parse, call one ``api`` function, render with rich, map errors to exits.

click and rich live here and in ``views.py`` only; the library below never prints.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

import click

from . import __version__
from .errors import ExitStatus, ProvisionError, UsageError
from .redact import redact

ACCEPT_HELP = "Trust the node's host key if it is unknown, and record it (never a changed one)."


def _memory(value: Optional[str]) -> Optional[int]:
    from .units import parse_memory

    if value is None:
        return None
    try:
        return parse_memory(value)
    except ValueError as error:
        raise UsageError(f"--memory: {error}", "write it as Apple sells it, e.g. --memory 64GB") from None


def _run(action: Callable[[], int | None]) -> None:
    """Run a command body; turn our errors into one line on stderr and an exit code."""
    try:
        code = action()
    except ProvisionError as error:
        err = _console(stderr=True)
        err.print(f"[bold red]error:[/] {redact(str(error))}", markup=True, highlight=False,
                  soft_wrap=True)
        if error.hint:
            err.print(f"[dim]hint:[/] {redact(error.hint)}", highlight=False, soft_wrap=True)
        sys.exit(int(error.exit_status))
    except KeyboardInterrupt:
        _console(stderr=True).print("interrupted")
        sys.exit(130)
    sys.exit(int(code or ExitStatus.OK))


def _console(stderr: bool = False):
    from .views import make_console

    return make_console(stderr=stderr)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="provision")
def cli() -> None:
    """Turn a rented Apple Silicon Mac into a Flux.1 + ComfyUI node, and hand it back clean."""


@cli.command()
@click.argument("node_yaml", type=click.Path(dir_okay=False))
@click.option("--memory", metavar="SIZE", help="Plan offline for a node of this memory, e.g. 64GB.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (docs/plan-json.md).")
@click.option("--accept-new-host-key", is_flag=True, help=ACCEPT_HELP)
def plan(node_yaml: str, memory: Optional[str], as_json: bool, accept_new_host_key: bool) -> None:
    """Show what `up` would do: facts, model choice, memory and disk checks, steps."""

    def body() -> int:
        from . import api, views

        report = api.plan(node_yaml, memory_bytes=_memory(memory),
                          accept_new_host_key=accept_new_host_key)
        if as_json:
            click.echo(redact(report.model_dump_json(indent=2)))
        else:
            views.show_plan(_console(), report)
        return ExitStatus.OK

    _run(body)


@cli.command()
@click.argument("node_yaml", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check every step and say what would change; change nothing.")
@click.option("--no-launch", is_flag=True, help="Install everything but do not start ComfyUI.")
@click.option("--no-models", is_flag=True, help="Skip the model downloads.")
@click.option("--json", "as_json", is_flag=True, help="Print the recap as one JSON document.")
@click.option("-v", "--verbose", is_flag=True, help="Stream the node's full output.")
@click.option("--accept-new-host-key", is_flag=True, help=ACCEPT_HELP)
@click.option("--break-lock", is_flag=True, help="Take the node's lock even if another run holds it.")
@click.option("--lock-wait", type=click.IntRange(0, 3600), default=10, show_default=True,
              metavar="SECONDS", help="How long to wait for another run's lock.")
@click.option("--no-tunnel", is_flag=True, help="Do not hold the tunnel open after launching.")
@click.option("--open", "open_browser", is_flag=True, help="Open the URL in a browser once healthy.")
def up(node_yaml: str, dry_run: bool, no_launch: bool, no_models: bool, as_json: bool,
       verbose: bool, accept_new_host_key: bool, break_lock: bool, lock_wait: int,
       no_tunnel: bool, open_browser: bool) -> None:
    """Bring the node up: facts -> sizing -> steps -> launch; re-running resumes."""

    def body() -> int:
        from . import api, views
        from .errors import StepFailed

        progress = views.StepProgress(_console(stderr=as_json), verbose=verbose)
        held = []

        def hold(report, tunnel) -> None:
            progress.__exit__(None, None, None)
            _show_up(report, as_json)
            held.append(tunnel.url)
            _hold_tunnel(tunnel, open_browser)

        try:
            with progress:
                report = api.up(node_yaml, dry_run=dry_run, no_launch=no_launch,
                                no_models=no_models, accept_new_host_key=accept_new_host_key,
                                break_lock=break_lock, lock_wait=lock_wait,
                                on_event=progress.handle,
                                hold=None if (no_tunnel or dry_run) else hold,
                                on_tunnel_event=_tunnel_note)
            if held:
                return ExitStatus.OK
        except StepFailed as error:
            partial = getattr(error, "report", None)
            if partial is not None:
                if as_json:
                    click.echo(redact(partial.model_dump_json(indent=2)))
                else:
                    views.show_up(_console(), partial)
            raise
        _show_up(report, as_json)
        return ExitStatus.OK

    _run(body)


def _show_up(report, as_json: bool) -> None:
    from . import views

    if as_json:
        click.echo(redact(report.model_dump_json(indent=2)))
    else:
        views.show_up(_console(), report)


def _tunnel_note(message: str) -> None:
    _console(stderr=True).print(f"[dim]tunnel:[/] {message}", highlight=False)


def _hold_tunnel(tunnel, open_browser: bool = False) -> None:
    """Print the URL and keep the tunnel open until Ctrl-C (or SIGTERM)."""
    import signal
    import threading

    console = _console(stderr=True)
    console.print(f"[bold green]ComfyUI ready:[/] {tunnel.url} (tunnel open, Ctrl-C closes)",
                  highlight=False)
    # Scripts read the URL from stdout; people read the line above.
    click.echo(tunnel.url)
    if open_browser:
        import webbrowser

        webbrowser.open(tunnel.url)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    console.print("tunnel closed")


@cli.command()
@click.argument("node_yaml", type=click.Path(dir_okay=False))
@click.option("--accept-new-host-key", is_flag=True, help=ACCEPT_HELP)
def tunnel(node_yaml: str, accept_new_host_key: bool) -> None:
    """(Re)open the tunnel to ComfyUI and hold it until Ctrl-C."""

    def body() -> int:
        from . import api

        api.tunnel(node_yaml, hold=_hold_tunnel, on_event=_tunnel_note,
                   accept_new_host_key=accept_new_host_key)
        return ExitStatus.OK

    _run(body)


@cli.command()
@click.argument("node_yaml", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--accept-new-host-key", is_flag=True, help=ACCEPT_HELP)
def status(node_yaml: str, as_json: bool, accept_new_host_key: bool) -> None:
    """Service state, health, device, models and memory pressure of a node."""

    def body() -> int:
        from . import api, views

        report = api.status(node_yaml, accept_new_host_key=accept_new_host_key)
        if as_json:
            click.echo(redact(report.model_dump_json(indent=2)))
        else:
            views.show_status(_console(), report)
        return ExitStatus.OK if report.health.healthy else ExitStatus.FAILED

    _run(body)


@cli.command()
@click.argument("node_yaml", type=click.Path(dir_okay=False))
@click.option("-n", "--lines", type=click.IntRange(0, 100000), default=200, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("--accept-new-host-key", is_flag=True, help=ACCEPT_HELP)
def logs(node_yaml: str, lines: int, follow: bool, accept_new_host_key: bool) -> None:
    """Print the node's ComfyUI log."""

    def body() -> int:
        from . import api

        api.logs(node_yaml, lines=lines, follow=follow, accept_new_host_key=accept_new_host_key,
                 on_line=lambda line: click.echo(line))
        return ExitStatus.OK

    _run(body)


@cli.command()
@click.argument("node_yaml", type=click.Path(dir_okay=False))
@click.option("--accept-new-host-key", is_flag=True, help=ACCEPT_HELP)
def restart(node_yaml: str, accept_new_host_key: bool) -> None:
    """Restart ComfyUI on the node and wait until it is healthy."""

    def body() -> int:
        from . import api, views

        progress = views.StepProgress(_console())
        with progress:
            health = api.restart(node_yaml, accept_new_host_key=accept_new_host_key,
                                 on_event=progress.handle)
        _console().print(f"ComfyUI healthy on {health.device}" if health.healthy
                         else f"ComfyUI not healthy: {health.problem}")
        return ExitStatus.OK if health.healthy else ExitStatus.FAILED

    _run(body)


def main() -> None:
    """Entry point of the ``provision`` console script."""
    cli(prog_name="provision")
