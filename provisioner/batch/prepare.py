"""Get one node ready for a batch over its SSH connection: its facts, ComfyUI's port and output
folder, the built-in workflow with the node's own model files, and ``/object_info`` for every
class the jobs use. Nothing is queued here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional

from ..comfy.client import ComfyClient, ComfyUnavailable
from ..comfy.prompts import fetch_object_info
from ..comfy.workflows import (
    DEFAULT_PROMPT,
    WorkflowFiles,
    default_steps,
    render_workflow,
    workflow_classes,
)
from ..core.config import NodeConfig
from ..core.errors import ServiceDown

PLACEHOLDER_PREFIX = "run/job"


@dataclasses.dataclass(frozen=True)
class Builtin:
    """The built-in Flux text-to-image workflow, as ``run`` was asked for it."""

    model: Optional[str] = None  # None: node.yaml's model:
    steps: Optional[int] = None  # None: the model's default
    width: int = 1024
    height: int = 1024
    prompt: str = ""
    seed: int = 1

    def model_for(self, cfg: NodeConfig) -> str:
        return self.model or cfg.model

    def render(self, model: str, files: WorkflowFiles) -> dict:
        return render_workflow(model, files, seed=self.seed, steps=self.steps or default_steps(model),
                               prompt=self.prompt or DEFAULT_PROMPT, width=self.width,
                               height=self.height, filename_prefix=PLACEHOLDER_PREFIX)

    def canonical(self, model: str) -> dict:
        """The workflow jobs are keyed and swept on: each node submits it with its own files,
        so a job is the same job whichever node (and quantization) makes it."""
        names = WorkflowFiles(unet=f"flux1-{model}", t5="t5xxl", clip_l="clip_l", vae="ae")
        return self.render(model, names)


@dataclasses.dataclass
class NodeSide:
    """One node, ready: where its ComfyUI is, what it submits, what it has."""

    name: str
    node: Any  # the open SSH connection
    cfg: NodeConfig
    port: int
    output_dir: str  # ComfyUI's output folder on the node
    base: Optional[dict]  # the built-in workflow with this node's files; None: the user's
    object_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    comfyui_version: Optional[str] = None


def prepare_node(name: str, node, cfg: NodeConfig, *, builtin: Optional[Builtin],
                 workflow: Optional[Mapping[str, Any]],
                 why_down: Callable[[Any], Optional[str]]) -> NodeSide:
    """Read what a batch needs from the node; raise ``ServiceDown`` (saying why) when
    ComfyUI does not run there."""
    from ..install.record import installed_port
    from ..node.facts import gather
    from ..node.layout import node_paths
    from ..node.state import read_state

    facts = gather(node, cfg.workdir)
    paths = node_paths(cfg, facts)
    state = read_state(node, paths.state_file)
    port = installed_port(state, cfg)
    client = ComfyClient(node, port, timeout=30)
    try:
        stats = client.system_stats()
    except ComfyUnavailable as error:
        why = why_down(facts) or f"nothing answers on the node's 127.0.0.1:{port} ({error})"
        raise ServiceDown(f"ComfyUI is not running on the node: {why}",
                          "start it with `provision up NODE.yaml` (or `provision restart NODE.yaml`), "
                          "then run the same `provision run` again") from None
    system = stats.get("system") or {}
    base = _builtin_for(node, cfg, facts, state, builtin) if builtin is not None else None
    graph = base if base is not None else dict(workflow or {})
    return NodeSide(name=name, node=node, cfg=cfg, port=port,
                    output_dir=_output_dir(system.get("argv") or [], paths.output), base=base,
                    object_info=fetch_object_info(client, workflow_classes(graph)),
                    comfyui_version=system.get("comfyui_version"))


def _builtin_for(node, cfg: NodeConfig, facts, state: dict, builtin: Builtin) -> dict:
    """Render the built-in workflow with the files ``up`` installed on this node."""
    from ..bench.run import installed_quality
    from ..install.catalog import load_catalog
    from ..install.sizing import SizingOptions, choose_models

    model = builtin.model_for(cfg)
    sizing = SizingOptions.from_config(cfg).model_copy(
        update={"model": model, "quality": installed_quality(state, model, cfg.quality)})
    plan = choose_models(facts, load_catalog(), sizing)
    return builtin.render(model, WorkflowFiles.from_plan(plan))


def _output_dir(argv: list, default: str) -> str:
    """ComfyUI's ``--output-directory`` from its command line, else the layout's folder."""
    args = [str(arg) for arg in argv]
    for index, arg in enumerate(args):
        if arg == "--output-directory" and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--output-directory="):
            return arg.split("=", 1)[1]
    return default
