"""The command line: parse, call one ``api`` function, render with rich, map errors to exits.

click and rich live here and in ``views.py`` only; the library below never prints.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

import click

from .. import __version__
from ..core.errors import ExitStatus, ProvisionError, UsageError
from ..core.redact import redact

ACCEPT_HELP = "Trust the node's host key if it is unknown, and record it (never a changed one)."
PARALLEL_HELP = "How many nodes at once (default: parallel: in fleet.yaml, else 8)."

# Arguments and options many commands share, defined once.
NODE_YAML = click.argument("node_yaml", type=click.Path(dir_okay=False))
FLEET_YAML = click.argument("fleet_yaml", type=click.Path(dir_okay=False))
ACCEPT_NEW_HOST_KEY = click.option("--accept-new-host-key", is_flag=True, help=ACCEPT_HELP)
PARALLEL = click.option("--parallel", type=click.IntRange(1, 256), metavar="N", help=PARALLEL_HELP)


def _memory(value: Optional[str]) -> Optional[int]:
    from ..core.units import parse_memory

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
@NODE_YAML
@click.option("--memory", metavar="SIZE", help="Plan offline for a node of this memory, e.g. 64GB.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (docs/plan-json.md).")
@ACCEPT_NEW_HOST_KEY
def plan(node_yaml: str, memory: Optional[str], as_json: bool, accept_new_host_key: bool) -> None:
    """Show what `up` would do: facts, model choice, memory and disk checks, steps."""

    def body() -> int:
        from .. import api
        from . import views

        report = api.plan(node_yaml, memory_bytes=_memory(memory),
                          accept_new_host_key=accept_new_host_key)
        _emit(report, as_json, views.show_plan)
        return ExitStatus.OK

    _run(body)


@cli.command()
@NODE_YAML
@click.option("--dry-run", is_flag=True, help="Check every step and say what would change; change nothing.")
@click.option("--no-launch", is_flag=True, help="Install everything but do not start ComfyUI.")
@click.option("--no-models", is_flag=True, help="Skip the model downloads.")
@click.option("--json", "as_json", is_flag=True, help="Print the recap as one JSON document.")
@click.option("-v", "--verbose", is_flag=True, help="Stream the node's full output.")
@ACCEPT_NEW_HOST_KEY
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
        from .. import api
        from ..core.errors import StepFailed
        from . import views

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
                _emit(partial, as_json, views.show_up)
            raise
        _show_up(report, as_json)
        return ExitStatus.OK

    _run(body)


def _emit(report, as_json: bool, show) -> None:
    """Print a report: one JSON document for scripts, else ``show(console, report)``."""
    if as_json:
        click.echo(redact(report.model_dump_json(indent=2)))
    else:
        show(_console(), report)


def _show_up(report, as_json: bool) -> None:
    from . import views

    _emit(report, as_json, views.show_up)


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
@NODE_YAML
@ACCEPT_NEW_HOST_KEY
def tunnel(node_yaml: str, accept_new_host_key: bool) -> None:
    """(Re)open the tunnel to ComfyUI and hold it until Ctrl-C."""

    def body() -> int:
        from .. import api

        api.tunnel(node_yaml, hold=_hold_tunnel, on_event=_tunnel_note,
                   accept_new_host_key=accept_new_host_key)
        return ExitStatus.OK

    _run(body)


@cli.command()
@NODE_YAML
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@ACCEPT_NEW_HOST_KEY
def status(node_yaml: str, as_json: bool, accept_new_host_key: bool) -> None:
    """Service state, health, device, models and memory pressure of a node."""

    def body() -> int:
        from .. import api
        from . import views

        report = api.status(node_yaml, accept_new_host_key=accept_new_host_key)
        _emit(report, as_json, views.show_status)
        return ExitStatus.OK if report.health.healthy else ExitStatus.FAILED

    _run(body)


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

    _run(body)


@cli.command()
@NODE_YAML
@ACCEPT_NEW_HOST_KEY
def restart(node_yaml: str, accept_new_host_key: bool) -> None:
    """Restart ComfyUI on the node and wait until it is healthy."""

    def body() -> int:
        from .. import api
        from . import views

        progress = views.StepProgress(_console())
        with progress:
            health = api.restart(node_yaml, accept_new_host_key=accept_new_host_key,
                                 on_event=progress.handle)
        _console().print(f"ComfyUI healthy on {health.device}" if health.healthy
                         else f"ComfyUI not healthy: {health.problem}")
        return ExitStatus.OK if health.healthy else ExitStatus.FAILED

    _run(body)


# ---------------------------------------------------------------------------- the end of a rental

WIPE_HELP = ("What else to delete once the outputs are safe: none; models (the downloaded model "
             "files); all (the whole work folder and the LaunchAgent: the node as it was).")


def _show_down(report, as_json: bool) -> None:
    from . import views

    _emit(report, as_json, views.show_down)


@cli.command()
@NODE_YAML
@click.option("--wipe", type=click.Choice(["none", "models", "all"]), default="none",
              show_default=True, help=WIPE_HELP)
@click.option("--keep-outputs-remote", is_flag=True,
              help="Leave the outputs on the node once they are copied.")
@click.option("--discard-outputs", is_flag=True,
              help="Wipe even when some outputs could not be copied (they are lost).")
@click.option("--dry-run", is_flag=True, help="List what would be copied and deleted; change nothing.")
@click.option("--force", is_flag=True, help="Interrupt ComfyUI's queue instead of waiting for it.")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=300, show_default=True,
              metavar="SECONDS", help="How long to wait for the queue to drain.")
@click.option("--json", "as_json", is_flag=True, help="Print the recap as one JSON document.")
@ACCEPT_NEW_HOST_KEY
@click.option("--break-lock", is_flag=True, help="Take the node's lock even if another run holds it.")
@click.option("--lock-wait", type=click.IntRange(0, 3600), default=10, show_default=True,
              metavar="SECONDS", help="How long to wait for another run's lock.")
def down(node_yaml: str, wipe: str, keep_outputs_remote: bool, discard_outputs: bool, dry_run: bool,
         force: bool, drain_timeout: float, as_json: bool, accept_new_host_key: bool,
         break_lock: bool, lock_wait: int) -> None:
    """Harvest the outputs, stop ComfyUI, remove the token, wipe; re-running finishes the job."""

    def body() -> int:
        from .. import api
        from ..teardown.down import TeardownIncomplete
        from . import views

        try:
            with views.TeardownProgress(_console(stderr=True)) as progress:
                report = api.down(node_yaml, wipe=wipe, keep_outputs_remote=keep_outputs_remote,
                                  discard_outputs=discard_outputs, dry_run=dry_run, force=force,
                                  drain_timeout=drain_timeout, accept_new_host_key=accept_new_host_key,
                                  break_lock=break_lock, lock_wait=lock_wait, on_event=progress.handle)
        except TeardownIncomplete as error:
            if error.report is not None:
                _show_down(error.report, as_json)
            raise
        _show_down(report, as_json)
        return ExitStatus.OK

    _run(body)


def _session_deadline(until: Optional[str], duration: Optional[str]):
    import datetime

    from ..teardown.deadline import parse_duration, parse_until

    if (until is None) == (duration is None):
        raise UsageError("say when the session ends: --until HH:MM or --for DURATION (one of them)",
                         "e.g. provision session node.yaml --until 18:00, or --for 3h")
    now = datetime.datetime.now().astimezone()
    try:
        return parse_until(until, now) if until is not None else now + parse_duration(duration)
    except ValueError as error:
        raise UsageError(f"--{'until' if until is not None else 'for'}: {error}",
                         "e.g. --until 18:00 (local time; tomorrow if already past) or --for 3h") from None


def _ask_teardown() -> str:
    """On Ctrl-C: ask at a terminal; elsewhere (scripts, CI) tear down."""
    if not sys.stdin.isatty():
        return "teardown"
    try:
        answer = click.prompt("\nTear the node down now (harvest first), or leave it running?",
                              type=click.Choice(["teardown", "leave"]), default="teardown",
                              err=True)
    except (click.Abort, EOFError):
        return "leave"
    return answer


@cli.command()
@NODE_YAML
@click.option("--until", metavar="HH:MM", help="End at this local time (tomorrow if already past).")
@click.option("--for", "duration", metavar="DURATION", help="End after this long, e.g. 3h, 45m, 20s.")
@click.option("--warn", default="15m,5m", show_default=True, metavar="LIST",
              help="Warn this long before the end (comma-separated; 'none' for no warnings).")
@click.option("--wipe", type=click.Choice(["none", "models", "all"]), default="none",
              show_default=True, help=WIPE_HELP)
@click.option("--keep-outputs-remote", is_flag=True,
              help="Leave the outputs on the node once they are copied.")
@click.option("--discard-outputs", is_flag=True,
              help="Wipe even when some outputs could not be copied (they are lost).")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=60, show_default=True,
              metavar="SECONDS", help="At the end, how long running work may finish before it is interrupted.")
@click.option("--no-models", is_flag=True, help="Skip the model downloads.")
@click.option("--json", "as_json", is_flag=True, help="Print the recap as one JSON document.")
@click.option("--open", "open_browser", is_flag=True, help="Open the URL in a browser once healthy.")
@ACCEPT_NEW_HOST_KEY
def session(node_yaml: str, until: Optional[str], duration: Optional[str], warn: str, wipe: str,
            keep_outputs_remote: bool, discard_outputs: bool, drain_timeout: float, no_models: bool,
            as_json: bool, open_browser: bool, accept_new_host_key: bool) -> None:
    """Up, hold the tunnel with a countdown, then harvest and tear down at the deadline."""

    def body() -> int:
        import signal

        from .. import api
        from ..teardown.deadline import parse_warnings
        from ..teardown.down import TeardownIncomplete
        from . import views

        deadline = _session_deadline(until, duration)
        try:
            warnings = parse_warnings(warn)
        except ValueError as error:
            raise UsageError(f"--warn: {error}", "e.g. --warn 15m,5m") from None
        err = _console(stderr=True)
        steps = views.StepProgress(err)
        countdown = views.Countdown(err)
        teardown = views.TeardownProgress(err)

        def on_event(event) -> None:
            if event.kind == "ready":
                steps.__exit__(None, None, None)
                until = event.deadline.strftime("%Y-%m-%d %H:%M:%S")
                err.print(f"[bold green]ComfyUI ready:[/] {event.url} until {until} "
                          "(Ctrl-C ends the session early)", highlight=False)
                click.echo(event.url)
                if open_browser:
                    import webbrowser

                    webbrowser.open(event.url)
                countdown.start()
            else:
                countdown.handle(event)

        terminated: list[int] = []

        def on_sigterm(signum, frame) -> None:
            terminated.append(signum)
            raise KeyboardInterrupt

        def ask() -> str:
            countdown.stop()
            return "teardown" if terminated else _ask_teardown()

        # SIGTERM ends a session without asking: harvest and tear down.
        signal.signal(signal.SIGTERM, on_sigterm)
        try:
            with steps, teardown:
                report = api.session(
                    node_yaml, deadline=deadline, warn_before=tuple(warnings), wipe=wipe,
                    keep_outputs_remote=keep_outputs_remote, discard_outputs=discard_outputs,
                    drain_timeout=drain_timeout, no_models=no_models,
                    accept_new_host_key=accept_new_host_key, on_step=steps.handle,
                    on_event=on_event, on_teardown=teardown.handle, on_tunnel_event=_tunnel_note,
                    ask=ask)
        except TeardownIncomplete as error:
            countdown.stop()
            if error.report is not None:
                _show_down(error.report, as_json)
            raise
        finally:
            countdown.stop()
        if as_json:
            click.echo(redact(report.model_dump_json(indent=2)))
        else:
            if report.down is not None:
                views.show_down(_console(), report.down)
            views.show_session(_console(), report)
        return ExitStatus.OK

    _run(body)


# ---------------------------------------------------------------------------- fleets



@cli.group()
def fleet() -> None:
    """Many nodes at once: a fleet.yaml is defaults: merged under each of nodes: (docs/fleet.md)."""


def _fleet_progress(as_json: bool, plain: bool = True):
    from . import views

    return views.FleetProgress(_console(stderr=as_json), plain=plain)


def _fleet_tunnel_note(name: str, message: str) -> None:
    _console(stderr=True).print(f"[dim]tunnel {name}:[/] {message}", highlight=False)


def _fleet_exit(report) -> int:
    return ExitStatus.OK if report.ok else ExitStatus.FAILED


def _hold_fleet_tunnels(report, tunnels, as_json: bool) -> None:
    """Print every node's URL and keep the tunnels open until Ctrl-C (or SIGTERM)."""
    import signal
    import threading

    from . import views

    if as_json:
        click.echo(redact(report.model_dump_json(indent=2)))
    else:
        if report.command == "up":
            views.show_fleet_up(_console(), report)
        else:
            views.show_fleet_status(_console(), report)
        # Scripts read "<node> <url>" lines from stdout; people read the table on stderr.
        for line in report.nodes:
            if line.url:
                click.echo(f"{line.node} {line.url}")
    views.show_fleet_urls(_console(stderr=True), report)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    _console(stderr=True).print(f"{len(tunnels)} tunnel(s) closed")


