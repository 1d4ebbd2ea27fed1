"""``service``: ComfyUI as a supervised service (launchd on macOS, systemd --user on Linux)."""

from __future__ import annotations

from typing import Literal, Optional

from ..errors import StepFailed
from .base import Change, Step, StepContext


class ServiceStep(Step):
    kind: Literal["service"] = "service"
    label: str
    argv: list[str]
    workdir: str
    log: str
    env: dict[str, str] = {}

    def describe(self) -> str:
        return self.description or f"run {self.label}"

    def decide(self, output: Optional[str]) -> Optional[Change]:
        return Change("the service is not managed yet")

    def apply(self, ctx: StepContext, change: Change) -> str:
        raise StepFailed(f"step {self.name}: launching ComfyUI is not built yet",
                         "run up with --no-launch for now")
