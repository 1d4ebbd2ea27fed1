"""down and session show paths, file names, notes and messages verbatim."""

from __future__ import annotations

import datetime
from types import SimpleNamespace as NS

from provisioner.cli import rental_views
from tests.unit.cli.render import plain_console, text

DEST = "/Users/me/outputs[old]/m4[1]"


def down_report(**update):
    report = NS(
        node="m4[1]", host="203.0.113.10", dry_run=False, nothing_to_do=False,
        notes=["outputs [kept] on the node: --keep-outputs-remote"], problems=[],
        queue=NS(answered=True, running=[], pending=[], interrupted=[], dropped=[]),
        service=NS(was_loaded=True, was_running=True, stopped=True, port=8188, port_free=True),
        harvest=NS(dest=DEST, to_pull=[], pulled=[NS(file="output/a.png")], bytes_pulled=2048,
                   skipped=0, ok=False, manifest=f"{DEST}/manifest.json",
                   failed=[NS(file="output/[draft] b.png", error="sftp: [errno 2] gone")], refused=[]),
        secrets=NS(removed=["token"], check="clean", files_searched=3, bytes_searched=100,
                   found_in=[], note=None),
        removals=[NS(what="token", path="/w/.hf[token]", bytes=0, done=True)],
        duration=1.5, cost={"connections": 1, "commands": 5, "transfers": 1})
    return NS(**{**vars(report), **update})


def test_the_down_recap_shows_a_bracketed_destination_and_files_verbatim():
    console = plain_console()
    rental_views.show_down(console, down_report())
    out = text(console)
    assert "Down: m4[1] (203.0.113.10)" in out
    assert f"1 file(s) copied (2.05 KB) to {DEST}; 0 already there; 1 not copied" in out
    assert f"{DEST}/manifest.json" in out
    assert "/w/.hf[token]" in out
    assert "not copied: output/[draft] b.png: sftp: [errno 2] gone" in out
    assert "note: outputs [kept] on the node: --keep-outputs-remote" in out


def test_a_dry_run_lists_bracketed_files_verbatim():
    report = down_report(dry_run=True, harvest=NS(
        dest=DEST, to_pull=[NS(file="output/[wip]/c.png", bytes=10, reason="new [1st]")],
        skipped=2, manifest=None, failed=[], refused=[]))
    console = plain_console()
    rental_views.show_down(console, report)
    out = text(console)
    assert f"would copy 1 file(s), 10 B, to {DEST}; 2 already there" in out
    assert "output/[wip]/c.png" in out and "new [1st]" in out


def test_teardown_progress_shows_notes_and_failures_verbatim():
    console = plain_console()
    with rental_views.TeardownProgress(console) as progress:
        progress.handle(NS(kind="note", message="waiting for [prompt p-1]", harvest=None))
        progress.handle(NS(kind="harvest", message="", harvest=NS(
            kind="failed", file="output/[x].png", error="[errno 5] i/o")))
    assert text(console) == ("down: waiting for [prompt p-1]\n"
                             "  not copied: output/[x].png: [errno 5] i/o\n")


def test_the_countdown_prints_a_bracketed_message_verbatim():
    console = plain_console()
    deadline = datetime.datetime(2030, 1, 1, 18, 0)
    rental_views.Countdown(console).handle(NS(kind="retry", remaining=60.0, deadline=deadline,
                                              message="ssh: [closed] reconnecting"))
    assert text(console) == "link down: ssh: [closed] reconnecting\n"


def test_the_end_of_a_session_is_verbatim():
    console = plain_console()
    rental_views.show_session(console, NS(ended_by="deadline", node="m4[bold]",
                                          notes=["outputs in /tmp/[out]"]))
    assert text(console) == ("session over (deadline): m4[bold] harvested and torn down\n"
                             "note: outputs in /tmp/[out]\n")
