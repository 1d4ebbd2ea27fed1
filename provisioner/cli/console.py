"""The consoles the CLI prints on, the styles its views share, and verbatim text.

Node names, paths, hints, errors and remote output may hold ``[...]``; rich would read that as
markup (``provision[plot]`` would print as ``provision``). So text that carries data is built
as ``rich.text.Text`` (``Text.assemble`` with (text, style) parts), never as a markup string;
a table's str cells and title are markup, hence ``add_row`` and ``title``; a progress
description is markup too, so the data in it goes through ``rich.markup.escape``.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

VERDICT_STYLE = {"green": "bold green", "yellow": "bold yellow", "red": "bold red"}
STATUS_STYLE = {"ok": "green", "changed": "yellow", "would-change": "cyan", "skipped": "dim",
                "failed": "bold red", "stopped": "magenta"}


def make_console(stderr: bool = False) -> Console:
    """Return a console that stays readable when output is not a terminal (CI logs)."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "120"))
    # emoji=False: a ":name:" in a path or a message stays as it is.
    return Console(file=stream, width=width, highlight=False, soft_wrap=False, emoji=False)


def title(text: str) -> Text:
    """Return a table title shown verbatim, styled as rich styles a str title."""
    return Text(text, style="table.title")


def add_row(table: Table, *cells: Optional[RenderableType]) -> None:
    """Add a row to ``table``; its str cells are shown verbatim (as Text, not markup)."""
    table.add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in cells))


def styled(text: str, style: str) -> Text:
    """Return ``text`` verbatim in ``style`` (the Text of ``[style]text[/]``)."""
    return Text.assemble((text, style))


def show_error(console: Console, message: str, hint: str = "") -> None:
    """Print a refusal: ``error: <message>`` and, when there is one, ``hint: <hint>``."""
    console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False,
                  soft_wrap=True)
    if hint:
        console.print(Text.assemble(("hint:", "dim"), " ", hint), highlight=False, soft_wrap=True)


class ProgressView:
    """A live view that holds a rich ``Progress`` (or ``Live``) while a command runs, on a
    terminal only; subclasses start it in ``__enter__`` and render events in ``handle``."""

    _progress = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the live display (idempotent): what is printed next goes below it."""
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.__exit__(None, None, None)
