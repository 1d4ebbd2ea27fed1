"""Letting ComfyUI's queue drain, or interrupting it, against a fake ComfyUI API."""

from __future__ import annotations

import pytest

from provisioner.comfy.client import ComfyUnavailable, parse_queue
from provisioner.teardown.drain import settle_queue
from provisioner.teardown.options import DownOptions
from provisioner.teardown.report import DownReport, TeardownIncomplete


def entry(prompt_id: str) -> list:
    return [0, prompt_id, {}, {}, []]


class FakeComfy:
    """ComfyUI's /queue and /interrupt: interrupting empties the queue."""

    def __init__(self, running=(), pending=(), answers: bool = True) -> None:
        self.queue = {"queue_running": [entry(p) for p in running],
                      "queue_pending": [entry(p) for p in pending]}
        self.answers = answers
        self.posts: list[tuple[str, dict]] = []

    def get_json(self, path: str):
        if not self.answers:
            raise ComfyUnavailable("connection refused")
        assert path == "/queue"
        return self.queue

    def post_json(self, path: str, body: dict):
        self.posts.append((path, body))
        if path == "/interrupt":
            self.queue = {"queue_running": [], "queue_pending": []}
        return 200, None


def partial(**fields) -> DownReport:
    return DownReport(node="n1", host="h", dry_run=False, wipe="none", **fields)


def settle(client: FakeComfy, **options):
    notes: list[str] = []
    report = settle_queue(client, DownOptions(**options), notes.append, partial)
    return report, notes


def test_comfyui_not_answering_is_reported_not_raised():
    report, notes = settle(FakeComfy(answers=False))
    assert not report.answered and notes == []


def test_an_empty_queue_is_left_alone():
    client = FakeComfy()
    report, _ = settle(client, force=True)
    assert report.answered and not report.interrupted and client.posts == []


def test_a_dry_run_reports_the_queue_and_interrupts_nothing():
    client = FakeComfy(running=["p1"], pending=["p2"])
    report, _ = settle(client, dry_run=True, force=True)
    assert (report.running, report.pending) == (["p1"], ["p2"])
    assert client.posts == []


def test_force_drops_the_pending_prompts_then_interrupts_the_running_one():
    client = FakeComfy(running=["p1"], pending=["p2", "p3"])
    report, notes = settle(client, force=True)
    assert [path for path, _ in client.posts] == ["/queue", "/interrupt"]
    assert client.posts[0][1] == {"clear": True}
    assert report.interrupted == ["p1"] and report.dropped == ["p2", "p3"]
    assert notes == ["interrupting ComfyUI: running prompt p1; 2 waiting"]


def test_a_queue_that_does_not_drain_in_time_stops_the_teardown_with_the_report_so_far():
    client = FakeComfy(running=["p1"])
    with pytest.raises(TeardownIncomplete, match="did not drain within 0 s") as raised:
        settle(client, drain_timeout=0)
    assert client.posts == []
    report = raised.value.report
    assert report.queue.running == ["p1"] and report.problems == ["the queue did not drain"]


def test_a_session_interrupts_what_is_left_once_the_wait_is_over():
    client = FakeComfy(running=["p1"])
    report, notes = settle(client, drain_timeout=0, interrupt_after_timeout=True)
    assert report.interrupted == ["p1"]
    assert notes[-1] == "interrupting ComfyUI: running prompt p1; 0 waiting"


def test_queue_entries_are_read_by_prompt_id():
    data = {"queue_running": [[3, "p-run", {}, {"client_id": "x"}, ["10"]]],
            "queue_pending": [[4, "p-wait1", {}, {}, []], [5, "p-wait2", {}, {}, []]]}
    queue = parse_queue(data)
    assert queue.running == ["p-run"] and queue.pending == ["p-wait1", "p-wait2"]
    assert not queue.empty
    assert parse_queue({"queue_running": [], "queue_pending": []}).empty
    assert parse_queue(None).empty and parse_queue({"queue_running": "junk"}).empty
