"""``plan``: what ``up`` would do on a node, from its facts, without changing it.

Also the pieces other commands share with it: the playbook's steps as ``up`` renders them for
a node (``node_steps``), the platform check, and the SSH cost every report carries.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from ..core.config import NodeConfig, load_node
from ..core.errors import ConfigError
from ..core.report import NodeReport
from ..install.playbook import load_steps
from ..install.sizing import ModelPlan
from ..node.facts import NodeFacts
from ..node.remote import NodeStats
from .connection import open_node


class StepPreview(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    description: str
    background: bool = Field(False, description="starts, then runs beside the next steps")
    waits_for: Optional[str] = Field(None, description="a join: the background step it waits for")


class RunCost(BaseModel):
    """SSH cost of a command: held to a budget by tests and benchmarks."""

    model_config = ConfigDict(frozen=True)

    connections: int = 0
    commands: int = 0
    transfers: int = 0

    @classmethod
    def of(cls, stats: NodeStats | None) -> "RunCost":
        if stats is None:
            return cls()
        return cls(connections=stats.connections, commands=stats.commands, transfers=stats.transfers)


class PlanReport(NodeReport):
    """Everything ``provision plan`` shows; ``--json`` is this model's JSON."""

    facts_source: Literal["node", "assumed"]
    facts: NodeFacts
    plan: ModelPlan
    steps: list[StepPreview]
    cost: RunCost
    compatibility: list[str] = Field(
        default_factory=list, description="what upstream knows about this software set on this node")
    node_warnings: list[str] = Field(
        default_factory=list, description="the node's own settings that can cost the rental "
        "(FileVault, sleep), each with its fix")


def plan(config_path: str, *, memory_bytes: Optional[int] = None,
         accept_new_host_key: bool = False, config: Optional[NodeConfig] = None,
         connection=None) -> PlanReport:
    """Say what ``up`` would do: facts, model choice with reasons, memory, disk, steps.

    With ``memory_bytes`` it runs offline on assumed facts; else it connects once and reads
    the node's facts in one round trip. A fleet passes ``config`` (then ``config_path`` only
    names the node in errors) and its open ``connection``.
    """
    from ..install.catalog import load_catalog
    from ..install.compat import sequoia_warning
    from ..install.sizing import SizingOptions, choose_models
    from ..node.advice import node_warnings
    from ..node.facts import assumed_facts, gather

    cfg = config or load_node(config_path)
    stats = None
    if memory_bytes is not None:
        platform = "linux" if cfg.platform == "linux" else "macos"
        facts = assumed_facts(memory_bytes, platform)
    else:
        with open_node(cfg, accept_new_host_key=accept_new_host_key, reuse=connection) as node:
            facts = gather(node, cfg.workdir)
            stats = node.stats
        check_platform(config_path, cfg, facts)
        check_tools(cfg, facts)
    model_plan = choose_models(facts, load_catalog(), SizingOptions.from_config(cfg))
    return PlanReport(
        node=cfg.name, host=cfg.host, facts_source="assumed" if facts.assumed else "node",
        facts=facts, plan=model_plan, steps=preview_steps(cfg, facts, model_plan),
        cost=RunCost.of(stats),
        compatibility=sequoia_warning(facts.platform, facts.os_version, cfg.torch.torch,
                                      [item.name for item in model_plan.files]),
        node_warnings=node_warnings(facts),
    )


def check_platform(config_path: str, cfg: NodeConfig, facts: NodeFacts) -> None:
    """Refuse when node.yaml pins a platform the node does not run."""
    if cfg.platform != "auto" and cfg.platform != facts.platform:
        raise ConfigError(
            f"{config_path}: platform: says {cfg.platform}, but the node runs {facts.platform} "
            f"({facts.os_name} {facts.os_version})",
            "set platform: auto, or point host: at the right node",
        )


def check_tools(cfg: NodeConfig, facts: NodeFacts) -> None:
    """Refuse a node where `up` can get neither a Python nor git (toolchain.check_toolchain)."""
    from ..install.playbook import pip_options
    from ..install.toolchain import check_toolchain, choose_git, choose_python

    check_toolchain(f"{cfg.name} ({cfg.host})", facts,
                    choose_python(cfg, facts, pip_options(cfg)), choose_git(facts))


def preview_steps(cfg: NodeConfig, facts: NodeFacts, model_plan) -> list[StepPreview]:
    """List the steps ``up`` would run for this node, in order (and which run in the background)."""
    from ..install.steps.join import JoinStep

    return [StepPreview(name=step.name, kind=step.kind, description=step.describe(),
                        background=step.background,
                        waits_for=step.step if isinstance(step, JoinStep) else None)
            for step in load_steps(cfg, facts, model_plan)]


def node_steps(cfg: NodeConfig, facts: NodeFacts) -> dict[str, Any]:
    """Return the playbook's steps by name, as ``up`` renders them for this node."""
    from ..install.catalog import load_catalog
    from ..install.sizing import SizingOptions, choose_models

    model_plan = choose_models(facts, load_catalog(), SizingOptions.from_config(cfg))
    return {step.name: step for step in load_steps(cfg, facts, model_plan)}
