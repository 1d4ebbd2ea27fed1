"""Where everything lives on the node, and which Python we use: pure, from config + facts."""

from __future__ import annotations

import posixpath
import shlex
from typing import Optional

from pydantic import BaseModel, ConfigDict

from ..core.config import NodeConfig
from .facts import NodeFacts

HOMEBREW_PYTHON = "/opt/homebrew/opt/python@3.12/bin/python3.12"
HOMEBREW_BREW = "/opt/homebrew/bin/brew"


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


class PythonChoice(BaseModel):
    """The interpreter the venv is built from, and how to get it when it is missing."""

    model_config = ConfigDict(frozen=True)

    path: str
    version: str
    present: bool
    install_cmd: Optional[str] = None  # a shell command that installs it, when missing


def choose_python(cfg: NodeConfig, facts: NodeFacts) -> PythonChoice:
    """Pick the newest torch-compatible interpreter (3.10-3.12); else plan to install one."""
    wanted = cfg.python.version
    for interpreter in facts.usable_pythons:
        if wanted == "auto" or interpreter.version.startswith(wanted + ".") or \
                interpreter.version == wanted:
            return PythonChoice(path=interpreter.path, version=interpreter.version, present=True)
    version = "3.12" if wanted == "auto" else wanted
    if facts.platform == "macos":
        formula = f"python@{version}"
        brew = facts.homebrew or HOMEBREW_BREW
        python_path = f"/opt/homebrew/opt/{formula}/bin/python{version}"
        if facts.homebrew:
            return PythonChoice(path=python_path, version=version, present=False,
                                install_cmd=f"{shlex.quote(brew)} install {formula}")
        why = (f"no Python {version} (torch 2.3.1 needs 3.10-3.12) and no Homebrew on this Mac; "
               "install Homebrew (https://brew.sh) and run: "
               f"{HOMEBREW_BREW} install {formula}")
        return PythonChoice(path=python_path, version=version, present=False,
                            install_cmd=f"echo {shlex.quote(why)} >&2; exit 1")
    why = (f"no Python {version} on this node (torch 2.3.1 needs 3.10-3.12); install it, e.g.: "
           f"sudo apt-get install python{version} python{version}-venv")
    return PythonChoice(path=f"/usr/bin/python{version}", version=version, present=False,
                        install_cmd=f"echo {shlex.quote(why)} >&2; exit 1")
