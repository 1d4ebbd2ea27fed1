"""Consoles for view tests: what a view printed, as plain text."""

from __future__ import annotations

import io

from rich.console import Console


def plain_console(width: int = 200) -> Console:
    """Return a console as in a CI log (not a terminal, no colour); read it with ``text``."""
    return Console(file=io.StringIO(), width=width, no_color=True, record=True)


def terminal_console(width: int = 200) -> Console:
    """Return a console that says it is a terminal, so live progress is drawn."""
    return Console(file=io.StringIO(), width=width, force_terminal=True, no_color=True, record=True)


def text(console: Console) -> str:
    """Return everything ``console`` printed, as plain text."""
    return console.export_text(clear=False)