@fleet.command("plan")
@FLEET_YAML
@PARALLEL
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@ACCEPT_NEW_HOST_KEY
def fleet_plan(fleet_yaml: str, parallel: Optional[int], as_json: bool, accept_new_host_key: bool) -> None:
    """Per-node facts and model choices, in one table."""

    def body() -> int:
        from .. import api
        from . import views

        with _fleet_progress(as_json, plain=False) as progress:
            report = api.fleet_plan(fleet_yaml, accept_new_host_key=accept_new_host_key,
                                    parallel=parallel, on_event=progress.handle)
        _emit(report, as_json, views.show_fleet_plan)
        return _fleet_exit(report)

    _run(body)


@fleet.command("up")
@FLEET_YAML
@PARALLEL
@click.option("--max-downloads", type=click.IntRange(1, 256), metavar="N",
              help="At most N nodes download models at once (default: no bound).")
@click.option("--fail-fast", is_flag=True, help="Start no new node after the first failure.")
@click.option("--retry-failed", is_flag=True,
              help="Redo only the nodes that failed last time (.provision/last-fleet.json).")
@click.option("--timeout", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Mark a node failed (and cut it off) when its up takes longer.")
@click.option("--json", "as_json", is_flag=True, help="Print the recap as one JSON document.")
@click.option("--no-launch", is_flag=True, help="Install everything but do not start ComfyUI.")
@click.option("--no-models", is_flag=True, help="Skip the model downloads.")
@click.option("--no-tunnel", is_flag=True, help="Do not hold the tunnels open after launching.")
@click.option("--lock-wait", type=click.IntRange(0, 3600), default=10, show_default=True,
              metavar="SECONDS", help="How long to wait for another run's lock on a node.")
@ACCEPT_NEW_HOST_KEY
def fleet_up(fleet_yaml: str, parallel: Optional[int], max_downloads: Optional[int], fail_fast: bool,
             retry_failed: bool, timeout: Optional[float], as_json: bool, no_launch: bool,
             no_models: bool, no_tunnel: bool, lock_wait: int, accept_new_host_key: bool) -> None:
    """Bring every node up in parallel; then hold one tunnel per healthy node."""

    def body() -> int:
        from .. import api
        from . import views

        progress = _fleet_progress(as_json)
        held = []

        def hold(report, tunnels) -> None:
            progress.close()
            held.append(report)
            _hold_fleet_tunnels(report, tunnels, as_json)

        with progress:
            report = api.fleet_up(
                fleet_yaml, parallel=parallel, max_downloads=max_downloads, fail_fast=fail_fast,
                retry_failed=retry_failed, timeout=timeout, no_launch=no_launch,
                no_models=no_models, lock_wait=lock_wait, accept_new_host_key=accept_new_host_key,
                on_event=progress.handle, hold=None if no_tunnel else hold,
                on_tunnel_event=_fleet_tunnel_note)
        if held:
            return _fleet_exit(report)
        if retry_failed and not report.nodes:
            _console(stderr=True).print("nothing to retry: every node succeeded last time")
        _emit(report, as_json, views.show_fleet_up)
        return _fleet_exit(report)

    _run(body)


@fleet.command("status")
@FLEET_YAML
@PARALLEL
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@ACCEPT_NEW_HOST_KEY
def fleet_status(fleet_yaml: str, parallel: Optional[int], as_json: bool, accept_new_host_key: bool) -> None:
    """Service, health and memory pressure of every node; exit 1 if any is not healthy."""

    def body() -> int:
        from .. import api
        from . import views

        with _fleet_progress(as_json, plain=False) as progress:
            report = api.fleet_status(fleet_yaml, accept_new_host_key=accept_new_host_key,
                                      parallel=parallel, on_event=progress.handle)
        _emit(report, as_json, views.show_fleet_status)
        return _fleet_exit(report)

    _run(body)


@fleet.command("tunnel")
@FLEET_YAML
@PARALLEL
@click.option("--json", "as_json", is_flag=True, help="Print the nodes and URLs as one JSON document.")
@ACCEPT_NEW_HOST_KEY
def fleet_tunnel(fleet_yaml: str, parallel: Optional[int], as_json: bool, accept_new_host_key: bool) -> None:
    """(Re)open one tunnel per healthy node and hold them until Ctrl-C."""

    def body() -> int:
        from .. import api
        from . import views

        progress = _fleet_progress(as_json, plain=False)
        held = []

        def hold(report, tunnels) -> None:
            progress.close()
            held.append(report)
            _hold_fleet_tunnels(report, tunnels, as_json)

        with progress:
            report = api.fleet_tunnel(fleet_yaml, hold=hold, accept_new_host_key=accept_new_host_key,
                                      parallel=parallel, on_event=progress.handle,
                                      on_tunnel_event=_fleet_tunnel_note)
        if not held:
            _emit(report, as_json, views.show_fleet_status)
        return _fleet_exit(report)

    _run(body)


@fleet.command("inventory")
@FLEET_YAML
def fleet_inventory(fleet_yaml: str) -> None:
    """Print the fleet as an Ansible YAML inventory (all.hosts.<name>)."""

    def body() -> int:
        import yaml

        from .. import api

        click.echo(yaml.safe_dump(api.fleet_inventory(fleet_yaml), sort_keys=False), nl=False)
        return ExitStatus.OK

    _run(body)


@fleet.command("down")
@FLEET_YAML
@click.option("--wipe", type=click.Choice(["none", "models", "all"]), default="none",
              show_default=True, help=WIPE_HELP)
@click.option("--keep-outputs-remote", is_flag=True,
              help="Leave the outputs on the nodes once they are copied.")
@click.option("--discard-outputs", is_flag=True,
              help="Wipe even when some outputs could not be copied (they are lost).")
@click.option("--dry-run", is_flag=True, help="List what would be copied and deleted; change nothing.")
@click.option("--force", is_flag=True, help="Interrupt ComfyUI's queues instead of waiting for them.")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=300, show_default=True,
              metavar="SECONDS", help="How long to wait for each queue to drain.")
