"""When a session ends, and when to warn: pure functions over times the user types."""

from __future__ import annotations

import datetime
import re

_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
_CLOCK = re.compile(r"^(?P<h>\d{1,2}):(?P<m>\d{2})$")


def parse_duration(text: str) -> datetime.timedelta:
    """Parse ``3h``, ``45m``, ``20s`` or ``1h30m`` into a timedelta (more than zero)."""
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or not match or not any(match.groupdict().values()):
        raise ValueError(f"{text!r} is not a duration (write e.g. 3h, 45m, 20s or 1h30m)")
    parts = {key: int(value or 0) for key, value in match.groupdict().items()}
    value = datetime.timedelta(hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    if value <= datetime.timedelta(0):
        raise ValueError(f"{text!r} is not a duration longer than zero")
    return value


def parse_until(text: str, now: datetime.datetime) -> datetime.datetime:
    """Return the next ``HH:MM`` (24-hour, local time) after ``now``: today, else tomorrow.

    ``now`` must be timezone-aware (local); so is the result.
    """
    match = _CLOCK.match(text.strip())
    if not match or int(match["h"]) > 23 or int(match["m"]) > 59:
        raise ValueError(f"{text!r} is not a time of day (write HH:MM, 24-hour, e.g. 18:00)")
    clock = datetime.time(int(match["h"]), int(match["m"]))
    day = now.date()
    for _ in range(2):
        candidate = datetime.datetime.combine(day, clock).astimezone(now.tzinfo)
        if candidate > now:
            return candidate
        day += datetime.timedelta(days=1)
    return candidate


def parse_warnings(text: str) -> list[datetime.timedelta]:
    """Parse ``15m,5m`` (or ``none``) into warning offsets, longest first, without repeats."""
    if text.strip().lower() in ("", "none"):
        return []
    offsets = {parse_duration(part) for part in text.split(",") if part.strip()}
    return sorted(offsets, reverse=True)


def pending_warnings(deadline: datetime.datetime, warn_before: list[datetime.timedelta],
                     now: datetime.datetime) -> list[datetime.timedelta]:
    """Return the warnings still ahead at ``now`` (their time is later than now), longest first."""
    return sorted((w for w in set(warn_before) if deadline - w > now), reverse=True)


def format_remaining(seconds: float) -> str:
    """Format a countdown: ``1:02:03``, ``4:05`` or ``0:09``."""
    total = max(0, int(seconds + 0.999))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_offset(offset: datetime.timedelta) -> str:
    """Format a warning offset as the user wrote it: ``15m``, ``1h30m``, ``20s``."""
    total = int(offset.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (secs, "s"))
                   if value) or "0s"
