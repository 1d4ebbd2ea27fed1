"""Many nodes at once: fleet plan, up, status, tunnel, inventory, down, bench, session."""

from __future__ import annotations

from typing import Callable, Optional

import click

from ..core.errors import ExitStatus
from .app import Output, cli, console, run, wait_for_interrupt
from .options import (
    ACCEPT_NEW_HOST_KEY,
    BENCH_PROMPT,
    BENCH_STEPS,
    DISCARD_OUTPUTS,
    DRY_RUN_TEARDOWN,
    FLEET_YAML,
    FOR_DURATION,
    JSON_DOCUMENT,
    JSON_RECAP,
    KEEP_OUTPUTS_REMOTE_FLEET,
    LOCK_WAIT_FLEET,
    MAX_DOWNLOADS,
    NO_LAUNCH,
    NO_MODELS,
    NO_SMOKE,
    PARALLEL,
    SESSION_DRAIN_TIMEOUT,
    UNTIL,
    WARN,
    WIPE,
)
from .rental import ask_teardown, session_end


@cli.group()
def fleet() -> None:
    """Many nodes at once: a fleet.yaml is defaults: merged under each of nodes: (docs/fleet.md)."""


def fleet_progress(as_json: bool, plain: bool = True):
    """Return the live progress of a fleet command (on stderr with ``--json``)."""
    from . import fleet_views as views

    return views.FleetProgress(console(stderr=as_json), plain=plain)


def fleet_tunnel_note(name: str, message: str) -> None:
    """Print a note of node ``name``'s tunnel on stderr."""
    from .fleet_views import show_fleet_tunnel_note

    show_fleet_tunnel_note(console(stderr=True), name, message)


def fleet_exit(report) -> int:
    """Return 0 when every node is ok, else 1."""
    return ExitStatus.OK if report.ok else ExitStatus.FAILED


def hold_fleet_tunnels(report, tunnels, out: Output) -> None:
    """Print every node's URL and keep the tunnels open until Ctrl-C (or SIGTERM)."""

    from . import fleet_views as views

    if out.as_json:
        out.json(report.model_dump_json(indent=2))
    else:
        if report.command == "up":
            views.show_fleet_up(console(), report)
        else:
            views.show_fleet_status(console(), report)
        # Scripts read "<node> <url>" lines from stdout; people read the table on stderr.
        for line in report.nodes:
            if line.url:
                click.echo(f"{line.node} {line.url}")
    views.show_fleet_urls(console(stderr=True), report)
    wait_for_interrupt()
    console(stderr=True).print(f"{len(tunnels)} tunnel(s) closed")


def report_fleet(as_json: bool, show: Callable, fetch: Callable[[Callable], object]) -> None:
    """Run a read-only fleet command: live progress, then its report shown by ``show``."""
    out = Output(as_json)

    def body() -> int:
        with fleet_progress(as_json, plain=False) as progress:
            report = fetch(progress.handle)
        out.report(report, show)
        return fleet_exit(report)

    run(body, out)


@fleet.command("plan")
@FLEET_YAML
@PARALLEL
@JSON_DOCUMENT
@ACCEPT_NEW_HOST_KEY
def fleet_plan(fleet_yaml: str, parallel: Optional[int], as_json: bool, accept_new_host_key: bool) -> None:
    """Per-node facts and model choices, in one table."""
    from .. import api
    from . import fleet_views

    report_fleet(as_json, fleet_views.show_fleet_plan, lambda on_event: api.fleet_plan(
        fleet_yaml, accept_new_host_key=accept_new_host_key, parallel=parallel, on_event=on_event))


@fleet.command("up")
@FLEET_YAML
@PARALLEL
@MAX_DOWNLOADS
@click.option("--fail-fast", is_flag=True, help="Start no new node after the first failure.")
@click.option("--retry-failed", is_flag=True,
              help="Redo only the nodes that failed last time (.provision/last-fleet.json).")
