"""Run the real facts script with /bin/sh on this Linux machine and parse what it prints."""

from __future__ import annotations

import os
import platform
import select
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provisioner.node.facts.parse import parse_facts, split_sections
from provisioner.node.facts.script import facts_script

# /bin/sh is dash on Debian; bash --posix stands in for macOS's bash-3.2-as-sh.
SHELLS = [["/bin/sh", "-s"]] + ([["bash", "--posix", "-s"]] if shutil.which("bash") else [])


def run_script(workdir: str, home: Path, path: str | None = None,
               shell: list[str] = SHELLS[0]) -> str:
    """Run facts_script(workdir) the way gather() does: the script on stdin of `sh -s`."""
    env = {"HOME": str(home), "PATH": path or os.environ["PATH"], "LC_ALL": "C"}
    completed = subprocess.run(shell, input=facts_script(workdir), capture_output=True, text=True,
                               env=env, cwd=home, timeout=60)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def write_tool(folder: Path, name: str, body: str) -> Path:
    """Write an executable sh script standing in for a command."""
    tool = folder / name
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return tool


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    return folder


def hostile_workdir(tmp_path: Path) -> tuple[str, list[Path]]:
    """Return a workdir full of shell syntax, and the files it would create if ever run."""
    markers = [tmp_path / f"pwned{i}" for i in range(4)]
    workdir = (f"~/my dir/$(touch {markers[0]})'x\"`touch {markers[1]}`;touch {markers[2]}"
               f"$({{ touch {markers[3]}; }})\\$HOME*")
    return workdir, markers


