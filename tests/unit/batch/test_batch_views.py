"""``run --size``: WIDTHxHEIGHT (provisioner/cli/batch_views.py)."""

from __future__ import annotations

import pytest

from provisioner.cli.batch_views import parse_size
from provisioner.core.errors import UsageError


@pytest.mark.parametrize(("text", "size"), [("1024x768", (1024, 768)), ("512X512", (512, 512))])
def test_a_size_is_width_by_height(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1024", "x768", "1024x", "0x512", "1024x-1", "1024*768", " 1024x768", ""])
def test_a_bad_size_is_refused_naming_the_option(text):
    with pytest.raises(UsageError) as raised:
        parse_size(text)
    assert raised.value.message == f"--size {text}: expected WIDTHxHEIGHT, e.g. 1024x1024"


def test_a_superscript_digit_is_refused_not_a_crash():
    with pytest.raises(UsageError):
        parse_size("²x2")


def test_the_live_view_shows_the_batch_bar_and_a_line_per_node():
    import io

    from rich.console import Console

    from provisioner.batch.lane import LaneEvent
    from provisioner.batch.run import BatchEvent
    from provisioner.cli.batch_views import BatchProgress

    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=160, color_system=None)
    with BatchProgress(console) as view:
        view.handle(BatchEvent("start", total=4, skipped=2))
        view.handle(LaneEvent(node="m4-[a]", kind="step", job=3, value=5, total=20, queue=2,
                              steps_per_s=1.25))
        view.handle(LaneEvent(node="m4-[a]", kind="done", job=3, images=1, queue=1))
        view._progress.refresh()
        shown = stream.getvalue()
        view.handle(LaneEvent(node="m2", kind="failed", job=4, message="VAELoader failed: [x]"))
    assert "batch (2 already done)" in shown and "1/4" in shown
    assert "m4-[a]: job 3" in shown and "queue 1, 1 done" in shown
    assert "job 4 failed: VAELoader failed: [x]" in stream.getvalue()


def test_without_a_terminal_each_job_is_a_line():
    import io

    from rich.console import Console

    from provisioner.batch.lane import LaneEvent
    from provisioner.batch.run import BatchEvent
    from provisioner.cli.batch_views import BatchProgress

    stream = io.StringIO()
    with BatchProgress(Console(file=stream, width=120)) as view:
        view.handle(BatchEvent("start", total=2))
        view.handle(LaneEvent(node="m4", kind="done", job=1, images=2))
        view.handle(LaneEvent(node="m4", kind="left", message="ComfyUI stopped answering"))
    lines = stream.getvalue().splitlines()
    assert lines == ["2 job(s) to run", "m4: job 1 done (2 image(s))",
                     "m4: left the batch: ComfyUI stopped answering; its jobs go to the other nodes"]
