"""The end of a rental: down, and session (up, a countdown, then down at the deadline)."""

from __future__ import annotations

import sys
from typing import Optional

import click

from ..core.errors import ExitStatus, UsageError
from .app import Output, cli, console, run
from .node import tunnel_note
from .options import (
    ACCEPT_NEW_HOST_KEY,
    BREAK_LOCK,
    DISCARD_OUTPUTS,
    DRY_RUN_TEARDOWN,
    FOR_DURATION,
    JSON_RECAP,
    KEEP_OUTPUTS_REMOTE,
    LOCK_WAIT,
    NO_MODELS,
    NO_SMOKE,
    NODE_YAML,
    OPEN_BROWSER,
    SESSION_DRAIN_TIMEOUT,
    UNTIL,
    WARN,
    WIPE,
)


@cli.command()
@NODE_YAML
@WIPE
@KEEP_OUTPUTS_REMOTE
@DISCARD_OUTPUTS
@DRY_RUN_TEARDOWN
@click.option("--force", is_flag=True, help="Interrupt ComfyUI's queue instead of waiting for it.")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=300, show_default=True,
              metavar="SECONDS", help="How long to wait for the queue to drain.")
@JSON_RECAP
@ACCEPT_NEW_HOST_KEY
@BREAK_LOCK
@LOCK_WAIT
def down(node_yaml: str, wipe: str, keep_outputs_remote: bool, discard_outputs: bool, dry_run: bool,
         force: bool, drain_timeout: float, as_json: bool, accept_new_host_key: bool,
         break_lock: bool, lock_wait: int) -> None:
    """Harvest the outputs, stop ComfyUI, remove the token, wipe; re-running finishes the job."""
    out = Output(as_json)

    def body() -> int:
        from .. import api
        from ..teardown.report import TeardownIncomplete
        from . import rental_views as views

        try:
            with views.TeardownProgress(console(stderr=True)) as progress:
                report = api.down(node_yaml, wipe=wipe, keep_outputs_remote=keep_outputs_remote,
                                  discard_outputs=discard_outputs, dry_run=dry_run, force=force,
                                  drain_timeout=drain_timeout, accept_new_host_key=accept_new_host_key,
                                  break_lock=break_lock, lock_wait=lock_wait, on_event=progress.handle)
        except TeardownIncomplete as error:
            out.partial(error, views.show_down)
            raise
        out.report(report, views.show_down)
        return ExitStatus.OK

    run(body, out)


def session_end(until: Optional[str], duration: Optional[str], warn: str):
    """Return the session's end from ``--until`` or ``--for`` (exactly one of them), and the
    warnings ``--warn`` asks for before it."""
    import datetime

    from ..teardown.deadline import parse_duration, parse_until, parse_warnings

    if (until is None) == (duration is None):
        raise UsageError("say when the session ends: --until HH:MM or --for DURATION (one of them)",
                         "e.g. provision session node.yaml --until 18:00, or --for 3h")
    now = datetime.datetime.now().astimezone()
    try:
        deadline = parse_until(until, now) if until is not None else now + parse_duration(duration)
    except ValueError as error:
        raise UsageError(f"--{'until' if until is not None else 'for'}: {error}",
                         "e.g. --until 18:00 (local time; tomorrow if already past) or --for 3h") from None
    try:
        return deadline, parse_warnings(warn)
    except ValueError as error:
        raise UsageError(f"--warn: {error}", "e.g. --warn 15m,5m") from None


def ask_teardown() -> str:
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
@UNTIL
@FOR_DURATION
@WARN
@WIPE
@KEEP_OUTPUTS_REMOTE
@DISCARD_OUTPUTS
@SESSION_DRAIN_TIMEOUT
@NO_MODELS
@NO_SMOKE
@JSON_RECAP
@OPEN_BROWSER
@ACCEPT_NEW_HOST_KEY
def session(node_yaml: str, until: Optional[str], duration: Optional[str], warn: str, wipe: str,
            keep_outputs_remote: bool, discard_outputs: bool, drain_timeout: float, no_models: bool,
            no_smoke: bool,
            as_json: bool, open_browser: bool, accept_new_host_key: bool) -> None:
    """Up, hold the tunnel with a countdown, then harvest and tear down at the deadline."""
    out = Output(as_json)

    def body() -> int:
        import signal

        from .. import api
        from ..teardown.report import TeardownIncomplete
        from . import node_views
        from . import rental_views as views

        deadline, warnings = session_end(until, duration, warn)
        err = console(stderr=True)
        steps = node_views.StepProgress(err)
        countdown = views.Countdown(err)
        teardown = views.TeardownProgress(err)

        def on_event(event) -> None:
            if event.kind == "ready":
                steps.__exit__(None, None, None)
                views.show_session_ready(err, event.url, event.deadline.strftime("%Y-%m-%d %H:%M:%S"))
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
            return "teardown" if terminated else ask_teardown()

        # SIGTERM ends a session without asking: harvest and tear down.
        signal.signal(signal.SIGTERM, on_sigterm)
        try:
            with steps, teardown:
                report = api.session(
                    node_yaml, deadline=deadline, warn_before=tuple(warnings), wipe=wipe,
                    keep_outputs_remote=keep_outputs_remote, discard_outputs=discard_outputs,
                    drain_timeout=drain_timeout, no_models=no_models, no_smoke=no_smoke,
                    accept_new_host_key=accept_new_host_key, on_step=steps.handle,
                    on_event=on_event, on_teardown=teardown.handle, on_tunnel_event=tunnel_note,
                    ask=ask)
        except TeardownIncomplete as error:
            countdown.stop()
            out.partial(error, views.show_down)
            raise
        finally:
            countdown.stop()
        if as_json:
            out.json(report.model_dump_json(indent=2))
        else:
            if report.down is not None:
                views.show_down(console(), report.down)
            views.show_session(console(), report)
        return ExitStatus.OK

    run(body, out)
