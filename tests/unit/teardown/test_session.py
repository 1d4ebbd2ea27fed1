"""The session's clock (a fake one): countdown, warnings, Ctrl-C, and teardown retries."""

from __future__ import annotations

import datetime

import pytest

from provisioner.core.errors import ConnectError
from provisioner.teardown.session import hold_until, run_session, tear_down_when_reachable

td = datetime.timedelta
START = datetime.datetime(2025, 6, 15, 17, 0).astimezone()


class FakeClock:
    """time.time and time.sleep over a fake timeline; raises KeyboardInterrupt at ``interrupt_at``."""

    def __init__(self, start: datetime.datetime, interrupt_at: float | None = None) -> None:
        self.now = start.timestamp()
        self.start = self.now
        self.interrupt_at = interrupt_at

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.interrupt_at is not None and self.now - self.start >= self.interrupt_at:
            self.interrupt_at = None
            raise KeyboardInterrupt


def test_it_holds_until_the_deadline_and_warns_once_per_offset_in_order():
    clock = FakeClock(START)
    deadline = START + td(minutes=20)
    events = []
    end, given = hold_until(deadline, [td(minutes=15), td(minutes=5), td(hours=1)], None,
                            events.append, lambda: "teardown", clock=clock.time, sleep=clock.sleep)
    assert end == "deadline"
    assert clock.now >= deadline.timestamp()
    warnings = [(e.message, round(e.remaining)) for e in events if e.kind == "warning"]
    assert [w[0].split(" ")[0] for w in warnings] == ["15m", "5m"], "1h was already past at start"
    assert [w[1] for w in warnings] == [900, 300]
    assert given == [w[0] for w in warnings]
    ticks = [e for e in events if e.kind == "tick"]
    assert ticks and all(a.remaining > b.remaining for a, b in zip(ticks, ticks[1:]))


@pytest.mark.parametrize("answer, expected", [("teardown", "interrupt"), ("leave", "leave")])
def test_ctrl_c_asks_what_to_do(answer, expected):
    clock = FakeClock(START, interrupt_at=30)
    asked = []
    end, _ = hold_until(START + td(hours=1), [], None, lambda e: None,
                        lambda: asked.append(1) or answer, clock=clock.time, sleep=clock.sleep)
    assert end == expected and asked == [1]
    assert clock.now - clock.start < 60


def test_a_teardown_is_retried_until_the_node_answers():
    clock = FakeClock(START)
    calls = []

    def tear_down():
        calls.append(clock.now)
        if len(calls) < 4:
            raise ConnectError("connection refused by node")
        return "report"

    events = []
    report, waited = tear_down_when_reachable(tear_down, START, events.append, clock=clock.time,
                                              sleep=clock.sleep)
    assert report == "report" and waited and len(calls) == 4
    assert [round(b - a) for a, b in zip(calls, calls[1:])] == [1, 2, 4], "backs off"
    assert [e.kind for e in events] == ["retry"] * 3


def test_a_teardown_gives_up_after_its_retry_window():
    clock = FakeClock(START)

    def tear_down():
        raise ConnectError("connection refused by node")

    with pytest.raises(ConnectError):
        tear_down_when_reachable(tear_down, START, lambda e: None, clock=clock.time,
                                 sleep=clock.sleep, retry_for=60)


class DeadTunnel:
    url = "http://127.0.0.1:18188"

    class node:  # noqa: N801 - mimics SSHNode.transport
        class transport:  # noqa: N801
            @staticmethod
            def is_active():
                return False


def test_a_deadline_passed_while_the_link_was_down_is_reported_as_late():
    clock = FakeClock(START)
    deadline = START + td(seconds=20)

    def bring_up(hold):
        hold("up-report", DeadTunnel())
        return "up-report"

    events = []
    report = run_session("n1", deadline, warn_before=[], bring_up=bring_up,
                         tear_down=lambda: None, on_event=events.append, ask=lambda: "teardown",
                         clock=clock.time, sleep=clock.sleep)
    assert report.ended_by == "deadline" and report.late
    assert "passed while the link to the node was down" in report.notes[0]
    assert [e.kind for e in events if e.kind != "tick"] == ["ready", "teardown", "late"]


def test_leaving_the_node_running_skips_the_teardown():
    clock = FakeClock(START, interrupt_at=5)

    def bring_up(hold):
        hold("up-report", DeadTunnel())
        return "up-report"

    def tear_down():
        raise AssertionError("must not tear down")

    report = run_session("n1", START + td(hours=1), warn_before=[], bring_up=bring_up,
                         tear_down=tear_down, on_event=lambda e: None, ask=lambda: "leave",
                         clock=clock.time, sleep=clock.sleep)
    assert report.ended_by == "left-running" and report.down is None


def test_ctrl_c_while_the_session_is_announced_still_asks():
    clock = FakeClock(START)

    def announce():
        raise KeyboardInterrupt

    end, _ = hold_until(START + td(hours=1), [], None, lambda e: None, lambda: "teardown",
                        clock=clock.time, sleep=clock.sleep, on_start=announce)
    assert end == "interrupt"
