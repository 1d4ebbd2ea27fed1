"""A fleet's recap: what counts as ok, the last-fleet.json file that --retry-failed reads,
and a session's up and down joined into one line per node."""

from __future__ import annotations

import datetime
import json

import pytest

from provisioner.core.errors import UsageError
from provisioner.fleet.report import failed_last_time, save_recap, session_report
from tests.unit.fleet.cases import report_of


def test_the_recap_records_failures_and_a_retry_keeps_the_untouched_nodes(tmp_path):
    fleet_path, recap = tmp_path / "fleet.yaml", tmp_path / ".provision" / "last-fleet.json"
    fleet_path.write_text("nodes: []\n")
    save_recap(report_of(fleet_path, {"a": "ok", "b": "failed", "c": "skipped"}), recap)
    assert failed_last_time(fleet_path, recap) == ["b", "c"]
    data = json.loads(recap.read_text())
    assert data["fleet"] == str(fleet_path.resolve()) and data["nodes"]["b"]["error"] == "connection refused"

    save_recap(report_of(fleet_path, {"b": "ok"}), recap)
    assert failed_last_time(fleet_path, recap) == ["c"]
    save_recap(report_of(fleet_path, {"c": "ok"}), recap)
    assert failed_last_time(fleet_path, recap) == []
    assert list(json.loads(recap.read_text())["nodes"]) == ["a", "b", "c"]


def test_retry_failed_needs_a_recap_of_the_same_fleet(tmp_path):
    recap = tmp_path / "last-fleet.json"
    with pytest.raises(UsageError, match="no recap"):
        failed_last_time(tmp_path / "fleet.yaml", recap)
    save_recap(report_of(tmp_path / "other.yaml", {"a": "failed"}), recap)
    with pytest.raises(UsageError, match="other.yaml"):
        failed_last_time(tmp_path / "fleet.yaml", recap)
    recap.write_text("{not json")
    with pytest.raises(UsageError, match="cannot read"):
        failed_last_time(tmp_path / "fleet.yaml", recap)


def test_a_report_is_ok_only_when_every_node_is():
    assert report_of("f", {"a": "ok", "b": "ok"}).ok
    assert not report_of("f", {"a": "ok", "b": "skipped"}).ok
    assert report_of("f", {"a": "ok", "b": "failed"}).names("failed") == ["b"]


DEADLINE = datetime.datetime(2025, 1, 1, 18, 0, tzinfo=datetime.timezone.utc)

# (the node's up, its down or None when the nodes were left running) -> its session line
SESSION_LINES = [
    ("ok", "ok", "ok", None),
    ("ok", "failed", "failed", "down: connection refused"),
    ("ok", None, "ok", None),
    ("failed", "ok", "failed", "up: connection refused"),
    ("failed", "failed", "failed", "up: connection refused"),  # the first failure is the reason
    ("skipped", None, "skipped", "up: connection refused"),
]


@pytest.mark.parametrize("up, down, status, error", SESSION_LINES)
def test_a_session_line_fails_on_the_first_phase_that_failed(up, down, status, error):
    ups = report_of("f", {"n1": up, "n2": "ok"})
    downs = report_of("f", {"n1": down, "n2": "ok"}, command="down") if down else None
    ended_by = "deadline" if downs else "left-running"
    joined = session_report(ups, downs, DEADLINE, ended_by, ["30m"])
    line = joined.nodes[0]
    assert (line.node, line.status, line.error) == ("n1", status, error)
    assert joined.command == "session" and [n.node for n in joined.nodes] == ["n1", "n2"]
    assert line.seconds == (2.0 if downs else 1.0), "up's time plus down's"
    assert joined.seconds == (4.0 if downs else 2.0)
    assert (line.report.ended_by, line.report.deadline, line.report.warnings) == \
        (ended_by, DEADLINE, ["30m"])
