"""The click group, the options many commands share, and the one place errors become exits.

Each command parses, calls one ``api`` function and hands the report to ``Output``; ``run``
turns a ``ProvisionError`` into one line on stderr, with ``--json`` also one JSON document on
stdout (docs/plan-json.md), and the error's exit code.
"""

from __future__ import annotations

import json
import sys
from typing import Callable, Optional

import click

from .. import __version__
from ..core.errors import ExitStatus, ProvisionError, UsageError
from ..core.redact import redact


def error_document(message: str, hint: Optional[str], exit_code: int) -> str:
    """Return the one JSON document a ``--json`` command prints when it refuses or fails."""
    return json.dumps({"ok": False, "error": redact(message), "hint": redact(hint) if hint else None,
                       "exit_code": int(exit_code)}, indent=2)


class JsonCommand(click.Command):
    """A command whose ``--json`` also covers click's usage errors (a bad option value, a
    missing argument): the error document on stdout, then click's message on stderr."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        options = args[:args.index("--")] if "--" in args else args
        wants_json = "--json" in options and any(param.name == "as_json" for param in self.params)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            if wants_json:
                hint = None
                if self.get_help_option(ctx) is not None:  # the hint click prints, as a hint
                    option = max(self.get_help_option_names(ctx), key=len)
                    hint = f"Try '{ctx.command_path} {option}' for help."
                click.echo(error_document(error.format_message(), hint, error.exit_code))
            raise


class Group(click.Group):
    """A group whose commands are ``JsonCommand`` and whose subgroups are ``Group``."""

    command_class = JsonCommand
    group_class = type


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"],
                                          "max_content_width": 100})
@click.version_option(__version__, prog_name="provision")
def cli() -> None:
    """Turn a rented Apple Silicon Mac into a Flux.1 + ComfyUI node, and hand it back clean."""


def console(stderr: bool = False):
    """Return a rich console on stdout (or stderr)."""
    from .console import make_console

    return make_console(stderr=stderr)


class Output:
    """Where one command's result goes: with ``--json`` one JSON document on stdout, else the
    rich view; remembers whether that document is out, so an error does not add a second."""

    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json
        self.printed = False

    def report(self, report, show: Callable) -> None:
        """Print a report: its JSON for scripts, else ``show(console, report)``."""
        if self.as_json:
            self.json(report.model_dump_json(indent=2))
        else:
            show(console(), report)

    def partial(self, error: ProvisionError, show: Callable) -> None:
        """Print the report so far that a failure carries (``error.report``), if any."""
        if getattr(error, "report", None) is not None:
            self.report(error.report, show)

    def json(self, text: str) -> None:
        """Print a JSON document on stdout, secrets redacted."""
        click.echo(redact(text))
        self.printed = True

    def error(self, error: ProvisionError) -> None:
        """With ``--json``, print the error document, unless a report went out already (a
        failed ``up``, ``down`` or ``bench`` prints the report so far, which says what failed)."""
        if self.as_json and not self.printed:
            self.json(error_document(str(error), error.hint, error.exit_status))


def wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM (what holding a tunnel open means)."""
    import signal
    import threading

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


def _raise_terminated(signum, frame) -> None:
    from ..core.errors import Terminated

    raise Terminated()


def run(action: Callable[[], Optional[int]], out: Optional[Output] = None) -> None:
    """Run a command body; turn our errors into one line on stderr and an exit code.

    SIGTERM stops a command the way Ctrl-C does (a command may set its own handler), so what
    it started on the node is stopped and the exit code says which: 130 or 143."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        code = action()
    except ProvisionError as error:
        from .console import show_error

        if out is not None:
            out.error(error)
        show_error(console(stderr=True), redact(str(error)), redact(error.hint))
        sys.exit(int(error.exit_status))
    except KeyboardInterrupt as interrupt:
        from ..core.errors import Terminated

        terminated = isinstance(interrupt, Terminated)
        console(stderr=True).print(f"interrupted ({'SIGTERM' if terminated else 'Ctrl-C'})")
        sys.exit(int(ExitStatus.TERMINATED if terminated else ExitStatus.INTERRUPTED))
    sys.exit(int(code or ExitStatus.OK))


def parse_memory_option(value: Optional[str]) -> Optional[int]:
    """Return ``--memory`` in bytes (None when not given); a bad size is a UsageError."""
    from ..core.units import parse_memory

    if value is None:
        return None
    try:
        return parse_memory(value)
    except ValueError as error:
        raise UsageError(f"--memory: {error}", "write it as Apple sells it, e.g. --memory 64GB") from None
