"""What ``provision down`` reports: progress as it goes, the ``DownReport`` at the end, and
``TeardownIncomplete``, which carries the report when something is left undone."""

from __future__ import annotations

from typing import Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict

from ..core.errors import ProvisionError
from ..core.report import NodeReport
from .cleanup import Removal, Wipe
from .harvest import HarvestEvent, HarvestFailure, PulledFile
from .harvest_plan import Refused


class QueueReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    answered: bool = False  # ComfyUI answered on its port
    running: list[str] = []
    pending: list[str] = []
    waited_seconds: float = 0.0
    interrupted: list[str] = []
    dropped: list[str] = []


class ServiceReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    was_loaded: bool
    was_running: bool
    stopped: bool
    port: int
    port_free: Optional[bool] = None


class PlannedFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    file: str
    bytes: int
    reason: str


class HarvestReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    dest: str
    files_on_node: int
    to_pull: list[PlannedFile] = []  # dry run: what would be copied
    pulled: list[PulledFile] = []
    bytes_pulled: int = 0
    skipped: int = 0  # already on the laptop, identical
    failed: list[HarvestFailure] = []
    refused: list[Refused] = []
    manifest: Optional[str] = None
    seconds: float = 0.0
    ok: bool = True


class SecretsReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    removed: list[str] = []  # credential files removed
    check: Literal["clean", "found", "not-checked"] = "not-checked"
    found_in: list[str] = []
    files_searched: int = 0
    bytes_searched: int = 0
    not_searched: list[str] = []
    note: Optional[str] = None


class DownReport(NodeReport):
    """What ``provision down`` did (or, dry, would do); ``--json`` is this model's JSON."""

    dry_run: bool
    wipe: Wipe
    nothing_to_do: bool = False
    notes: list[str] = []
    queue: Optional[QueueReport] = None
    service: Optional[ServiceReport] = None
    harvest: Optional[HarvestReport] = None
    removals: list[Removal] = []
    secrets: Optional[SecretsReport] = None
    ok: bool = True
    problems: list[str] = []
    duration: float = 0.0
    cost: dict[str, int] = {}


class TeardownEvent(BaseModel):
    """Progress for the CLI: a note to show, or harvest progress."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["note", "harvest"]
    message: str = ""
    harvest: Optional[HarvestEvent] = None


TeardownSink = Callable[[TeardownEvent], None]


class TeardownIncomplete(ProvisionError):
    """``down`` could not finish everything; ``.report`` says what it did. Re-run resumes."""

    def __init__(self, message: str, hint: str, report: Optional[DownReport] = None) -> None:
        super().__init__(message, hint)
        self.report = report
