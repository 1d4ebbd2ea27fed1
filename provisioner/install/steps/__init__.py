"""Step kinds: one module each; a step's YAML ``kind`` is its module name."""

from __future__ import annotations

from .base import Change, Step, StepContext
from .command import CommandStep
from .download import DownloadStep
from .git import GitStep
from .join import JoinStep
from .pip import PipStep
from .service import ServiceStep
from .smoke import SmokeStep
from .template import TemplateStep
from .venv import VenvStep
from .wait_http import WaitHttpStep

STEP_KINDS: dict[str, type[Step]] = {
    "command": CommandStep,
    "venv": VenvStep,
    "pip": PipStep,
    "git": GitStep,
    "template": TemplateStep,
    "download": DownloadStep,
    "join": JoinStep,
    "service": ServiceStep,
    "wait_http": WaitHttpStep,
    "smoke": SmokeStep,
}

__all__ = ["Change", "Step", "StepContext", "STEP_KINDS"]
