"""What ``provision run`` reports: the batch, each node's share and each job that failed.
Its JSON is ``run --json`` (docs/run.md)."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, computed_field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class NodeShare(_Model):
    """What one node did: jobs, images, its speed, and why it stopped if it did."""

    node: str
    host: str
    status: str  # ok | left (died mid-batch) | unavailable (never started) | stopped
    jobs: int = 0
    images: int = 0
    failed: int = 0
    handed_back: int = 0  # its unfinished jobs, given to the other nodes
    steps_per_s: Optional[float] = None
    jobs_per_s: Optional[float] = None
    error: Optional[str] = None
    hint: Optional[str] = None


class JobLine(_Model):
    """A job as planned (``--dry-run``), or one that failed or never ran."""

    job: int
    key: str
    inputs: dict[str, Any]
    status: str  # todo | done (in the manifest) | failed | unrun
    node: Optional[str] = None
    error: Optional[str] = None


class BatchReport(_Model):
    command: str = "run"
    source: str  # the node.yaml or fleet.yaml
    workflow: str  # a path, or "built-in flux-dev"
    out: str
    manifest_json: str
    manifest_csv: str
    dry_run: bool = False
    jobs: int  # in the batch
    skipped: int = 0  # already in the manifest
    done: int = 0
    failed: int = 0
    unrun: int = 0  # no node was left to run them, or the batch was stopped
    requeued: int = 0  # handed from a node that left to another
    images: int = 0
    seconds: float = 0.0
    jobs_per_s: Optional[float] = None
    nodes: list[NodeShare] = []
    problems: list[JobLine] = []  # failed and unrun jobs
    planned: list[JobLine] = []  # --dry-run: every job and whether it would run

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """Every job is done (or was already), and some node ran."""
        return not self.failed and not self.unrun and any(n.status != "unavailable" for n in self.nodes)