@PARALLEL
@click.option("--json", "as_json", is_flag=True, help="Print the recap as one JSON document.")
@ACCEPT_NEW_HOST_KEY
@click.option("--break-lock", is_flag=True, help="Take each node's lock even if another run holds it.")
@click.option("--lock-wait", type=click.IntRange(0, 3600), default=10, show_default=True,
              metavar="SECONDS", help="How long to wait for another run's lock on a node.")
def fleet_down(fleet_yaml: str, wipe: str, keep_outputs_remote: bool, discard_outputs: bool,
               dry_run: bool, force: bool, drain_timeout: float, parallel: Optional[int],
               as_json: bool, accept_new_host_key: bool, break_lock: bool, lock_wait: int) -> None:
    """Harvest every node into its own folder, then tear it down; re-running finishes the job."""

    def body() -> int:
        from .. import api
        from . import views

        with _fleet_progress(as_json) as progress:
            report = api.fleet_down(fleet_yaml, wipe=wipe, keep_outputs_remote=keep_outputs_remote,
                                    discard_outputs=discard_outputs, dry_run=dry_run, force=force,
                                    drain_timeout=drain_timeout, accept_new_host_key=accept_new_host_key,
                                    break_lock=break_lock, lock_wait=lock_wait, parallel=parallel,
                                    on_event=progress.handle)
        _emit(report, as_json, views.show_fleet_down)
        return _fleet_exit(report)

    _run(body)


