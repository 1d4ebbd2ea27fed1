"""plan, up, status and step progress show node data and remote output verbatim."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from provisioner import api
from provisioner.cli import node_views
from provisioner.install.engine import StepEvent, StepResult
from tests.unit.cli.render import plain_console, terminal_console, text

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "node.yaml"
PIP_NOTICE = "[notice] A new release of pip is available: 24.0 -> 25.1"


@pytest.fixture(scope="module")
def offline_plan():
    return api.plan(str(EXAMPLE), memory_bytes=64 * 1024**3)


def step(name: str = "comfyui-requirements", description: str = "pip install -r requirements.txt"):
    return NS(name=name, describe=lambda: description)


def test_the_plan_shows_a_bracketed_node_name_and_step_verbatim(offline_plan):
    first = offline_plan.steps[0].model_copy(update={"description": "extras: 'provision[plot]'"})
    report = offline_plan.model_copy(update={"node": "m4pro[bold]", "steps": [first]})
    console = plain_console()
    node_views.show_plan(console, report)
    out = text(console)
    assert "Node m4pro[bold] (assumed: offline plan)" in out
    assert "extras: 'provision[plot]'" in out
    assert "-> GREEN" in out and "black-forest-labs/FLUX.1-dev (gated)" in out


def test_a_remote_line_streamed_with_verbose_is_verbatim():
    console = plain_console()
    with node_views.StepProgress(console, verbose=True) as progress:
        progress.handle(StepEvent(phase="output", step=step(), index=6, total=12, line=PIP_NOTICE))
    assert text(console) == f"  comfyui-requirements | {PIP_NOTICE}\n"


def test_the_live_line_shows_the_step_and_its_last_remote_line_verbatim():
    console = terminal_console()
    with node_views.StepProgress(console) as progress:
        progress.handle(StepEvent(phase="start", step=step("gguf[node]", "clone [city96]"), index=7,
                                  total=12))
        progress.handle(StepEvent(phase="output", step=step("gguf[node]"), index=7, total=12,
                                  line="remote: [bold]Counting objects\\"))
    out = text(console)
    assert "[8/12] gguf[node]: remote: [bold]Counting objects\\" in out


def test_a_download_note_names_a_bracketed_file_verbatim():
    console = plain_console()
    with node_views.StepProgress(console) as progress:
        progress.handle(StepEvent(phase="progress", step=step("models"), index=9, total=12,
                                  data={"dest": "/w/models/unet/flux[dev].gguf", "event": "retry",
                                        "error": "HTTP 503 [retry 2/5]"}))
    assert text(console) == "  flux[dev].gguf: retry HTTP 503 [retry 2/5]\n"


def test_a_finished_step_line_is_unchanged_and_verbatim():
    console = plain_console()
    result = StepResult(name="venv[3.12]", kind="venv", status="changed", duration=1.25)
    node_views.StepProgress(console).handle(StepEvent(phase="end", step=step(), index=2, total=12,
                                                      result=result))
    assert text(console) == "[3/12]      changed venv[3.12] (1.25s)\n"


def test_the_up_recap_shows_a_bracketed_detail_verbatim(offline_plan):
    steps = [StepResult(name="launch", kind="service", status="failed", duration=2.0,
                        detail="exited: [error] address already in use")]
    report = NS(dry_run=False, node="m4[1]", steps=steps, duration=2.0,
                cost=NS(connections=1, commands=4, transfers=0))
    console = plain_console()
    node_views.show_up(console, report)
    out = text(console)
    assert "Recap: m4[1]" in out and "exited: [error] address already in use" in out
    assert "0 step(s) changed, 1 in all, 2.00s (ssh: 1 connection, 4 commands, 0 transfers)" in out


def test_the_status_shows_a_bracketed_problem_verbatim():
    report = NS(node="m4", host="h", installed=True, last_up={"failed_step": "models[q8]"},
                model_plan=None, remote_port=8188, memory=None,
                service=NS(running=False, loaded=True, explanation=None), booted_at=None,
                health=NS(healthy=False, problem="GET /system_stats: [errno 61] refused",
                          unets=[], text_encoders=[]),
                first_image={"ok": False, "at": "2026-12-07T04:05:42+00:00",
                             "error": "the first image failed in VAEDecode [node 9]"})
    console = plain_console()
    node_views.show_status(console, report)
    out = text(console)
    assert "failed at models[q8]" in out
    assert "failed 2026-12-07 04:05:42+00:00: the first image failed in VAEDecode [node 9]" in out
    assert "unhealthy: GET /system_stats: [errno 61] refused" in out
