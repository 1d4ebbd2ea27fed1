"""Self-tests of the provider profiles (fake_macos/profiles.py) and of the fdesetup / pmset
shims, over real SSH to real sshd nodes. No tool under test is involved.

A profiled node's sshd runs in its own mount namespace, so every check here runs through SSH
(what the node sees), and a few read the host side (``node.opt_dir``). Several commands share
one SSH session (``node.run_batch``: a runner fed on stdin to ``node.python``, which for a profiled node
is the real 3.11 at a path off PATH, since /usr/bin/python3 is a stub there).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from tests.harness import fake_macos, sshd
from tests.harness.fake_macos import profiles

CLT_MESSAGE = (
    "xcode-select: note: No developer tools were found, requesting install.\n"
    "If developer tools are located at a non-default location on disk, use "
    "`sudo xcode-select --switch path/to/Xcode.app` to specify the Xcode that you wish to use for "
    "command line developer tools, and cancel the installation dialog.\n"
    "See `man xcode-select' for more details.\n"
)
XCODE_ERROR = ("xcode-select: error: unable to get active developer directory. Use `sudo xcode-select "
               "--switch path/to/Xcode.app` to set one (or see `man xcode-select`)\n")
# What an interactive login adds to PATH on a Mac (brew shellenv / the MacPorts installer).
LOGIN_PATH = "PATH=/opt/homebrew/bin:/opt/local/bin:$PATH"

# Where a Python could be, on PATH or where the tool looks off PATH.
PYTHON_CANDIDATES = (
    "python3", "python3.10", "python3.11", "python3.12", "python3.13", "python",
    "/usr/bin/python3", "/usr/bin/python3.11", "/bin/python3.11", "/usr/local/bin/python3.11",
    "/opt/homebrew/bin/python3", "/opt/homebrew/bin/python3.11", "/opt/homebrew/bin/python3.12",
    "/opt/homebrew/bin/python3.13", "/opt/homebrew/opt/python@3.11/bin/python3.11",
    "/opt/homebrew/opt/python@3.12/bin/python3.12", "/opt/local/bin/python3", "/opt/local/bin/python3.11",
    "/opt/local/bin/python3.12",
)
PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"
# Which candidates run Python code (and which version they say), per profile.
USABLE = {
    "homebrew": {"/opt/homebrew/bin/python3.11": "3.11", "/opt/homebrew/opt/python@3.11/bin/python3.11": "3.11"},
    "homebrew-3.13": {},
    "aws": {},
    "scaleway": {"/opt/local/bin/python3.11": "3.11"},
    "scaleway-no-python": {},
    "bare": {},
}
# (xcode-select -p output or None, /usr/bin/python3 --version or None for the CLT stub, brew?, port?)
LAYOUT = {
    "homebrew": (profiles.CLT_DIR, "Python 3.9.6", True, False),
    "homebrew-3.13": (profiles.CLT_DIR, "Python 3.9.6", True, False),
    "aws": (None, None, True, False),
    "scaleway": (profiles.XCODE_DIR, "Python 3.9.6", False, True),
    "scaleway-no-python": (profiles.XCODE_DIR, "Python 3.9.6", False, True),
    "bare": (None, None, False, False),
}



@pytest.fixture
def profiled(node_factory):
    """Start a node with a provider profile, or skip (with the reason) where that cannot work."""
    reason = sshd.profiles_supported()
    if reason is not None:
        pytest.skip(f"provider profiles unavailable: {reason}")

    def make(profile: str, **kw) -> sshd.SshNode:
        return node_factory(profile=profile, **kw)

    return make


# --- the API ---------------------------------------------------------------------------------


def test_unknown_profile_and_linux_with_a_profile_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown provider profile 'mac-pro'; known: homebrew, homebrew-3\.13, "
                                         r"aws, scaleway, scaleway-no-python, bare"):
        sshd.start_node(tmp_path, profile="mac-pro")
    with pytest.raises(ValueError, match="platform='macos'"):
        sshd.start_node(tmp_path, platform="linux", profile="homebrew")


def test_start_node_raises_profile_unavailable_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(sshd, "profiles_supported", lambda: "unshare --mount not permitted here: EPERM")
    with pytest.raises(sshd.ProfileUnavailable, match="unshare --mount not permitted here: EPERM") as caught:
        sshd.start_node(tmp_path, profile="aws")
    assert isinstance(caught.value, sshd.HarnessError)
    assert not list(tmp_path.iterdir())  # nothing was created


def test_profiles_supported_answers_none_or_a_reason():
    reason = sshd.profiles_supported()
    assert reason is None or (isinstance(reason, str) and reason)
    assert sshd.profiles_supported() == reason  # checked once, same answer
    if os.geteuid() != 0:
        assert reason is not None and "root" in reason


def test_default_node_is_unchanged(node_factory):
    node = node_factory()
    assert node.profile is None and node.opt_dir is None and node.python == sshd.NODE_PYTHON
    out = node.ssh("command -v python3 git; python3 --version; xcode-select -p; "
                   f"{node.homebrew_bin}/brew --version; {node.homebrew_bin}/brew --prefix").stdout
    lines = out.splitlines()
    assert lines[:2] == ["/usr/bin/python3", "/usr/bin/git"]
    assert re.fullmatch(r"Python 3\.11\.\d+", lines[2])
    assert lines[3:] == [profiles.CLT_DIR, "Homebrew 4.5.8", "/opt/homebrew"]
    # No /opt/homebrew on a plain node: installing is not emulated there, and says so.
    (rc, _, err), = node.run_batch(f"{node.homebrew_bin}/brew install python@3.11")
    assert rc == 1 and "not emulated on a node without a provider profile" in err
    assert [call["argv"] for call in node.stub_calls("brew")] == [["--version"], ["--prefix"], ["install", "python@3.11"]]


# --- each profile's layout -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(profiles.PROFILES))
def test_profile_layout_and_the_only_usable_pythons(profiled, name):
    node = profiled(name)
    developer_dir, apple_python, has_brew, has_port = LAYOUT[name]
    assert node.profile == name and node.opt_dir is not None
    assert node.python == profiles.interpreter(node.node_dir / "fake_macos")
    results = node.run_batch(
        "for tool in python3 git brew port; do command -v $tool; done",
        f"{LOGIN_PATH}; for tool in brew port; do command -v $tool; done",
        "xcode-select -p",
        "/usr/bin/python3 --version",
        "ls -A /opt",
        *(f"{c} -c {PROBE!r}" for c in PYTHON_CANDIDATES),
    )
    (_, on_path, _), (_, login, _), clt, apple, (_, opt, _) = results[:5]
    probes = dict(zip(PYTHON_CANDIDATES, results[5:]))

    # Non-interactive SSH: Homebrew's and MacPorts' bin are not on PATH (FACTS.md).
    assert on_path == "/usr/bin/python3\n/usr/bin/git\n"
    assert login == ("/opt/homebrew/bin/brew\n" if has_brew else "") + ("/opt/local/bin/port\n" if has_port else "")
    assert sorted(opt.split()) == sorted(["homebrew"] * has_brew + ["local"] * has_port)
    if developer_dir:
        assert clt == (0, developer_dir + "\n", "")
        assert apple == (0, apple_python + "\n", "")
    else:
        assert clt == (2, "", XCODE_ERROR)
        assert apple == (1, "", CLT_MESSAGE)
    usable = {c: out.strip() for c, (rc, out, _) in probes.items() if rc == 0}
    assert usable == USABLE[name], probes
    for candidate, (rc, out, err) in probes.items():
        if candidate not in usable:
            assert rc != 0 and out == "", (candidate, out, err)

    # Nowhere on the node (outside /tmp, where the harness keeps the real one) is there another
    # Python that runs. Only interpreter-named files are run (never e.g. dpkg's python3-*.prerm).
    found = node.ssh(
        "find /usr /opt /etc /var /srv /home -regextype posix-extended -regex '.*/(python|pypy)[0-9.]*' "
        "\\( -type f -o -type l \\) 2>/dev/null | sort", timeout=120).stdout.split()
    runnable = {path for path, (rc, _, _) in zip(found, node.run_batch(*(f"{p} -c {PROBE!r}" for p in found)))
                if rc == 0}
    expected = {path for path in USABLE[name] if not path.startswith("/opt/homebrew/opt/")}
    if name == "homebrew":
        expected.add(f"/opt/homebrew/Cellar/python@3.11/{profiles.real_python_version()}/bin/python3.11")
    if name == "scaleway":
        expected.add("/opt/local/Library/Frameworks/Python.framework/Versions/3.11/bin/python3.11")
    assert runnable == expected, found


@pytest.mark.parametrize("name", ["aws", "bare"])
def test_without_the_command_line_tools_python3_and_git_are_install_dialog_stubs(profiled, name):
    node = profiled(name)
    git, python, plain, clone = node.run_batch(
        "/usr/bin/git --version", "/usr/bin/python3 -c 'print(1)'", "git status",
        "cd ~ && git clone -q https://example.invalid/x.git",
    )
    for result in (git, python, plain, clone):
        assert result == (1, "", CLT_MESSAGE)
    calls = node.stub_calls()
    assert [(c["tool"], c["path"], c["argv"], c["exit"]) for c in calls] == [
        ("clt-stub", "/usr/bin/git", ["--version"], 1),
        ("clt-stub", "/usr/bin/python3", ["-c", "print(1)"], 1),
        ("clt-stub", "/usr/bin/git", ["status"], 1),
        ("clt-stub", "/usr/bin/git", ["clone", "-q", "https://example.invalid/x.git"], 1),
    ]
    assert all(call["uid"] == node.uid for call in calls)
    # The bare node cannot get git anywhere (even git's helpers are hidden); the AWS one can,
    # through Homebrew (test_brew_installs_python_3_11_and_git_that_work).
    (rc, out, _), = node.run_batch("ls /usr/lib/git-core | wc -l")
    assert rc == 0 and (int(out) == 0 if name == "bare" else int(out) > 0)


def test_apple_python3_with_the_command_line_tools_is_a_3_9_6_stub(profiled):
    node = profiled("scaleway")
    version, short, code, module = node.run_batch("python3 --version", "/usr/bin/python3 -V", "python3 -c 1",
                                        "python3 -m venv ~/v")
    assert version == short == (0, "Python 3.9.6\n", "")
    for result in (code, module):
        assert result[:2] == (1, "")
        assert "/usr/bin/python3 stands for the Command Line Tools' Python 3.9.6 and is not runnable here" in result[2]
    calls = node.stub_calls("python-stub")
    assert [(c["path"], c["argv"], c["exit"], c["stands_for"]) for c in calls] == [
        ("/usr/bin/python3", ["--version"], 0, "clt"), ("/usr/bin/python3", ["-V"], 0, "clt"),
        ("/usr/bin/python3", ["-c", "1"], 1, "clt"), ("/usr/bin/python3", ["-m", "venv", f"{node.home}/v"], 1, "clt"),
    ]
    assert not (node.home / "v").exists()
    (rc, out, _), = node.run_batch("git --version")  # Xcode's git works
    assert rc == 0 and out.startswith("git version ")


# --- Homebrew --------------------------------------------------------------------------------


def test_homebrew_profile_has_python_3_11_poured_like_brew_does(profiled):
    node = profiled("homebrew")
    version = profiles.real_python_version()
    listed, prefix, again, links = node.run_batch(
        "/opt/homebrew/bin/brew list --versions",
        "/opt/homebrew/bin/brew --prefix python@3.11",
        "/opt/homebrew/bin/brew install python@3.11",
        "readlink /opt/homebrew/bin/python3.11 /opt/homebrew/opt/python@3.11; ls /opt/homebrew/bin",
    )
    assert listed == (0, f"python@3.11 {version}\n", "")
    assert prefix == (0, "/opt/homebrew/opt/python@3.11\n", "")
    assert again == (0, "", (f"Warning: python@3.11 {version} is already installed and up-to-date.\n"
                             f"To reinstall {version}, run:\n  brew reinstall python@3.11\n"))
    assert links[1].split() == [f"../Cellar/python@3.11/{version}/bin/python3.11",
                                f"../Cellar/python@3.11/{version}", "brew", "python3.11"]
    # The node user owns the prefix (as the admin user does on a Mac); root owns /opt itself.
    cellar = node.opt_dir / "homebrew" / "Cellar"
    assert cellar.stat().st_uid == node.uid and node.opt_dir.stat().st_uid == 0


@pytest.mark.parametrize("name", ["homebrew-3.13", "aws"])
def test_brew_installs_python_3_11_and_git_that_work(profiled, name):
    node = profiled(name)
    brew = "/opt/homebrew/bin/brew"
    version = profiles.real_python_version()
    before, py313, py313_run, missing, install = node.run_batch(
        f"{brew} list --versions",
        "/opt/homebrew/bin/python3 --version; /opt/homebrew/bin/python3.13 --version",
        "/opt/homebrew/bin/python3 -c 1",
        f"{brew} list --versions python@3.11",
        f"{brew} install python@3.11",
    )
    if name == "homebrew-3.13":
        assert before == (0, "python@3.13 3.13.5\n", "")
        assert py313 == (0, "Python 3.13.5\nPython 3.13.5\n", "")
        assert py313_run[0] == 1 and ("stands for Homebrew's Python 3.13, which has no torch 2.3.1 wheel, "
                                      "and is not runnable here") in py313_run[2]
    else:
        assert before == (0, "", "") and py313[0] == 127 and py313_run[0] == 127
    assert missing == (1, "", "")  # not installed: silent, exit 1
    assert install[0] == 0, install
    assert install[1].splitlines() == [
        "==> Fetching python@3.11",
        f"==> Pouring python@3.11--{version}.arm64_sequoia.bottle.tar.gz",
        (f"\N{BEER MUG}  /opt/homebrew/Cellar/python@3.11/{version}: 1 file, "
         f"{len(profiles.interpreter(node.node_dir / 'fake_macos'))}B"),  # one symlink: its length
    ]

    venv = f"{node.home}/venv"
    made, ran, listed, git_install, git = node.run_batch(
        f"/opt/homebrew/opt/python@3.11/bin/python3.11 -m venv {venv}",
        f"{venv}/bin/python -c 'import sys; print(sys.version_info[:2], sys.prefix)'",
        f"{brew} list --versions python@3.11",
        f"{brew} install git",
        "/opt/homebrew/bin/git --version && cd ~ && /opt/homebrew/bin/git init -q r && /opt/homebrew/bin/git -C r "
        "-c user.name=t -c user.email=t@t commit -q --allow-empty -m one && /opt/homebrew/bin/git -C r log --format=%s",
    )
    assert made == (0, "", ""), made
    assert ran == (0, f"(3, 11) {venv}\n", "")
    assert listed == (0, f"python@3.11 {version}\n", "")
    assert git_install[0] == 0 and git_install[1].startswith("==> Fetching git\n"), git_install
    assert git[0] == 0, git
    assert re.fullmatch(r"git version [\d.]+\none\n", git[1])
    # Written by the node user into its own prefix; the host sees the same Cellar.
    keg = node.opt_dir / "homebrew" / "Cellar" / "python@3.11" / version
    assert keg.is_dir() and keg.stat().st_uid == node.uid

    refused = node.run_batch(f"{brew} install python@3.12", f"{brew} install python@3.13", f"{brew} install nope",
                   f"{brew} install python@3.12 git")
    assert refused[0][:2] == (1, "") and "python@3.12 cannot be installed here" in refused[0][2]
    if name == "aws":
        assert refused[1][0] == 1 and "python@3.13 cannot be installed here" in refused[1][2]
    else:
        assert refused[1] == (0, "", ("Warning: python@3.13 3.13.5 is already installed and up-to-date.\n"
                                      "To reinstall 3.13.5, run:\n  brew reinstall python@3.13\n"))
    assert refused[2] == (1, "", 'Error: No available formula with the name "nope".\n')
    assert refused[3][0] == 1  # one formula that cannot be installed: nothing is
    calls = node.stub_calls("brew")
    assert all(call["path"] == brew and call["uid"] == node.uid for call in calls)
    assert [call["exit"] for call in calls[-4:]] == [1, 0 if name != "aws" else 1, 1, 1]
    assert ["install", "python@3.11"] in [call["argv"] for call in calls]


# --- MacPorts --------------------------------------------------------------------------------


def test_scaleway_has_macports_with_a_python_3_11_and_no_homebrew(profiled):
    node = profiled("scaleway")
    port, other, python, venv, brew = node.run_batch(
        "/opt/local/bin/port version",
        "/opt/local/bin/port install python312",
        "/opt/local/bin/python3.11 -c 'import sys; print(sys.version_info[:2])'",
        f"/opt/local/bin/python3.11 -m venv {node.home}/v && {node.home}/v/bin/python -c 'print(42)'",
        "ls /opt/homebrew",
    )
    assert port == (0, "Version: 2.10.5\n", "")
    assert other[0] == 1 and "is not emulated" in other[2]
    assert python == (0, "(3, 11)\n", "")
    assert venv == (0, "42\n", "")
    assert brew[0] != 0
    assert [(c["tool"], c["argv"], c["exit"], c["path"]) for c in node.stub_calls("port")] == [
        ("port", ["version"], 0, "/opt/local/bin/port"), ("port", ["install", "python312"], 1, "/opt/local/bin/port")]
    assert (node.opt_dir / "local" / "bin" / "port").stat().st_uid == 0  # MacPorts is root's


# --- life cycle ------------------------------------------------------------------------------


def test_a_profiled_node_keeps_its_layout_over_stop_start_and_reboot(profiled):
    node = profiled("aws")
    assert repr(node).startswith(f"<SshNode {node.name} macos:aws ")
    (rc, _, err), = node.run_batch("/opt/homebrew/bin/brew install python@3.11")
    assert rc == 0, err
    check = ("/opt/homebrew/bin/python3.11 -c 'import sys; print(sys.version_info[:2])'; "
             "/usr/bin/git --version; echo git=$?; ls /opt")
    expected = (0, "(3, 11)\ngit=1\nhomebrew\n", CLT_MESSAGE)
    assert node.run_batch(check) == [expected]
    node.stop()  # sshd and its namespace go; a new one is made with the same mounts
    node.start()
    assert node.run_batch(check) == [expected]
    node.reboot()
    assert node.run_batch(check) == [expected]


# --- a launchd job in a profiled node ----------------------------------------------------------


def test_launchd_jobs_run_inside_the_profile(profiled):
    node = profiled("homebrew")
    home = node.home
    plist = home / "job.plist"
    plist.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
  <key>Label</key><string>com.example.profiled</string>
  <key>ProgramArguments</key><array><string>/bin/sh</string><string>-c</string>
    <string>/opt/homebrew/bin/python3.11 -c 'import sys; print(sys.version_info[:2])'; /usr/bin/python3 --version; command -v brew || echo no-brew</string></array>
  <key>StandardOutPath</key><string>{home}/job.log</string>
  <key>StandardErrorPath</key><string>{home}/job.log</string>
  <key>RunAtLoad</key><true/>
  <key>LimitLoadToSessionType</key><string>Background</string>
</dict></plist>
""")
    os.chown(plist, node.uid, node.gid)
    boot, = node.run_batch(f"launchctl bootstrap user/{node.uid} {plist}")
    assert boot == (0, "", ""), boot
    log, text = home / "job.log", ""
    deadline = time.monotonic() + 10
    while text.count("\n") < 3 and time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        time.sleep(0.05)
    assert text == "(3, 11)\nPython 3.9.6\nno-brew\n"  # launchd's PATH has no Homebrew