@fleet.command("bench")
@FLEET_YAML
@click.option("--model", type=click.Choice(["dev", "schnell"]),
              help="Model to bench (default: each node's model:).")
@click.option("--steps", type=click.IntRange(1, 10000),
              help="Sampler steps (default: 20 for dev, 4 for schnell, as in the seed's table).")
@click.option("--runs", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Measured runs per node, after one warm-up that is not counted.")
@click.option("--seed", type=click.IntRange(0, 2**63), help="Base seed; run i uses SEED+i.")
@click.option("--prompt", help="The text prompt (default: a fixed one).")
@PARALLEL
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@ACCEPT_NEW_HOST_KEY
def fleet_bench(fleet_yaml: str, model: Optional[str], steps: Optional[int], runs: int,
                seed: Optional[int], prompt: Optional[str], parallel: Optional[int], as_json: bool,
                accept_new_host_key: bool) -> None:
    """Benchmark Flux.1 1024x1024 on every node; one table across the nodes."""

    def body() -> int:
        from .. import api
        from ..bench.report import BenchOptions
        from . import views

        options = BenchOptions(model=model, steps=steps, runs=runs, seed=seed, prompt=prompt)
        with _fleet_progress(as_json) as progress:
            report = api.fleet_bench(fleet_yaml, options=options, parallel=parallel,
                                     accept_new_host_key=accept_new_host_key, on_event=progress.handle)
        _emit(report, as_json, views.show_fleet_bench)
        return _fleet_exit(report)

    _run(body)


@fleet.command("session")
@FLEET_YAML
@click.option("--until", metavar="HH:MM", help="End at this local time (tomorrow if already past).")
@click.option("--for", "duration", metavar="DURATION", help="End after this long, e.g. 3h, 45m, 20s.")
@click.option("--warn", default="15m,5m", show_default=True, metavar="LIST",
              help="Warn this long before the end (comma-separated; 'none' for no warnings).")
@click.option("--wipe", type=click.Choice(["none", "models", "all"]), default="none",
              show_default=True, help=WIPE_HELP)
@click.option("--keep-outputs-remote", is_flag=True,
              help="Leave the outputs on the nodes once they are copied.")
@click.option("--discard-outputs", is_flag=True,
              help="Wipe even when some outputs could not be copied (they are lost).")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=60, show_default=True,
              metavar="SECONDS", help="At the end, how long running work may finish before it is interrupted.")