@click.option("--timeout", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Mark a node failed (and cut it off) when its up takes longer.")
@JSON_RECAP
@NO_LAUNCH
@NO_MODELS
@NO_SMOKE
@click.option("--no-tunnel", is_flag=True, help="Do not hold the tunnels open after launching.")
@LOCK_WAIT_FLEET
@ACCEPT_NEW_HOST_KEY
def fleet_up(fleet_yaml: str, parallel: Optional[int], max_downloads: Optional[int], fail_fast: bool,
             retry_failed: bool, timeout: Optional[float], as_json: bool, no_launch: bool,
             no_models: bool, no_smoke: bool, no_tunnel: bool, lock_wait: int,
             accept_new_host_key: bool) -> None:
    """Bring every node up in parallel; then hold one tunnel per healthy node."""
    out = Output(as_json)

    def body() -> int:
        from .. import api
        from . import fleet_views as views

        progress = fleet_progress(as_json)
        held = []

        def hold(report, tunnels) -> None:
            progress.close()
            held.append(report)
            hold_fleet_tunnels(report, tunnels, out)

        with progress:
            report = api.fleet_up(
                fleet_yaml, parallel=parallel, max_downloads=max_downloads, fail_fast=fail_fast,
                retry_failed=retry_failed, timeout=timeout, no_launch=no_launch,
                no_models=no_models, no_smoke=no_smoke, lock_wait=lock_wait,
                accept_new_host_key=accept_new_host_key,
                on_event=progress.handle, hold=None if no_tunnel else hold,
                on_tunnel_event=fleet_tunnel_note)
        if held:
            return fleet_exit(report)
        if retry_failed and not report.nodes:
            console(stderr=True).print("nothing to retry: every node succeeded last time")
        out.report(report, views.show_fleet_up)
        return fleet_exit(report)

    run(body, out)


@fleet.command("status")
@FLEET_YAML
@PARALLEL
@JSON_DOCUMENT
@ACCEPT_NEW_HOST_KEY
def fleet_status(fleet_yaml: str, parallel: Optional[int], as_json: bool, accept_new_host_key: bool) -> None:
    """Service, health and memory pressure of every node; exit 1 if any is not healthy."""
    from .. import api
    from . import fleet_views

    report_fleet(as_json, fleet_views.show_fleet_status, lambda on_event: api.fleet_status(
        fleet_yaml, accept_new_host_key=accept_new_host_key, parallel=parallel, on_event=on_event))


@fleet.command("tunnel")
@FLEET_YAML
@PARALLEL
@click.option("--json", "as_json", is_flag=True, help="Print the nodes and URLs as one JSON document.")
@ACCEPT_NEW_HOST_KEY
def fleet_tunnel(fleet_yaml: str, parallel: Optional[int], as_json: bool, accept_new_host_key: bool) -> None:
    """(Re)open one tunnel per healthy node and hold them until Ctrl-C."""
    out = Output(as_json)

    def body() -> int:
        from .. import api
        from . import fleet_views as views

        progress = fleet_progress(as_json, plain=False)
        held = []

        def hold(report, tunnels) -> None:
            progress.close()
            held.append(report)
            hold_fleet_tunnels(report, tunnels, out)

        with progress:
            report = api.fleet_tunnel(fleet_yaml, hold=hold, accept_new_host_key=accept_new_host_key,
                                      parallel=parallel, on_event=progress.handle,
                                      on_tunnel_event=fleet_tunnel_note)
        if not held:
            out.report(report, views.show_fleet_status)
        return fleet_exit(report)

    run(body, out)


@fleet.command("inventory")
@FLEET_YAML
def fleet_inventory(fleet_yaml: str) -> None:
    """Print the fleet as an Ansible YAML inventory (all.hosts.<name>)."""

    def body() -> int:
        import yaml

        from .. import api

        click.echo(yaml.safe_dump(api.fleet_inventory(fleet_yaml), sort_keys=False), nl=False)
        return ExitStatus.OK

    run(body)


@fleet.command("down")
@FLEET_YAML
@WIPE
@KEEP_OUTPUTS_REMOTE_FLEET
@DISCARD_OUTPUTS
@DRY_RUN_TEARDOWN
@click.option("--force", is_flag=True, help="Interrupt ComfyUI's queues instead of waiting for them.")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=300, show_default=True,
              metavar="SECONDS", help="How long to wait for each queue to drain.")
@PARALLEL
@JSON_RECAP
@ACCEPT_NEW_HOST_KEY
@click.option("--break-lock", is_flag=True, help="Take each node's lock even if another run holds it.")
@LOCK_WAIT_FLEET
def fleet_down(fleet_yaml: str, wipe: str, keep_outputs_remote: bool, discard_outputs: bool,
               dry_run: bool, force: bool, drain_timeout: float, parallel: Optional[int],
               as_json: bool, accept_new_host_key: bool, break_lock: bool, lock_wait: int) -> None:
    """Harvest every node into its own folder, then tear it down; re-running finishes the job."""
    out = Output(as_json)

    def body() -> int:
        from .. import api
        from . import fleet_views as views

        with fleet_progress(as_json) as progress:
            report = api.fleet_down(fleet_yaml, wipe=wipe, keep_outputs_remote=keep_outputs_remote,
                                    discard_outputs=discard_outputs, dry_run=dry_run, force=force,
                                    drain_timeout=drain_timeout, accept_new_host_key=accept_new_host_key,
                                    break_lock=break_lock, lock_wait=lock_wait, parallel=parallel,
                                    on_event=progress.handle)
        out.report(report, views.show_fleet_down)
        return fleet_exit(report)

    run(body, out)


