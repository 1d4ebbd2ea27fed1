"""The tools `up` needs before anything else, Python and git, and how it gets them: pure.

Rented Macs differ (FACTS.md "Real rented Macs"): AWS EC2 Mac images ship Homebrew but no
Command Line Tools, Scaleway ships Xcode and MacPorts but no Homebrew, Homebrew's own
``python3`` is 3.13 or newer (no torch 2.3.1 wheel). So:

- **Python 3.10-3.12**: one the facts found anywhere (PATH, Homebrew's versioned formulae,
  MacPorts, python.org, pyenv, uv); else Homebrew's ``python@3.12`` when Homebrew is there
  (the interpreter Mac guides for ComfyUI use, updated with the node's other tools); else,
  with the developer tools present (Apple's ``python3`` 3.9 can run pip), the pinned uv from
  the package index and ``uv python install``: a managed build in the work folder, no
  Homebrew and no root (it downloads from GitHub).
- **git**: the first that works; else Homebrew's (``brew install git``). Without the
  developer tools macOS's /usr/bin/git is a stub that asks to install them: never used.

A Mac with none of Homebrew, the developer tools and a usable Python or git cannot be set up
over SSH: ``check_toolchain`` refuses before anything is changed, naming the ways out.
"""

from __future__ import annotations

import posixpath
from typing import Optional

from pydantic import BaseModel, ConfigDict

from ..core.config import NodeConfig
from ..core.errors import NodeUnsuitable
from ..node.facts import NodeFacts
from ..node.shell import q

# brew install without its minutes-long auto-update (the formula API is fetched anyway) and
# without the hints meant for a terminal.
_QUIET_BREW = "HOMEBREW_NO_AUTO_UPDATE=1 HOMEBREW_NO_INSTALL_CLEANUP=1 HOMEBREW_NO_ENV_HINTS=1"
APPLE_PYTHON = "/usr/bin/python3"  # the developer tools' 3.9: enough to pip-install uv


class ToolChoice(BaseModel):
    """A tool `up` uses: where it is (or will be), and how it gets there when missing."""

    model_config = ConfigDict(frozen=True)

    path: str
    present: bool
    how: str = "found"  # what installs it, for plans and recaps
    install_cmd: Optional[str] = None  # a shell command that installs it, when missing


class PythonChoice(ToolChoice):
    """The interpreter the venv is built from."""

    version: str


def brew_prefix(brew: str) -> str:
    """Homebrew's prefix from its ``brew``: /opt/homebrew/bin/brew -> /opt/homebrew."""
    return posixpath.dirname(posixpath.dirname(brew))


def choose_python(cfg: NodeConfig, facts: NodeFacts, pip_options: str = "") -> PythonChoice:
    """Pick the newest torch-compatible interpreter (3.10-3.12); else plan how to get one."""
    from ..node.layout import node_paths
    from .steps.installer import UV_VERSION, install_uv_command, uv_binary

    wanted = cfg.python.version
    for interpreter in facts.usable_pythons:
        if wanted == "auto" or interpreter.version.startswith(wanted + ".") or \
                interpreter.version == wanted:
            return PythonChoice(path=interpreter.path, version=interpreter.version, present=True)
    version = "3.12" if wanted == "auto" else wanted
    if facts.platform == "linux":
        why = (f"no Python {version} on this node (torch 2.3.1 needs 3.10-3.12); install it, e.g.: "
               f"sudo apt-get install python{version} python{version}-venv")
        return PythonChoice(path=f"/usr/bin/python{version}", version=version, present=False,
                            how="not installable by provision",
                            install_cmd=f"echo {q(why)} >&2; exit 1")
    if facts.homebrew:
        formula = f"python@{version}"
        return PythonChoice(
            path=f"{brew_prefix(facts.homebrew)}/opt/{formula}/bin/python{version}",
            version=version, present=False, how=f"brew install {formula}",
            install_cmd=f"{_QUIET_BREW} {q(facts.homebrew)} install {formula}")
    tools = posixpath.join(node_paths(cfg, facts).workdir, "tools")
    uv_dir = posixpath.join(tools, "uv")
    install_uv = install_uv_command(APPLE_PYTHON, uv_dir, UV_VERSION, pip_options)
    return PythonChoice(
        path=posixpath.join(tools, "bin", f"python{version}"), version=version, present=False,
        how=f"uv python install {version} (a managed build in the work folder)",
        install_cmd=(f"{install_uv} && UV_PYTHON_INSTALL_DIR={q(posixpath.join(tools, 'python'))} "
                     f"UV_PYTHON_BIN_DIR={q(posixpath.join(tools, 'bin'))} "
                     f"{q(uv_binary(uv_dir))} python install --no-config {q(version)}"))


def choose_git(facts: NodeFacts) -> ToolChoice:
    """Pick the git the checkouts use; else plan to install Homebrew's."""
    if facts.git:
        return ToolChoice(path=facts.git, present=True)
    if facts.platform == "macos" and facts.homebrew:
        return ToolChoice(path=f"{brew_prefix(facts.homebrew)}/bin/git", present=False,
                          how="brew install git",
                          install_cmd=f"{_QUIET_BREW} {q(facts.homebrew)} install git")
    why = ("no git on this node; install it, e.g.: sudo apt-get install git"
           if facts.platform == "linux" else "no git on this Mac")
    return ToolChoice(path="/usr/bin/git", present=False, how="not installable by provision",
                      install_cmd=f"echo {q(why)} >&2; exit 1")


def check_toolchain(where: str, facts: NodeFacts, python: PythonChoice, git: ToolChoice) -> None:
    """Refuse a Mac where `up` could get neither a Python nor git over SSH (no Homebrew, no
    developer tools): before anything on it is changed."""
    if facts.platform != "macos" or facts.assumed or facts.homebrew or facts.xcode_clt:
        return
    missing = [what for what, tool in (("Python 3.10-3.12", python), ("git", git))
               if not tool.present]
    if not missing:
        return
    raise NodeUnsuitable(
        f"{where}: this Mac has no {', no '.join(missing)}, no Homebrew and no Command Line "
        "Tools, and none of them can be installed over SSH without an administrator; nothing "
        "was changed",
        "install Homebrew (https://brew.sh; its installer asks for the admin password and also "
        "installs the Command Line Tools), or run `xcode-select --install` on the Mac's screen "
        "(it needs a click: Screen Sharing or the provider's console), or rent an image that "
        "has them: AWS EC2 Mac AMIs ship Homebrew, Scaleway ships Xcode (docs/providers.md)")
