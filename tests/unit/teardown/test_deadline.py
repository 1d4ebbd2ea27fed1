"""When a session ends and when it warns (pure)."""

from __future__ import annotations

import datetime

import pytest

from provisioner.teardown.deadline import (
    format_offset,
    format_remaining,
    parse_duration,
    parse_until,
    parse_warnings,
    pending_warnings,
)

td = datetime.timedelta


@pytest.mark.parametrize("text, expected", [
    ("3h", td(hours=3)), ("45m", td(minutes=45)), ("20s", td(seconds=20)),
    ("1h30m", td(hours=1, minutes=30)), ("1h0m5s", td(hours=1, seconds=5)), (" 2H ", td(hours=2)),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3", "3x", "h", "0s", "-5m", "1.5h", "30m1h", "m5"])
def test_bad_durations_say_how_to_write_one(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def local(hour, minute, day=15):
    return datetime.datetime(2025, 6, day, hour, minute).astimezone()


def test_until_later_today_is_today():
    assert parse_until("18:00", local(9, 30)) == local(18, 0)


def test_until_already_past_is_tomorrow():
    assert parse_until("08:15", local(9, 30)) == local(8, 15, day=16)
    assert parse_until("09:30", local(9, 30)) == local(9, 30, day=16), "exactly now is past"


@pytest.mark.parametrize("text", ["25:00", "18:60", "18", "6pm", "18:0", "", "18:00:00"])
def test_bad_times_of_day(text):
    with pytest.raises(ValueError, match="HH:MM"):
        parse_until(text, local(9, 30))


def test_warnings_are_parsed_longest_first_without_repeats():
    assert parse_warnings("5m,15m,5m") == [td(minutes=15), td(minutes=5)]
    assert parse_warnings("none") == [] and parse_warnings("") == []
    with pytest.raises(ValueError):
        parse_warnings("15m,soon")


def test_only_warnings_still_ahead_are_pending():
    deadline = local(18, 0)
    offsets = [td(minutes=15), td(minutes=5), td(hours=2)]
    assert pending_warnings(deadline, offsets, local(17, 50)) == [td(minutes=5)]
    assert pending_warnings(deadline, offsets, local(12, 0)) == [td(hours=2), td(minutes=15), td(minutes=5)]
    assert pending_warnings(deadline, offsets, local(17, 59)) == []


@pytest.mark.parametrize("seconds, text", [(3723, "1:02:03"), (245, "4:05"), (9, "0:09"),
                                           (8.2, "0:09"), (0, "0:00"), (-3, "0:00")])
def test_format_remaining(seconds, text):
    assert format_remaining(seconds) == text


def test_format_offset():
    assert [format_offset(o) for o in (td(minutes=15), td(hours=1, minutes=30), td(seconds=20))] == \
        ["15m", "1h30m", "20s"]