@fleet.command("bench")
@FLEET_YAML
@click.option("--model", type=click.Choice(["dev", "schnell"]),
              help="Model to bench (default: each node's model:).")
@BENCH_STEPS
@click.option("--runs", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Measured runs per node, after one warm-up that is not counted.")
@click.option("--seed", type=click.IntRange(0, 2**63), help="Base seed; run i uses SEED+i.")
@BENCH_PROMPT
@PARALLEL
@JSON_DOCUMENT
@ACCEPT_NEW_HOST_KEY
def fleet_bench(fleet_yaml: str, model: Optional[str], steps: Optional[int], runs: int,
                seed: Optional[int], prompt: Optional[str], parallel: Optional[int], as_json: bool,
                accept_new_host_key: bool) -> None:
    """Benchmark Flux.1 1024x1024 on every node; one table across the nodes."""
    out = Output(as_json)

    def body() -> int:
        from .. import api
        from ..bench.report import BenchOptions
        from . import fleet_views as views

        options = BenchOptions(model=model, steps=steps, runs=runs, seed=seed, prompt=prompt)
        with fleet_progress(as_json) as progress:
            report = api.fleet_bench(fleet_yaml, options=options, parallel=parallel,
                                     accept_new_host_key=accept_new_host_key, on_event=progress.handle)
        out.report(report, views.show_fleet_bench)
        return fleet_exit(report)

    run(body, out)


@fleet.command("session")
@FLEET_YAML
@UNTIL
@FOR_DURATION
@WARN
@WIPE
@KEEP_OUTPUTS_REMOTE_FLEET
@DISCARD_OUTPUTS
@SESSION_DRAIN_TIMEOUT
@NO_MODELS
@NO_SMOKE
@MAX_DOWNLOADS
@PARALLEL
@JSON_RECAP
@ACCEPT_NEW_HOST_KEY
def fleet_session(fleet_yaml: str, until: Optional[str], duration: Optional[str], warn: str,
                  wipe: str, keep_outputs_remote: bool, discard_outputs: bool, drain_timeout: float,
                  no_models: bool, no_smoke: bool, max_downloads: Optional[int],
                  parallel: Optional[int],
                  as_json: bool, accept_new_host_key: bool) -> None:
    """Fleet up, hold every tunnel with a countdown, then harvest and tear every node down."""
    out = Output(as_json)

    def body() -> int:
        import signal

        from .. import api
        from . import fleet_views as views
        from . import rental_views

        deadline, warnings = session_end(until, duration, warn)
        err = console(stderr=True)
        countdown = rental_views.Countdown(err)
        phases = [fleet_progress(as_json)]

        def on_ready(report) -> None:
            phases[0].close()
            views.show_fleet_up(console(stderr=as_json), report)
            views.show_fleet_urls(err, report)
            for line in report.nodes:
                if line.url:
                    click.echo(f"{line.node} {line.url}")
            views.show_fleet_session_start(err, deadline)
            countdown.start()

        def on_session(event) -> None:
            if event.kind == "ready":
                return
            countdown.handle(event)
            if event.kind == "teardown":
                phases.append(fleet_progress(as_json).__enter__())

        def ask() -> str:
            countdown.stop()
            return ask_teardown()

        # SIGTERM ends a session like Ctrl-C without a terminal: harvest and tear down.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            with phases[0]:
                report = api.fleet_session(
                    fleet_yaml, deadline=deadline, warn_before=tuple(warnings), wipe=wipe,
                    keep_outputs_remote=keep_outputs_remote, discard_outputs=discard_outputs,
                    drain_timeout=drain_timeout, no_models=no_models, no_smoke=no_smoke,
                    max_downloads=max_downloads,
                    accept_new_host_key=accept_new_host_key, parallel=parallel,
                    on_event=lambda name, event: phases[-1].handle(name, event),
                    on_session=on_session, on_ready=on_ready,
                    on_tunnel_event=fleet_tunnel_note, ask=ask)
        finally:
            countdown.stop()
            for phase in phases:
                phase.close()
        out.report(report, views.show_fleet_session)
        return fleet_exit(report)

    run(body, out)
