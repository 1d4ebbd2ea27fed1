"""Where everything lives on the node: pure, from config + facts."""

from __future__ import annotations

import posixpath

from pydantic import BaseModel, ConfigDict

from ..core.config import NodeConfig
from .facts import NodeFacts


class NodePaths(BaseModel):
    """Absolute paths on the node; everything the tool creates is under ``workdir``."""

    model_config = ConfigDict(frozen=True)

    workdir: str
    venv: str
    venv_python: str
    comfyui: str
    custom_nodes: str
    gguf_node: str
    models: str
    output: str
    user_dir: str
    state_dir: str
    state_file: str
    lock_dir: str
    logs: str
    comfyui_log: str
    run_dir: str
    constraints: str
    token_file: str
    downloads: str


def expand_home(path: str, home: str) -> str:
    """Expand a leading ``~`` with the node's home (never via the remote shell)."""
    if path == "~":
        return home
    if path.startswith("~/"):
        return posixpath.join(home, path[2:])
    if not path.startswith("/"):
        return posixpath.join(home, path)
    return path


def node_paths(cfg: NodeConfig, facts: NodeFacts) -> NodePaths:
    """Return every path ``up``, ``status`` and ``down`` use on this node."""
    workdir = posixpath.normpath(expand_home(cfg.workdir, facts.home))
    join = posixpath.join
    comfyui = join(workdir, "ComfyUI")
    state_dir = join(workdir, "state")
    logs = join(workdir, "logs")
    return NodePaths(
        workdir=workdir,
        venv=join(workdir, "venv"),
        venv_python=join(workdir, "venv", "bin", "python"),
        comfyui=comfyui,
        custom_nodes=join(comfyui, "custom_nodes"),
        gguf_node=join(comfyui, "custom_nodes", "ComfyUI-GGUF"),
        models=join(comfyui, "models"),
        output=join(comfyui, "output"),
        user_dir=join(comfyui, "user"),
        state_dir=state_dir,
        state_file=join(state_dir, "state.json"),
        lock_dir=join(state_dir, "lock"),
        logs=logs,
        comfyui_log=join(logs, "comfyui.log"),
        run_dir=join(state_dir, "run"),
        constraints=join(state_dir, "constraints.txt"),
        token_file=join(state_dir, "hf_token"),
        downloads=join(workdir, "downloads"),
    )
