"""How `up` gets Python and git on the Macs providers hand out (toolchain.py), and the refusal
of a Mac where it cannot: pure, from facts."""

from __future__ import annotations

import pytest

from provisioner.core.config import NodeConfig
from provisioner.core.errors import NodeUnsuitable
from provisioner.core.units import GIB
from provisioner.install.toolchain import (
    brew_prefix,
    check_toolchain,
    choose_git,
    choose_python,
)
from provisioner.node.facts import NodeFacts, PythonInterpreter, assumed_facts

HOMEBREW_313 = PythonInterpreter(path="/opt/homebrew/bin/python3.13", version="3.13.5")
APPLE_39 = PythonInterpreter(path="/usr/bin/python3", version="3.9.6")


def mac(**changes) -> NodeFacts:
    """A real (not assumed) Mac: the assumed M4 Pro with ``changes``."""
    base = assumed_facts(64 * GIB, "macos")
    return base.model_copy(update={"assumed": False, **changes})


def test_a_usable_python_anywhere_is_used_as_found():
    macports = PythonInterpreter(path="/opt/local/bin/python3.11", version="3.11.13")
    choice = choose_python(NodeConfig(host="h"), mac(pythons=(HOMEBREW_313, macports)))
    assert (choice.path, choice.present, choice.install_cmd) == ("/opt/local/bin/python3.11", True, None)


def test_homebrew_3_13_only_gets_python_3_12_from_homebrew():
    choice = choose_python(NodeConfig(host="h"), mac(pythons=(HOMEBREW_313, APPLE_39)))
    assert not choice.present and choice.version == "3.12"
    assert choice.path == "/opt/homebrew/opt/python@3.12/bin/python3.12"
    assert choice.how == "brew install python@3.12"
    assert choice.install_cmd.endswith("/opt/homebrew/bin/brew install python@3.12")
    assert "HOMEBREW_NO_AUTO_UPDATE=1" in choice.install_cmd


def test_a_pinned_version_is_the_formula_installed():
    choice = choose_python(NodeConfig(host="h", python={"version": "3.11"}), mac(pythons=(HOMEBREW_313,)))
    assert choice.path == "/opt/homebrew/opt/python@3.11/bin/python3.11"
    assert choice.install_cmd.endswith("install python@3.11")


def test_homebrew_elsewhere_keeps_its_prefix():
    facts = mac(pythons=(), homebrew="/usr/local/bin/brew")
    assert brew_prefix("/usr/local/bin/brew") == "/usr/local"
    assert choose_python(NodeConfig(host="h"), facts).path == "/usr/local/opt/python@3.12/bin/python3.12"


def test_without_homebrew_uv_installs_a_managed_python_into_the_work_folder():
    cfg = NodeConfig(host="h", workdir="~/comfy", pip={"index_url": "https://mirror.example/simple"})
    facts = mac(pythons=(APPLE_39,), homebrew=None, macports="/opt/local/bin/port")
    choice = choose_python(cfg, facts, "--index-url https://mirror.example/simple")
    tools = "/Users/admin/comfy/tools"
    assert not choice.present and choice.path == f"{tools}/bin/python3.12"
    assert choice.how.startswith("uv python install 3.12")
    cmd = choice.install_cmd
    # Apple's python3 installs the pinned uv with pip (from the node's index), uv the Python.
    assert cmd.startswith("rm -rf ") and "/usr/bin/python3 -m pip install" in cmd
    assert "--index-url https://mirror.example/simple" in cmd
    assert f"UV_PYTHON_INSTALL_DIR={tools}/python UV_PYTHON_BIN_DIR={tools}/bin {tools}/uv/bin/uv " \
           "python install --no-config 3.12" in cmd


def test_linux_without_python_says_how_to_install_it():
    linux = assumed_facts(64 * GIB, "linux").model_copy(update={"pythons": (), "assumed": False})
    choice = choose_python(NodeConfig(host="h"), linux)
    assert not choice.present and "apt-get install python3.12" in choice.install_cmd


@pytest.mark.parametrize(("facts", "expected"), [
    (mac(git="/usr/bin/git"), ("/usr/bin/git", True, None)),
    (mac(git=None), ("/opt/homebrew/bin/git", False, "brew install git")),
])
def test_git_is_the_one_found_else_homebrews(facts, expected):
    choice = choose_git(facts)
    assert (choice.path, choice.present, choice.install_cmd and choice.how) == expected


def test_a_bare_mac_is_refused_naming_the_ways_out():
    bare = mac(pythons=(), git=None, homebrew=None, xcode_clt=False)
    cfg = NodeConfig(host="h")
    with pytest.raises(NodeUnsuitable) as caught:
        check_toolchain("n1 (h)", bare, choose_python(cfg, bare), choose_git(bare))
    message, hint = str(caught.value), caught.value.hint
    assert "this Mac has no Python 3.10-3.12, no git, no Homebrew and no Command Line Tools" in message
    assert "nothing was changed" in message
    assert "brew.sh" in hint and "xcode-select --install" in hint and "AWS" in hint


@pytest.mark.parametrize("changes", [
    {"homebrew": "/opt/homebrew/bin/brew"},  # Homebrew can install both
    {"xcode_clt": True, "git": "/usr/bin/git"},  # Scaleway: Xcode's git, uv's Python
    {"git": "/opt/local/bin/git", "pythons": (PythonInterpreter(path="/opt/local/bin/python3.12",
                                                              version="3.12.11"),)},
])
def test_a_mac_with_a_way_to_python_and_git_is_not_refused(changes):
    facts = mac(**{"pythons": (), "git": None, "homebrew": None, "xcode_clt": False, **changes})
    cfg = NodeConfig(host="h")
    check_toolchain("n1 (h)", facts, choose_python(cfg, facts), choose_git(facts))


def test_a_bare_mac_with_only_git_missing_is_refused_for_git():
    facts = mac(git=None, homebrew=None, xcode_clt=False)  # a Python 3.12 is there
    cfg = NodeConfig(host="h")
    with pytest.raises(NodeUnsuitable) as caught:
        check_toolchain("n1 (h)", facts, choose_python(cfg, facts), choose_git(facts))
    assert "this Mac has no git, no Homebrew" in str(caught.value)
