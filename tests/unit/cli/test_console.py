"""The CLI's consoles print text as it is: no markup, no emoji codes."""

from __future__ import annotations

from rich.table import Table

from provisioner.cli.console import add_row, make_console, show_error
from tests.unit.cli.render import plain_console, text


def test_an_error_and_its_hint_print_verbatim(capsys):
    show_error(make_console(stderr=True), "no such file: /tmp/x[1]/[plot]:smile:/node.yaml",
               "install the plot extra: pip install 'provision[plot]' (matplotlib)")
    assert capsys.readouterr().err == (
        "error: no such file: /tmp/x[1]/[plot]:smile:/node.yaml\n"
        "hint: install the plot extra: pip install 'provision[plot]' (matplotlib)\n")


def test_no_hint_no_hint_line():
    console = plain_console()
    show_error(console, "boom")
    assert text(console) == "error: boom\n"


def test_table_cells_added_with_add_row_are_verbatim():
    table = Table(show_header=False, box=None)
    table.add_column()
    add_row(table, "[bold]x[/bold] and [plot]")
    console = plain_console()
    console.print(table)
    assert "[bold]x[/bold] and [plot]" in text(console)
