"""``provision session``: up, hold the tunnel until a deadline, then tear down.

``run_session`` is given ``bring_up`` and ``tear_down`` (``api`` binds them to ``up`` and
``down``), so this module knows the clock and the order of things, not how a node is set
up. While the tunnel is held it counts down, warns at the configured offsets, and on
Ctrl-C asks whether to tear down now or leave the node running. A dropped link is
re-established by the tunnel itself; a teardown that cannot reach the node is retried until
it can, and when the deadline passed while the link was down the report says so.
"""

from __future__ import annotations

import datetime
import time
from typing import Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict

from ..core.errors import ConnectError, ProvisionError
from .deadline import format_offset, pending_warnings
from .report import DownReport

RETRY_FOR = 3600.0  # how long a teardown keeps trying to reach the node
RETRY_MAX_DELAY = 15.0


class SessionEvent(BaseModel):
    """What the CLI shows while a session runs."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["ready", "tick", "warning", "deadline", "interrupted", "left-running",
                  "teardown", "retry", "late"]
    deadline: datetime.datetime
    remaining: float = 0.0
    message: str = ""
    url: Optional[str] = None


class SessionReport(BaseModel):
    """What ``provision session`` did; ``--json`` is this model's JSON."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    node: str
    deadline: datetime.datetime
    ended_by: Literal["deadline", "interrupt", "left-running"]
    late: bool = False  # the deadline passed while the link was down
    url: Optional[str] = None
    warnings: list[str] = []
    notes: list[str] = []
    up: Optional[Any] = None  # api.UpReport
    down: Optional[DownReport] = None


def link_up(tunnel) -> bool:
    """Return whether the tunnel's SSH connection is alive."""
    transport = getattr(getattr(tunnel, "node", None), "transport", None)
    return transport is None or bool(transport.is_active())


def hold_until(deadline: datetime.datetime, warn_before: list[datetime.timedelta], tunnel,
               on_event: Callable[[SessionEvent], None], ask: Callable[[], str], *,
               clock: Callable[[], float] = time.time,
               sleep: Callable[[float], None] = time.sleep,
               on_start: Optional[Callable[[], None]] = None) -> tuple[str, list[str]]:
    """Hold until ``deadline`` or Ctrl-C; return ("deadline" | "interrupt" | "leave", warnings).

    ``on_start`` runs first, already under the Ctrl-C handling (it announces the session).
    ``tunnel`` is not used here (the tunnel reconnects by itself; ``run_session`` reads its
    link at the end); fleets pass None.
    """
    start = datetime.datetime.fromtimestamp(clock(), tz=deadline.tzinfo)
    pending = pending_warnings(deadline, warn_before, start)
    given: list[str] = []
    end = deadline.timestamp()
    while True:
        try:
            if on_start is not None:
                announce, on_start = on_start, None
                announce()
            remaining = end - clock()
            if remaining <= 0:
                return "deadline", given
            while pending and remaining <= pending[0].total_seconds():
                offset = pending.pop(0)
                message = (f"{format_offset(offset)} left: at {deadline:%H:%M:%S} the outputs are "
                           "harvested and the node is torn down")
                given.append(message)
                on_event(SessionEvent(kind="warning", deadline=deadline, remaining=remaining,
                                      message=message))
            on_event(SessionEvent(kind="tick", deadline=deadline, remaining=remaining))
            sleep(min(1.0, max(remaining, 0.01)))
        except KeyboardInterrupt:
            choice = ask()
            return ("leave" if choice == "leave" else "interrupt"), given


def tear_down_when_reachable(tear_down: Callable[[], DownReport], deadline: datetime.datetime,
                             on_event: Callable[[SessionEvent], None], *,
                             clock: Callable[[], float] = time.time,
                             sleep: Callable[[float], None] = time.sleep,
                             retry_for: float = RETRY_FOR) -> tuple[DownReport, bool]:
    """Run ``tear_down``, retrying while the node cannot be reached; return (report,
    whether it had to wait for the link)."""
    started = clock()
    delay = 1.0
    waited = False
    while True:
        try:
            return tear_down(), waited
        except ConnectError as error:
            if clock() - started > retry_for:
                raise
            waited = True
            on_event(SessionEvent(kind="retry", deadline=deadline,
                                  message=f"cannot reach the node ({error}); trying again in "
                                          f"{delay:.0f} s"))
            sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY)


def run_session(node: str, deadline: datetime.datetime, *, warn_before: list[datetime.timedelta],
                bring_up: Callable[[Callable], Any], tear_down: Callable[[], DownReport],
                on_event: Callable[[SessionEvent], None], ask: Callable[[], str],
                clock: Callable[[], float] = time.time,
                sleep: Callable[[float], None] = time.sleep) -> SessionReport:
    """Bring the node up, hold it until ``deadline``, then tear it down (see module doc)."""
    held: dict[str, Any] = {}

    def hold(up_report, tunnel) -> None:
        held["url"] = tunnel.url

        def ready() -> None:
            on_event(SessionEvent(kind="ready", deadline=deadline, url=tunnel.url,
                                  remaining=deadline.timestamp() - clock()))

        held["end"], held["warnings"] = hold_until(deadline, warn_before, tunnel, on_event, ask,
                                                   clock=clock, sleep=sleep, on_start=ready)
        held["link_down"] = not link_up(tunnel)

    up_report = bring_up(hold)
    if "end" not in held:
        raise ProvisionError("ComfyUI was not launched, so there is no session to hold",
                           "run `provision up` to see why")
    base = {"node": node, "deadline": deadline, "url": held.get("url"),
            "warnings": held["warnings"], "up": up_report}
    if held["end"] == "leave":
        on_event(SessionEvent(kind="left-running", deadline=deadline,
                              message="the node is left running; end it with `provision down`"))
        return SessionReport(ended_by="left-running", notes=["the node was left running"], **base)
    ended_by: Literal["deadline", "interrupt"] = "deadline" if held["end"] == "deadline" else "interrupt"
    why = "the deadline is reached" if ended_by == "deadline" else "interrupted"
    on_event(SessionEvent(kind="teardown", deadline=deadline,
                          message=f"{why}: harvesting the outputs and tearing the node down"))
    down_report, waited = tear_down_when_reachable(tear_down, deadline, on_event, clock=clock,
                                                   sleep=sleep)
    late = ended_by == "deadline" and (held["link_down"] or waited)
    notes = []
    if late:
        at = datetime.datetime.fromtimestamp(clock(), tz=deadline.tzinfo)
        notes.append(f"the deadline ({deadline:%H:%M:%S}) passed while the link to the node was "
                     f"down; it was torn down at the first reconnect ({at:%H:%M:%S})")
        on_event(SessionEvent(kind="late", deadline=deadline, message=notes[-1]))
    return SessionReport(ended_by=ended_by, late=late, down=down_report, notes=notes, **base)
