"""EMULATION: provider profiles, i.e. emulated Macs that look like what real providers hand out.

A node started with ``start_node(profile=NAME)`` runs its sshd in a private mount namespace
(``unshare --mount``), so its SSH sessions, and everything they start (launchd jobs too), see
real macOS paths that the test machine does not have, built per node under
``<node>/fake_macos/root/`` by ``build()``:

- ``/opt`` is ``root/opt``: ``homebrew/`` (a writable Homebrew prefix owned by the node user,
  with ``bin/brew`` = fake_macos/bin/brew and a real Cellar) and/or ``local/`` (MacPorts:
  ``bin/port``), as the profile says. The machine's own /opt is hidden.
- ``/usr/bin`` (and so ``/bin``, a symlink to it on Debian) is ``root/usr_bin``: a symlink to
  ``root/real_usr_bin/<name>`` (the real /usr/bin, bind-mounted there first) for every real
  entry EXCEPT the Python ones (python*, pydoc*, 2to3*, pip*, py3*, pygettext*, idle*) and
  git*; then the profile's ``python3`` and ``git``: with the Command Line Tools / Xcode,
  ``python3`` is a stub of Apple's 3.9.6 (profile_bin/python-stub) and ``git`` the real git;
  without them both are the install-dialog stub (profile_bin/clt-stub).
  ``root/usr_bin`` is a tmpfs mounted inside the namespace and filled there from
  ``root/usr_bin.list`` (the symlinks' targets) and ``root/usr_bin_profile/`` (python3, git):
  a thousand symlinks on this machine's disk cost ~0.7 s per node, on tmpfs ~10 ms. On the
  host ``root/usr_bin`` is an empty folder; look at it through SSH.
- Other interpreters this machine has are hidden by mounting an empty folder over their folder
  (``MASKED``, e.g. google-cloud-sdk's bundled Python 3.12); on ``bare`` also /usr/lib/git-core.

Every Python a profile "installs" is the test machine's one interpreter for node users,
Debian's /usr/bin/python3.11, reached as ``root/real_usr_bin/python3.11`` (``interpreter()``),
and labelled 3.11: nothing pretends to be 3.12. The Python shims (launchctl, caffeinate,
fdesetup, pmset, brew, port, the stubs) run on that path too, since /usr/bin/python3 is a stub.

Needs root and a kernel that lets root make mount namespaces: ``supported()`` says why not.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

from . import SHIM_DIR, install_script

PROFILE_BIN = Path(__file__).resolve().parent / "profile_bin"
REAL_USR_BIN = "/usr/bin"
REAL_PYTHON = "python3.11"  # Debian's interpreter: the only one node users may run
CLT_DIR = "/Library/Developer/CommandLineTools"
XCODE_DIR = "/Applications/Xcode.app/Contents/Developer"
HOMEBREW = "opt/homebrew"  # under the root folder; /opt/homebrew in the node
MACPORTS = "opt/local"
HOMEBREW_313 = "3.13.5"  # what the stub of Homebrew's python@3.13 says it is
# Real /usr/bin entries left out of the node's /usr/bin (a Mac has none of them, or the
# profile puts its own python3/git there).
HIDDEN = re.compile(r"^(python|pydoc|2to3|pip|py3|pygettext|idle|git)")
GIT_TOOLS = ("git", "git-receive-pack", "git-upload-pack", "git-upload-archive", "git-shell")
# Folders of this machine holding other interpreters: an empty folder is mounted over each
# that exists, so that no Python but the profile's can be found anywhere on the node.
MASKED = ("/usr/lib/google-cloud-sdk/platform/bundledpythonunix",)
MASKED_WITHOUT_GIT = ("/usr/lib/git-core",)  # the real git's helpers: hidden where none can exist


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str
    developer_dir: str  # what `xcode-select -p` prints; "" = no Command Line Tools nor Xcode
    homebrew: bool  # /opt/homebrew with brew
    homebrew_python: Optional[str]  # "3.11" (poured from the real one), "3.13" (a stub), None
    macports: bool  # /opt/local with port
    macports_python: bool  # /opt/local/bin/python3.11


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("homebrew", "Homebrew with python@3.11; Command Line Tools", CLT_DIR, True, "3.11", False, False),
    Profile("homebrew-3.13", "Homebrew whose python3 is 3.13 (no 3.11/3.12); Command Line Tools",
            CLT_DIR, True, "3.13", False, False),
    Profile("aws", "AWS EC2 Mac AMI: Homebrew without python or git; NO Command Line Tools",
            "", True, None, False, False),
    Profile("scaleway", "Scaleway: MacPorts with python3.11; Xcode; no Homebrew", XCODE_DIR, False, None, True, True),
    Profile("scaleway-no-python", "Scaleway without a MacPorts python", XCODE_DIR, False, None, True, False),
    Profile("bare", "no Homebrew, no MacPorts, no Command Line Tools: no python or git at all",
            "", False, None, False, False),
)}


def get(name: str) -> Profile:
    """The profile called ``name``; ValueError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown provider profile {name!r}; known: {', '.join(PROFILES)}") from None