@click.option("--no-models", is_flag=True, help="Skip the model downloads.")
@click.option("--max-downloads", type=click.IntRange(1, 256), metavar="N",
              help="At most N nodes download models at once (default: no bound).")
@PARALLEL
@click.option("--json", "as_json", is_flag=True, help="Print the recap as one JSON document.")
@ACCEPT_NEW_HOST_KEY
def fleet_session(fleet_yaml: str, until: Optional[str], duration: Optional[str], warn: str,
                  wipe: str, keep_outputs_remote: bool, discard_outputs: bool, drain_timeout: float,
                  no_models: bool, max_downloads: Optional[int], parallel: Optional[int],
                  as_json: bool, accept_new_host_key: bool) -> None:
    """Fleet up, hold every tunnel with a countdown, then harvest and tear every node down."""

    def body() -> int:
        import signal

        from .. import api
        from ..teardown.deadline import parse_warnings
        from . import views

        deadline = _session_deadline(until, duration)
        try:
            warnings = parse_warnings(warn)
        except ValueError as error:
            raise UsageError(f"--warn: {error}", "e.g. --warn 15m,5m") from None
        err = _console(stderr=True)
        countdown = views.Countdown(err)
        phases = [_fleet_progress(as_json)]

        def on_ready(report) -> None:
            phases[0].close()
            views.show_fleet_up(_console(stderr=as_json), report)
            views.show_fleet_urls(err, report)
            for line in report.nodes:
                if line.url:
                    click.echo(f"{line.node} {line.url}")
            err.print(f"[bold green]session until {deadline:%Y-%m-%d %H:%M:%S}[/] "
                      "(Ctrl-C ends it early)", highlight=False)
            countdown.start()

        def on_session(event) -> None:
            if event.kind == "ready":
                return
            countdown.handle(event)
            if event.kind == "teardown":
                phases.append(_fleet_progress(as_json).__enter__())

        def ask() -> str:
            countdown.stop()
            return _ask_teardown()

        # SIGTERM ends a session like Ctrl-C without a terminal: harvest and tear down.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            with phases[0]:
                report = api.fleet_session(
                    fleet_yaml, deadline=deadline, warn_before=tuple(warnings), wipe=wipe,
                    keep_outputs_remote=keep_outputs_remote, discard_outputs=discard_outputs,
                    drain_timeout=drain_timeout, no_models=no_models, max_downloads=max_downloads,
                    accept_new_host_key=accept_new_host_key, parallel=parallel,
                    on_event=lambda name, event: phases[-1].handle(name, event),
                    on_session=on_session, on_ready=on_ready,
                    on_tunnel_event=_fleet_tunnel_note, ask=ask)
        finally:
            countdown.stop()
            for phase in phases:
                phase.close()
        _emit(report, as_json, views.show_fleet_session)
        return _fleet_exit(report)

    _run(body)


