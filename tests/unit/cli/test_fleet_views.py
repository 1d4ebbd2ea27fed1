"""Fleet progress lines, the live table and the recaps show node names and errors verbatim."""

from __future__ import annotations

from types import SimpleNamespace as NS

from provisioner.cli import fleet_views
from provisioner.fleet.run import NodeEvent
from tests.unit.cli.render import plain_console, terminal_console, text


def fleet_report(*lines, command="up"):
    return NS(command=command, seconds=4.0, nodes=list(lines),
              names=lambda status: [line.node for line in lines if line.status == status])


def line(node, status="ok", **fields):
    values = {"node": node, "host": "h", "status": status, "seconds": 1.5, "error": None,
              "hint": None, "url": None, "report": None}
    return NS(**{**values, **fields})


def test_plain_progress_lines_name_a_bracketed_node_and_detail_verbatim():
    console = plain_console()
    with fleet_views.FleetProgress(console) as progress:
        progress.handle("mac[1]", NodeEvent("waiting", "lock held by [pid 42]"))
        progress.handle("mac[plot]", NodeEvent("done", "ssh: [errno 61] refused", status="failed"))
    out = text(console).splitlines()
    assert out[0] == "mac[1]: lock held by [pid 42]"
    assert out[1].startswith("mac[plot]: failed (") and out[1].endswith("s): ssh: [errno 61] refused")


def test_the_live_table_shows_a_bracketed_node_and_phase_verbatim():
    console = terminal_console()
    with fleet_views.FleetProgress(console) as progress:
        progress.handle("mac[bold]", NodeEvent("connecting", "connecting to [::1]:2222"))
    assert "mac[bold]" in text(console) and "connecting to [::1]:2222" in text(console)


def test_the_up_recap_shows_bracketed_errors_and_hints_verbatim():
    report = fleet_report(
        line("mac[1]", url="http://127.0.0.1:8189/"),
        line("mac[plot]", "failed", error="/w/[x]: permission denied", hint="chmod [it]"))
    console = plain_console()
    fleet_views.show_fleet_up(console, report)
    out = text(console)
    assert "mac[1]" in out and "mac[plot]" in out and "/w/[x]: permission denied" in out
    assert "1 of 2 node(s) ok, 1 failed in 4.0s" in out
    assert "mac[plot]: hint: chmod [it]" in out


def test_the_up_recap_shows_each_nodes_first_image():
    made = NS(changed=3, steps=[], first_image={"ok": True, "seconds": 41.27})
    black = NS(changed=1, steps=[], first_image={"ok": False, "error": "all black"})
    report = fleet_report(line("m1", url="http://127.0.0.1:8189/", report=made),
                          line("m2", "failed", error="step smoke: all black", report=black),
                          line("m3", url="http://127.0.0.1:8190/"))
    console = plain_console()
    fleet_views.show_fleet_up(console, report)
    rows = {row.split()[1]: row for row in text(console).splitlines()
            if row.split()[1:2] in (["m1"], ["m2"], ["m3"])}
    assert "41.3s" in rows["m1"] and "failed" in rows["m2"].split("step smoke")[0]
    assert "41.3s" not in rows["m3"] and "failed" not in rows["m3"]


def test_the_down_recap_shows_a_bracketed_folder_verbatim():
    down = NS(dry_run=False, nothing_to_do=False, removals=[NS(done=True)],
              harvest=NS(pulled=[1], bytes_pulled=10, dest="./outputs/[m4]"))
    console = plain_console()
    fleet_views.show_fleet_down(console, fleet_report(line("m4", report=down), command="down"))
    assert "./outputs/[m4]" in text(console)


def test_the_urls_table_is_verbatim():
    console = plain_console()
    fleet_views.show_fleet_urls(console, fleet_report(line("mac[red]", url="http://[::1]:8188/")))
    assert "mac[red]" in text(console) and "http://[::1]:8188/" in text(console)
