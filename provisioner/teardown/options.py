"""What ``provision down`` is asked to do."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .cleanup import Wipe


class DownOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    wipe: Wipe = "none"
    keep_outputs_remote: bool = False
    discard_outputs: bool = False
    dry_run: bool = False
    force: bool = False  # interrupt the queue at once
    drain_timeout: float = 300.0
    interrupt_after_timeout: bool = False  # sessions: the rental ends, interrupt what is left
    lock_wait: int = 10
    break_lock: bool = False