@cli.command()
@NODE_YAML
@click.option("--model", type=click.Choice(["dev", "schnell"]),
              help="Model to bench (default: node.yaml's model:).")
@click.option("--steps", type=click.IntRange(1, 10000),
              help="Sampler steps (default: 20 for dev, 4 for schnell, as in the seed's table).")
@click.option("--runs", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Measured runs, after one warm-up that is not counted.")
@click.option("--seed", type=click.IntRange(0, 2**63), help="Base seed; run i uses SEED+i "
              "(default: random; ComfyUI would answer a repeated seed from its cache).")
@click.option("--prompt", help="The text prompt (default: a fixed one).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (docs/bench.md).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="OUT.png",
              help="Draw time per run and memory pressure over time (needs the plot extra).")
@click.option("--compare", type=click.Choice(["seed"]),
              help="Show the seed article's row for this memory size and model, with the ratio.")
@ACCEPT_NEW_HOST_KEY
def bench(node_yaml: str, model: Optional[str], steps: Optional[int], runs: int,
          seed: Optional[int], prompt: Optional[str], as_json: bool, plot_path: Optional[str],
          compare: Optional[str], accept_new_host_key: bool) -> None:
    """Benchmark Flux.1 1024x1024 on the node: time per image, memory pressure and swap."""

    def body() -> int:
        from .. import api
        from ..bench.report import BenchOptions
        from ..core.errors import BenchFailed
        from . import views

        options = BenchOptions(model=model, steps=steps, runs=runs, seed=seed, prompt=prompt,
                               compare=compare)
        progress = views.BenchProgress(_console(stderr=True))
        try:
            with progress:
                report = api.bench(node_yaml, options=options, plot_path=plot_path,
                                   accept_new_host_key=accept_new_host_key, on_event=progress.handle)
        except BenchFailed as error:
            if error.report is not None:
                _show_bench(error.report, as_json)
            raise
        _show_bench(report, as_json)
        return ExitStatus.OK

    _run(body)


def _show_bench(report, as_json: bool) -> None:
    from . import views

    _emit(report, as_json, views.show_bench)


def main() -> None:
    """Entry point of the ``provision`` console script."""
    cli(prog_name="provision")
