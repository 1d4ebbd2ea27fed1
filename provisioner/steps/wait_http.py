"""``wait_http``: wait until ComfyUI answers and is healthy (device, model files)."""

from __future__ import annotations

from typing import Literal, Optional

from ..errors import StepFailed
from .base import Change, Step, StepContext


class WaitHttpStep(Step):
    kind: Literal["wait_http"] = "wait_http"
    port: int
    device: str
    timeout: float = 180.0
    expect_files: list[str] = []

    def describe(self) -> str:
        return self.description or f"wait for ComfyUI on 127.0.0.1:{self.port} ({self.device})"

    def decide(self, output: Optional[str]) -> Optional[Change]:
        return Change("health is always checked")

    def apply(self, ctx: StepContext, change: Change) -> str:
        raise StepFailed(f"step {self.name}: health checks are not built yet",
                         "run up with --no-launch for now")