@pytest.mark.parametrize("shell", SHELLS, ids=lambda shell: shell[0])
def test_script_output_parses_into_this_machines_facts(shell, home, tmp_path):
    workdir, markers = hostile_workdir(tmp_path)
    facts = parse_facts(run_script(workdir, home, shell=shell))

    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_total_kb = int(next(line for line in meminfo if line.startswith("MemTotal:")).split()[1])
    assert facts.platform == "linux"
    assert facts.arch == platform.machine()
    assert facts.memory_bytes == mem_total_kb * 1024
    assert facts.cpu_count == len(os.sched_getaffinity(0))
    assert (facts.uid, facts.home) == (os.getuid(), str(home))
    btime = next(line for line in Path("/proc/stat").read_text().splitlines()
                 if line.startswith("btime "))
    assert facts.booted_at == int(btime.split()[1])
    # "my dir" does not exist: the nearest existing ancestor is measured, and named.
    assert facts.disk_path == str(home)
    # Other writers on this disk move the figure between the two readings; a unit mistake
    # (512-byte blocks, KB vs KiB) would be off by far more than this.
    free = shutil.disk_usage(home).free
    assert abs(facts.disk_free_bytes - free) < max(4 * 1024**3, free // 20)
    assert not [marker for marker in markers if marker.exists()]


def test_hostile_workdir_is_taken_literally(home, tmp_path):
    workdir, markers = hostile_workdir(tmp_path)
    literal = home / workdir.removeprefix("~/")
    literal.mkdir(parents=True)

    facts = parse_facts(run_script(workdir, home))

    # The folder with that exact name was found and measured: nothing in it was expanded.
    assert facts.disk_path == str(literal)
    assert not [marker for marker in markers if marker.exists()]


@pytest.mark.parametrize("workdir, expected", [
    ("~", "{home}"),
    ("~/", "{home}"),
    ("~/provision", "{home}"),
    ("~/exists/not/yet", "{home}/exists"),
    ("{home}/exists/", "{home}/exists"),
    ("exists/deeper", "{home}/exists"),  # relative: from the login directory, as over SSH
    ("/nonexistent-root-folder/x", "/"),
    ("~other/provision", "{home}"),  # ~user is not expanded: no eval, so a relative name
])
def test_nearest_existing_ancestor_is_measured(workdir, expected, home):
    (home / "exists").mkdir()
    facts = parse_facts(run_script(workdir.format(home=home), home))
    assert facts.disk_path == expected.format(home=home)


def test_interpreters_are_found_on_path_and_deduplicated(home, tools):
    os.symlink(sys.executable, tools / "python3.12")
    os.symlink("python3.12", tools / "python3")  # same interpreter by another name
    write_tool(tools, "python3.13", 'echo "Python 3.13.1"\n')
    write_tool(tools, "python3.10", 'echo "pyenv: python3.10: command not found" >&2; exit 127\n')

    facts = parse_facts(run_script("~/provision", home, path=f"{tools}:/usr/bin:/bin"))

    ours = {p.path: p.version for p in facts.pythons if p.path.startswith(str(tools))}
    assert ours == {f"{tools}/python3.13": "3.13.1",
                    f"{tools}/python3.12": platform.python_version()}
    real_paths = [os.path.realpath(p.path) for p in facts.pythons]
    assert len(real_paths) == len(set(real_paths))
    assert f"{tools}/python3.12" in [p.path for p in facts.usable_pythons]


def test_gpus_and_brew_are_read_from_the_tools_on_path(home, tools):
    write_tool(tools, "nvidia-smi",
               '[ "$*" = "--query-gpu=name,memory.total --format=csv,noheader,nounits" ] '
               '|| exit 2\n'
               'printf "NVIDIA A100-SXM4-80GB, 81920\\nNVIDIA A100-SXM4-80GB, 81920\\n"\n')
    write_tool(tools, "brew", "exit 0\n")

    facts = parse_facts(run_script("~/provision", home, path=f"{tools}:/usr/bin:/bin"))

    assert [(gpu.name, gpu.memory_bytes) for gpu in facts.gpus] == [
        ("NVIDIA A100-SXM4-80GB", 80 * 1024**3)] * 2
    assert facts.homebrew == f"{tools}/brew"


def test_broken_nvidia_smi_means_no_gpus_not_a_failure(home, tools):
    write_tool(tools, "nvidia-smi",
               "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
               "driver.\"\nexit 9\n")
    assert parse_facts(run_script("~/provision", home, path=f"{tools}:/usr/bin:/bin")).gpus == ()


@pytest.mark.parametrize("shell", SHELLS, ids=lambda shell: shell[0])
def test_a_probe_that_reads_stdin_neither_swallows_the_script_nor_hangs(shell, home, tools):
    # The script arrives on the shell's stdin, which may stay open (an SSH channel before EOF):
    # a probe reading stdin would eat the rest of the script, or wait forever.
    write_tool(tools, "nvidia-smi", "cat >/dev/null\necho 'NVIDIA T4, 15360'\n")
    write_tool(tools, "python3.12", 'cat >/dev/null\necho "Python 3.12.4"\n')
    env = {"HOME": str(home), "PATH": f"{tools}:/usr/bin:/bin", "LC_ALL": "C"}
    process = subprocess.Popen(shell, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=env, cwd=home)
    try:
        process.stdin.write(facts_script("~/provision").encode())
        process.stdin.flush()  # and leave stdin open
        output = read_until(process.stdout, b"@@provision:end@@\n", seconds=20)
    finally:
        process.kill()
        process.wait()
        process.stdin.close()
        process.stdout.close()

    sections = split_sections(output)
    assert "end" in sections and "identity" in sections
    assert sections["nvidia_smi"] == "NVIDIA T4, 15360\n"


def read_until(stream, marker: bytes, seconds: float) -> str:
    """Read ``stream`` until ``marker`` arrives, EOF, or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    data = b""
    while marker not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.1)
        if ready:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                break
            data += chunk
    return data.decode()


def test_missing_commands_leave_sections_empty_not_the_script_dead(home, tools):
    # Only the essentials: no nproc, no grep, no df. The script still finishes.
    for name in ("uname", "cat", "id", "printf", "tr", "readlink", "pwd"):
        found = shutil.which(name)
        if found:
            os.symlink(found, tools / name)
    sections = split_sections(run_script("~/provision", home, path=str(tools)))
    assert "end" in sections
    assert sections["df"] == "" and sections["nproc"] == "" and sections["nvidia_smi"] == ""
    assert sections["kernel"] == "Linux\n"


def test_path_is_appended_to_never_prepended():
    script = facts_script("~/provision")
    assert 'PATH="${PATH:-/usr/bin:/bin}:/opt/homebrew/bin:/usr/local/bin' in script
    assert "PATH=/opt/homebrew" not in script and 'PATH="/opt/homebrew' not in script


def test_script_uses_no_eval():
    assert "eval" not in facts_script("$(reboot)").split()