# --- fdesetup and pmset (every macOS node) ---------------------------------------------------


def _pmset(sleep: int) -> str:
    rows = [("standby", "0"), ("Sleep On Power Button", "1"), ("autorestart", "0"),
            ("hibernatefile", "/var/vm/sleepimage"), ("powernap", "1"), ("networkoversleep", "0"),
            ("disksleep", "10"), ("sleep", str(sleep)), ("hibernatemode", "0"), ("ttyskeepawake", "1"),
            ("displaysleep", "10"), ("tcpkeepalive", "1"), ("lowpowermode", "0"), ("womp", "1")]
    return "System-wide power settings:\nCurrently in use:\n" + "".join(f" {k:<20} {v}\n" for k, v in rows)


def _check_fdesetup_and_pmset(node: sshd.SshNode) -> None:
    status, active, pm, assertions, other = node.run_batch("fdesetup status", "fdesetup isactive", "pmset -g",
                                                  "pmset -g assertions", "fdesetup list")
    assert status == (0, "FileVault is Off.\n", "") and active == (1, "false\n", "")
    assert pm == (0, _pmset(0), "")
    assert pm[1].splitlines()[9] == " sleep                0"
    assert assertions[0] == 1 and "not emulated" in assertions[2]
    assert other[0] == 1 and "not emulated" in other[2]
    node.fake_macos_set(filevault=True, sleep_minutes=1)
    status, active, pm = node.run_batch("fdesetup status", "fdesetup isactive", "pmset -g")
    assert status == (0, "FileVault is On.\n", "") and active == (0, "true\n", "")
    assert pm == (0, _pmset(1), "")
    node.fake_macos_set(filevault=False, sleep_minutes=10)
    status, pm = node.run_batch("fdesetup status", "pmset -g")
    assert status == (0, "FileVault is Off.\n", "") and pm == (0, _pmset(10), "")
    calls = node.stub_calls()
    assert [(c["tool"], c["argv"], c["exit"]) for c in calls] == [
        ("fdesetup", ["status"], 0), ("fdesetup", ["isactive"], 1), ("pmset", ["-g"], 0),
        ("pmset", ["-g", "assertions"], 1), ("fdesetup", ["list"], 1),
        ("fdesetup", ["status"], 0), ("fdesetup", ["isactive"], 0), ("pmset", ["-g"], 0),
        ("fdesetup", ["status"], 0), ("pmset", ["-g"], 0),
    ]


def test_fdesetup_and_pmset_on_a_default_node(node_factory):
    _check_fdesetup_and_pmset(node_factory())


def test_fdesetup_and_pmset_on_a_profiled_node(profiled):
    _check_fdesetup_and_pmset(profiled("aws"))


def test_filevault_and_sleep_from_start_node(node_factory):
    node = node_factory(fake_macos_values={"filevault": True, "sleep_minutes": 3})
    assert node.ssh("fdesetup status; pmset -g | grep '^ sleep '").stdout == (
        "FileVault is On.\n sleep                3\n")
    with pytest.raises(ValueError, match="sleep_minutes"):
        fake_macos.compute({"sleep_minutes": -1})
    assert {"filevault", "sleep_minutes", "launchd_bootstrap_eio_once"} <= set(fake_macos.INPUTS)


def test_calls_log_path_is_the_node_state_folder(profiled):
    node = profiled("bare")
    node.run_batch("git --version")
    log = node.fake_macos_state / "calls.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [entry["tool"] for entry in entries] == ["clt-stub"]
    assert Path(entries[0]["path"]).name == "git"
