"""Step 3 of ``down``: let ComfyUI's queue drain, or drop and interrupt what is in it."""

from __future__ import annotations

import time
from typing import Callable

from ..comfy.client import ComfyClient, ComfyUnavailable, QueueState, interrupt_all, read_queue
from .options import DownOptions
from .report import DownReport, QueueReport, TeardownIncomplete

INTERRUPT_WAIT = 30.0  # after --force, how long the queue may take to empty


def settle_queue(client: ComfyClient, options: DownOptions, note: Callable[[str], None],
                 partial: Callable[..., DownReport]) -> QueueReport:
    """Wait for ComfyUI's queue to drain; with ``force`` (or once the wait is over and
    ``interrupt_after_timeout``) drop the pending prompts and interrupt the running one."""
    try:
        state = read_queue(client)
    except ComfyUnavailable:
        return QueueReport(answered=False)
    first = QueueReport(answered=True, running=state.running, pending=state.pending)
    if state.empty or options.dry_run:
        return first
    started = time.monotonic()
    if not options.force:
        note(f"waiting for ComfyUI's queue to drain: {_describe_queue(state)} "
             f"(up to {options.drain_timeout:.0f} s; --force interrupts)")
        last_note = started
        while not state.empty and time.monotonic() - started < options.drain_timeout:
            time.sleep(1.0)
            try:
                state = read_queue(client)
            except ComfyUnavailable:
                state = QueueState()
            if not state.empty and time.monotonic() - last_note >= 30:
                note(f"still waiting: {_describe_queue(state)}")
                last_note = time.monotonic()
        waited = time.monotonic() - started
        if state.empty:
            return first.model_copy(update={"waited_seconds": waited})
        if not options.interrupt_after_timeout:
            report = first.model_copy(update={"waited_seconds": waited})
            raise TeardownIncomplete(
                f"ComfyUI's queue did not drain within {options.drain_timeout:.0f} s "
                f"({_describe_queue(state)}); nothing was stopped or deleted",
                "wait and re-run, raise --drain-timeout, or re-run with --force to interrupt them",
                partial(queue=report, problems=["the queue did not drain"]))
        note(f"the wait is over ({waited:.0f} s)")
    note(f"interrupting ComfyUI: {_describe_queue(state)}")
    try:
        interrupt_all(client)
        deadline = time.monotonic() + INTERRUPT_WAIT
        while time.monotonic() < deadline and not read_queue(client).empty:
            time.sleep(0.5)
    except ComfyUnavailable:
        pass
    return first.model_copy(update={"waited_seconds": time.monotonic() - started,
                                    "interrupted": state.running, "dropped": state.pending})


def _describe_queue(state: QueueState) -> str:
    running = ", ".join(f"prompt {pid}" for pid in state.running) or "nothing"
    return f"running {running}; {len(state.pending)} waiting"
