"""``join``: wait for a step started in the background; its outcome becomes this step's.

A ``background: true`` step (the model download) is started and left running while the next
steps install; the ``join`` placed before the first step that needs its result waits for it.
It probes nothing and streams nothing of its own (the background step's progress goes on
arriving as that step's events): it is "ok" when nothing was started (the files were already
there), "changed" when what was started finished, and fails with the background step's error.
"""

from __future__ import annotations

import time
from typing import Literal, Optional

from .base import Change, Step, StepContext


class JoinStep(Step):
    kind: Literal["join"] = "join"
    step: str  # the name of the background step to wait for

    def describe(self) -> str:
        return self.description or f"wait for {self.step}, running in the background"

    def decide(self, output: Optional[str]) -> Optional[Change]:
        return None  # without the engine's jobs there is never anything to wait for

    def decide_live(self, ctx: StepContext, output: Optional[str]) -> Optional[Change]:
        if self.step not in ctx.jobs:
            return None
        return Change(f"{self.step} runs in the background until here")

    def apply(self, ctx: StepContext, change: Change) -> str:
        started = time.monotonic()
        ctx.jobs[self.step].wait()  # its detail is in its own result; its error becomes ours
        return f"waited {time.monotonic() - started:.1f}s for it"
