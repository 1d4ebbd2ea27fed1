"""What every step kind shares: the model, the change it proposes, the context it acts in.

A step never acts without comparing first: ``probe`` returns a read-only shell snippet (the
engine runs the probes of many steps in one round trip), ``decide`` turns its output into a
``Change`` or ``None`` ("nothing to do"), and ``apply`` makes that change.

A step marked ``background`` is not applied but ``start``-ed: it returns a ``Job`` at once,
the next steps run meanwhile, and a ``join`` step waits for it (the engine keeps the jobs).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Protocol

from pydantic import BaseModel, ConfigDict, model_validator

from ...node.layout import NodePaths


@dataclasses.dataclass(frozen=True)
class Change:
    """A difference between the node and the wanted state, and why it matters."""

    reason: str
    data: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class StepContext:
    """What ``apply`` may use: the node, its paths, and a sink for live output lines."""

    node: Any  # remote.Node
    paths: NodePaths
    on_output: Callable[[str], None] = lambda line: None
    on_progress: Callable[[dict], None] = lambda event: None  # structured progress (downloads)
    secrets: dict = dataclasses.field(default_factory=dict)  # never logged, never stored
    jobs: dict = dataclasses.field(default_factory=dict)  # background steps by name: {name: Job}
    records: dict = dataclasses.field(default_factory=dict)  # what steps report to the run, by name


class Job(Protocol):
    """A change left running on the node by ``Step.start``."""

    def wait(self) -> str:
        """Block until it ends; return the detail for the recap, or raise ``ProvisionError``."""
        ...

    def stop(self) -> None:
        """Ask it to stop now (``wait`` then returns soon, raising); what it did is kept."""
        ...


class Step(BaseModel):
    """One declarative step of a playbook."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: str
    description: Optional[str] = None
    when: bool = True
    background: bool = False  # started, not applied: the next steps run meanwhile; see join
    # False when what this step changes is nothing a later step's probe reads (e.g. empty
    # folders): the engine then goes on without a new round of checks.
    reprobe: bool = True

    @model_validator(mode="after")
    def _can_run_in_the_background(self) -> "Step":
        if self.background and type(self).start is Step.start:
            raise ValueError(f"background: a {self.kind} step cannot run in the background")
        return self

    def describe(self) -> str:
        """Return a one-line summary for plans and recaps."""
        return self.description or self.kind

    def probe(self) -> Optional[str]:
        """Return a read-only POSIX sh snippet whose stdout ``decide`` reads, or None."""
        return None

    def decide(self, output: Optional[str]) -> Optional[Change]:
        """Return the change needed given the probe's output, or None when already right."""
        raise NotImplementedError

    def decide_live(self, ctx: StepContext, output: Optional[str]) -> Optional[Change]:
        """Decide with the node at hand; for checks a shell probe cannot make (HTTP)."""
        return self.decide(output)

    def apply(self, ctx: StepContext, change: Change) -> str:
        """Make ``change`` on the node; return a short detail for the recap."""
        raise NotImplementedError

    def start(self, ctx: StepContext, change: Change) -> Job:
        """Start making ``change`` and return at once (kinds that can run in the background)."""
        raise NotImplementedError