def fake_values(profile: Profile) -> dict[str, Any]:
    """The fake_macos inputs a profile implies (a test's own fake_macos_values win)."""
    return {"xcode_clt": profile.developer_dir}


def root_dir(fake_macos_dir: Path) -> Path:
    return Path(fake_macos_dir) / "root"


def interpreter(fake_macos_dir: Path) -> str:
    """The real python3.11 as the node sees it (also on the host while the node's sshd runs
    only inside its namespace: on the host ``root/real_usr_bin`` is an empty folder)."""
    return str(root_dir(fake_macos_dir) / "real_usr_bin" / REAL_PYTHON)


# --- can this machine do it? -----------------------------------------------------------------

_SUPPORT: list[Optional[str]] = []
_SUPPORT_LOCK = threading.Lock()


def supported() -> Optional[str]:
    """None when profiled nodes can run here, else why not (checked once per process)."""
    with _SUPPORT_LOCK:
        if not _SUPPORT:
            _SUPPORT.append(_check_support())
        return _SUPPORT[0]


def _check_support() -> Optional[str]:
    if os.geteuid() != 0:
        return f"provider profiles need root (a mount namespace and a user per node); uid is {os.geteuid()}"
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    python = Path(REAL_USR_BIN, REAL_PYTHON)
    if not os.access(python, os.X_OK):
        return f"{python} (Debian's python3.11) is missing: every profile's Python is that interpreter"
    if real_python_version() is None:
        return f"{python} is not a Python 3.11"
    if not os.access(Path(REAL_USR_BIN, "git"), os.X_OK) or not Path("/opt").is_dir():
        return "/usr/bin/git and the folder /opt are needed by the profiles"
    with tempfile.TemporaryDirectory(prefix="provision-unshare-probe-") as tmp:
        source, target = Path(tmp, "a"), Path(tmp, "b")
        source.mkdir()
        target.mkdir()
        (source / "probe").write_text("")
        script = f"mount --bind {shlex.quote(str(source))} {shlex.quote(str(target))} && test -e {shlex.quote(str(target / 'probe'))}"
        try:
            done = subprocess.run(
                [str(shutil.which("unshare")), "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script],
                capture_output=True, text=True, timeout=30, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unshare --mount not permitted here: {exc}"
        if done.returncode != 0:
            return f"unshare --mount not permitted here: {(done.stderr or done.stdout).strip() or f'exit {done.returncode}'}"
    return None


_VERSION: list[Optional[str]] = []


def real_python_version() -> Optional[str]:
    """The version of /usr/bin/python3.11 (e.g. "3.11.2"), None if it is not a 3.11."""
    if not _VERSION:
        try:
            out = subprocess.run([f"{REAL_USR_BIN}/{REAL_PYTHON}", "-c", "import platform; print(platform.python_version())"],
                                 capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        except OSError:
            out = ""
        _VERSION.append(out if out.startswith("3.11.") else None)
    return _VERSION[0]


# --- building a node's root folder -----------------------------------------------------------


def _brew_module() -> ModuleType:
    """fake_macos/bin/brew as a module: its pour() lays out the Cellar the way `brew install` does."""
    loader = importlib.machinery.SourceFileLoader("fake_macos_brew", str(SHIM_DIR / "brew"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o755)
    return path


def _place(source: Path, target: Path) -> None:
    """Copy a stub to ``target``, replacing (never writing through) whatever is there."""
    if os.path.lexists(target):
        os.unlink(target)
    shutil.copy2(source, target, follow_symlinks=False)


def build(fake_macos_dir: Path, profile: Profile, owner: Optional[tuple[int, int]]) -> Path:
    """Create ``<fake_macos>/root`` for ``profile``; ``owner`` (uid, gid) gets /opt/homebrew.

    Call after fake_macos.install(..., python=interpreter(fake_macos_dir)). Returns the root.
    """
    fake_macos_dir = Path(fake_macos_dir)
    root = _mkdir(root_dir(fake_macos_dir))
    real_bin = _mkdir(root / "real_usr_bin")  # the real /usr/bin is mounted here
    _mkdir(root / "usr_bin")  # a tmpfs is mounted here in the namespace (sshd_command)
    usr_bin, stubs, opt = _mkdir(root / "usr_bin_profile"), _mkdir(root / "stubs"), _mkdir(root / "opt")
    _mkdir(root / "empty")  # mounted over MASKED folders
    python = interpreter(fake_macos_dir)
    tokens = {"FAKE_MACOS": str(fake_macos_dir)}
    install_script(PROFILE_BIN / "clt-stub", stubs / "clt-stub", python=python, tokens=tokens)
    for stands_for in ("clt", "homebrew-3.13"):
        install_script(PROFILE_BIN / "python-stub", stubs / f"python-stub-{stands_for}", python=python,
                       tokens={**tokens, "STANDS_FOR": stands_for})

    listing = sorted(name for name in os.listdir(REAL_USR_BIN) if not HIDDEN.match(name))
    (root / "usr_bin.list").write_text("".join(f"{real_bin / name}\n" for name in listing))
    if profile.developer_dir:  # CLT / Xcode: Apple's python3 (3.9.6, a stub) and a working git
        _place(stubs / "python-stub-clt", usr_bin / "python3")
        for name in GIT_TOOLS:
            if Path(REAL_USR_BIN, name).exists() and not os.path.lexists(usr_bin / name):
                os.symlink(real_bin / name, usr_bin / name)
    else:  # the shims that would pop up the "install the developer tools" dialog
        for name in ("python3", *GIT_TOOLS):
            _place(stubs / "clt-stub", usr_bin / name)

    if profile.homebrew:
        prefix = opt / "homebrew"
        for folder in ("bin", "Cellar", "opt", "etc", "lib", "share", "var"):
            _mkdir(prefix / folder)
        install_script(SHIM_DIR / "brew", prefix / "bin" / "brew", python=python, tokens=tokens)
        brew = _brew_module()
        if profile.homebrew_python == "3.11":
            brew.pour(str(prefix), "python@3.11", real_python_version(), links={"bin/python3.11": python})
        elif profile.homebrew_python == "3.13":
            brew.pour(str(prefix), "python@3.13", HOMEBREW_313,
                      files={"bin/python3.13": str(stubs / "python-stub-homebrew-3.13")},
                      links={"bin/python3": "python3.13"})
        if owner is not None:  # the admin user owns /opt/homebrew on a real Mac
            for folder, dirs, files in os.walk(prefix):
                for name in [*dirs, *files, ""]:
                    os.lchown(os.path.join(folder, name) if name else folder, *owner)
    if profile.macports:
        prefix = opt / "local"
        _mkdir(prefix / "bin")
        install_script(PROFILE_BIN / "port", prefix / "bin" / "port", python=python, tokens=tokens)
        if profile.macports_python:
            framework = _mkdir(prefix / "Library/Frameworks/Python.framework/Versions/3.11/bin")
            os.symlink(python, framework / REAL_PYTHON)
            os.symlink(f"../Library/Frameworks/Python.framework/Versions/3.11/bin/{REAL_PYTHON}",
                       prefix / "bin" / REAL_PYTHON)
    return root


def masks(profile: Profile) -> list[str]:
    """Folders of this machine an empty folder is mounted over in the node."""
    folders = list(MASKED)
    if not profile.developer_dir and not profile.homebrew:  # no git can ever be there
        folders += MASKED_WITHOUT_GIT
    return [folder for folder in folders if os.path.isdir(folder)]


def sshd_command(fake_macos_dir: Path, profile: Profile, sshd_argv: list[str]) -> list[str]:
    """``sshd_argv`` run in a new private mount namespace with the profile's mounts."""
    root = root_dir(fake_macos_dir)
    q = shlex.quote
    mount = q(shutil.which("mount") or "mount")
    usr_bin = q(str(root / "usr_bin"))
    steps = [f"{mount} --bind {REAL_USR_BIN} {q(str(root / 'real_usr_bin'))}",
             f"{mount} -t tmpfs -o mode=0755,size=64m provision-usr-bin {usr_bin}",
             f"xargs -d '\\n' -a {q(str(root / 'usr_bin.list'))} ln -s -t {usr_bin}",
             f"cp -a {q(str(root / 'usr_bin_profile'))}/. {usr_bin}/",
             f"{mount} --bind {q(str(root / 'opt'))} /opt"]
    steps += [f"{mount} --bind {q(str(root / 'empty'))} {q(folder)}" for folder in masks(profile)]
    steps += [f"{mount} --bind {usr_bin} {REAL_USR_BIN}",
              "exec " + " ".join(q(arg) for arg in sshd_argv)]
    unshare = shutil.which("unshare") or "unshare"
    return [unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", " && ".join(steps)]
