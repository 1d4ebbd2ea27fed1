"""Self-tests of the EMULATED launchd (fake_macos/bin/launchctl), caffeinate and df shims,
over real SSH to real sshd nodes (tests/harness/sshd.py). No tool under test is involved.

An SSH round trip costs ~0.3 s here, so most checks run several commands in one session
(``node.run_batch``: a tiny runner fed to the node's python on stdin; every command still runs
in the SSH session's environment, shims first on PATH).
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.request
from pathlib import Path
from typing import Optional

import pytest

from tests.harness import sshd

LABEL = "com.example.fakejob"

# The job: an HTTP server answering its own pid, that first records its pid, environment and
# working directory (one JSON line per start) where the test can read them.
JOB = r'''
import http.server, json, os, sys
port, record = int(sys.argv[1]), sys.argv[2]
with open(record, "a") as handle:
    handle.write(json.dumps({"pid": os.getpid(), "env": dict(os.environ), "cwd": os.getcwd()}) + "\n")
print("job started", os.getpid(), flush=True)
print("job stderr line", file=sys.stderr, flush=True)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''


def _plist(label: str, args: list[str], *, workdir: str, log: str, env: dict[str, str],
           keepalive: bool = True, run_at_load: bool = True, session: Optional[str] = "Background") -> str:
    strings = "".join(f"<string>{a}</string>" for a in args)
    envs = "".join(f"<key>{k}</key><string>{v}</string>" for k, v in env.items())
    session_xml = f"<key>LimitLoadToSessionType</key><string>{session}</string>" if session else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key><string>{label}</string>
  <key>ProgramArguments</key><array>{strings}</array>
  <key>WorkingDirectory</key><string>{workdir}</string>
  <key>EnvironmentVariables</key><dict>{envs}</dict>
  <key>StandardOutPath</key><string>{log}</string>
  <key>StandardErrorPath</key><string>{log}</string>
  <key>RunAtLoad</key><{'true' if run_at_load else 'false'}/>
  <key>KeepAlive</key><{'true' if keepalive else 'false'}/>
  {session_xml}
</dict>
</plist>
"""


def _put(node: sshd.SshNode, path: str, text: str, mode: int = 0o644) -> None:
    """Write a file into the node user's home as that user would (owner, mode), locally."""
    target = Path(path)
    created = []
    folder = target.parent
    while not folder.exists():
        created.append(folder)
        folder = folder.parent
    for new in reversed(created):
        new.mkdir(mode=0o755)
    target.write_text(text)
    os.chmod(target, mode)
    if os.geteuid() == 0:
        for item in [*created, target]:
            os.chown(item, node.uid, node.gid)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_pid(port: int, timeout: float = 10) -> int:
    """The pid the job answers with, once its port answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{port}/", timeout=2
            ) as response:
                return int(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _port_closed(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _printed_pid(text: str) -> Optional[int]:
    found = re.search(r"^\tpid = (\d+)$", text, re.M)
    return int(found.group(1)) if found else None


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _install_job(node: sshd.SshNode, port: int, **plist_kw) -> tuple[str, str, str]:
    """Write the job script and its plist into the node's home; return (plist, log, record)."""
    home = str(node.home)
    plist = f"{home}/Library/LaunchAgents/{LABEL}.plist"
    log, record, workdir = f"{home}/logs/job.log", f"{home}/job-starts.jsonl", f"{home}/work"
    _put(node, f"{home}/job.py", JOB)
    _put(node, f"{workdir}/.keep", "")
    _put(node, f"{home}/logs/.keep", "")
    _put(node, plist, _plist(LABEL, ["/usr/bin/python3", f"{home}/job.py", str(port), record], workdir=workdir,
                             log=log, env={"PYTORCH_ENABLE_MPS_FALLBACK": "1", "FROM_PLIST": "yes"}, **plist_kw))
    return plist, log, record


def _starts(record: str) -> list[dict]:
    path = Path(record)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_launchagent_runs_detached_with_launchd_env_and_keepalive_restarts_after_kill(node_factory):
    node = node_factory()
    node.fake_macos_set(launchd_throttle_seconds=1.5)
    port = _free_port()
    plist, log, record = _install_job(node, port)
    target = f"user/{node.uid}/{LABEL}"

    # The caller's environment (CALLER_ONLY) must not reach the job; the SSH session that
    # bootstraps ends right away (node.ssh returns only once every descriptor is closed).
    started = time.monotonic()
    boot = node.ssh(f"CALLER_ONLY=leak launchctl bootstrap user/$(id -u) {plist}", check=False, timeout=20)
    assert (boot.returncode, boot.stdout, boot.stderr) == (0, "", "")
    assert time.monotonic() - started < 10

    first = _get_pid(port)
    (rc, text, err), (_, listed, _) = node.run_batch(f"launchctl print {target}", "launchctl list")
    assert rc == 0, err
    assert text.startswith(f"{LABEL} = {{\n") and text.endswith("}\n")
    for line in ("\tactive count = 1", f"\tpath = {plist}", "\tstate = running", "\truns = 1",
                 "\tprogram = /usr/bin/python3", "\tlast exit code = (never exited)", f"\tdomain = user/{node.uid}"):
        assert line in text.splitlines(), (line, text)
    assert _printed_pid(text) == first
    assert listed.splitlines() == ["PID\tStatus\tLabel", f"{first}\t0\t{LABEL}"]

    (start,) = _starts(record)
    env = start["env"]
    assert start["pid"] == first and start["cwd"] == f"{node.home}/work"
    assert env["FROM_PLIST"] == "yes" and env["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
    assert env["FAKE_MACOS_MPS"] == "1"  # the Background session's launchd.env
    assert "CALLER_ONLY" not in env
    assert "SSH_CONNECTION" not in env and "GIT_CONFIG_SYSTEM" not in env  # not the SSH session's env
    assert env["PATH"] == "/usr/bin:/bin:/usr/sbin:/sbin"  # launchd's default, no shims
    assert env["HOME"] == str(node.home) and env["USER"] == node.user == env["LOGNAME"]
    assert env["TMPDIR"].endswith("/") and env["XPC_SERVICE_NAME"] == LABEL
    logged = Path(log).read_text()
    assert f"job started {first}" in logged and "job stderr line" in logged

    # The job outlives every SSH connection: sshd gone (connections cut), the job still answers.
    node.stop()
    assert _get_pid(port) == first
    node.start()

    # Crash recovery: kill -9 the job's pid -> launchd (KeepAlive) respawns it after the throttle.
    svc = node.launchd_service(LABEL)
    assert svc is not None and svc["pid"] == first and svc["runs"] == 1
    node.ssh(f"kill -9 {first}")
    second = _get_pid(port)
    assert second != first and not _pid_alive(first)
    respawned = node.launchd_service(LABEL)
    assert respawned["runs"] == 2 and respawned["pid"] == second
    # Never two spawns closer than the (emulated) throttle interval.
    assert respawned["last_spawn"] - svc["last_spawn"] >= 1.5
    after = node.ssh(f"launchctl print {target}").stdout
    assert _printed_pid(after) == second
    assert "\truns = 2" in after and "\tlast terminating signal = Killed: 9" in after
    assert len(_starts(record)) == 2

    calls = node.launchctl_calls()
    assert calls[0]["argv"] == ["bootstrap", f"user/{node.uid}", plist] and calls[0]["exit"] == 0
    assert [call["argv"][0] for call in calls] == ["bootstrap", "print", "list", "print"]
    assert all(call["tool"] == "launchctl" and call["uid"] == node.uid for call in calls)


def test_throttle_spaces_respawns_of_a_crashing_job(node_factory):
    node = node_factory()
    node.fake_macos_set(launchd_throttle_seconds=1)
    home = str(node.home)
    plist = f"{home}/crash.plist"
    _put(node, plist, _plist("com.example.crash", ["/bin/sh", "-c", "echo boom; exit 3"],
                             workdir=home, log=f"{home}/crash.log", env={}))
    started = time.monotonic()
    node.ssh(f"launchctl bootstrap user/{node.uid} {plist}")
    shown, runs = "", 0
    # Poll for the state asserted below: the third run over and the fourth waiting out the throttle
    # (caught mid-respawn, print shows the job running instead).
    while time.monotonic() - started < 30:
        (_, shown, _), = node.run_batch(f"launchctl print user/{node.uid}/com.example.crash")
        match = re.search(r"^\truns = (\d+)$", shown, re.M)
        runs = int(match.group(1)) if match else 0
        if runs >= 3 and "\tstate = spawn scheduled" in shown:
            break
    elapsed = time.monotonic() - started
    (rc, _, _), = node.run_batch(f"launchctl bootout user/{node.uid}/com.example.crash")
    assert rc == 0
    # It exits at once, yet is respawned no more often than once per (emulated) throttle second:
    # three runs take at least two seconds, and no more runs than whole seconds passed, plus one.
    assert runs >= 3, shown
    assert elapsed >= 2.0, f"{runs} runs in {elapsed:.2f} s"
    assert runs <= int(elapsed) + 1, f"{runs} runs in {elapsed:.2f} s"
    assert "\tlast exit code = 3" in shown and "\tstate = spawn scheduled" in shown
    assert Path(f"{home}/crash.log").read_text().count("boom\n") >= runs


def test_kickstart_bootout_and_error_answers(node_factory):
    node = node_factory()
    port = _free_port()
    plist, _log, record = _install_job(node, port)
    uid = node.uid
    target = f"user/{uid}/{LABEL}"
    node.ssh(f"launchctl bootstrap user/{uid} {plist}")
    first = _get_pid(port)

    again, other, kicked, shown, soft, shown2 = node.run_batch(
        f"launchctl bootstrap user/{uid} {plist}",
        f"launchctl bootstrap user/{uid + 1} {plist}",
        # kickstart -k: the running instance is killed, a new one starts at once (no throttle).
        f"launchctl kickstart -k {target}",
        f"launchctl print {target}",
        # kickstart without -k leaves a running job alone.
        f"launchctl kickstart {target}",
        f"launchctl print {target}",
    )
    assert (again[0], again[2].splitlines()[0]) == (5, "Bootstrap failed: 5: Input/output error")
    assert (other[0], other[2].splitlines()[0]) == (5, "Bootstrap failed: 5: Input/output error")
    assert kicked[0] == 0, kicked[2]
    second = _printed_pid(shown[1])
    assert second is not None and second != first and not _pid_alive(first)
    assert "\tlast terminating signal = Terminated: 15" in shown[1]
    assert soft[0] == 0 and _printed_pid(shown2[1]) == second
    assert _get_pid(port) == second

    out, gone, twice, kick, unknown, listed = node.run_batch(
        f"launchctl bootout {target}",
        f"launchctl print {target}",
        f"launchctl bootout {target}",
        f"launchctl kickstart -k {target}",
        f"launchctl print user/{uid}/com.example.nope",
        "launchctl list",
    )
    assert out == (0, "", "")
    assert not _pid_alive(second) and _port_closed(port)
    not_found = f'Could not find service "{LABEL}" in domain for user: {uid}\n'
    assert gone == (113, "", not_found)
    assert twice == (3, "", "Boot-out failed: 3: No such process\n")
    assert kick == (113, "", not_found)
    assert unknown == (113, "", f'Could not find service "com.example.nope" in domain for user: {uid}\n')
    assert listed == (0, "PID\tStatus\tLabel\n", "")

    # Booted out, it can be bootstrapped again; the plist form of bootout works too.
    node.ssh(f"launchctl bootstrap user/{uid} {plist}")
    third = _get_pid(port)
    assert third not in (first, second)
    node.ssh(f"launchctl bootout user/{uid} {plist}")
    assert _port_closed(port) and node.launchd_service(LABEL) is None and not _pid_alive(third)
    assert [start["pid"] for start in _starts(record)] == [first, second, third]

    codes = [(call["argv"][0], call["exit"]) for call in node.launchctl_calls()]
    assert codes[:4] == [("bootstrap", 0), ("bootstrap", 5), ("bootstrap", 5), ("kickstart", 0)]
    assert codes[-2:] == [("bootstrap", 0), ("bootout", 0)]


def test_bootstrap_refusals_and_a_job_without_keepalive(node_factory):
    node = node_factory()
    home, uid = str(node.home), node.uid
    _put(node, f"{home}/aqua.plist", _plist("com.example.aqua", ["/bin/sleep", "100"], workdir=home,
                                            log=f"{home}/a.log", env={}, session=None))
    _put(node, f"{home}/w.plist", _plist("com.example.w", ["/bin/sleep", "100"], workdir=home,
                                         log=f"{home}/w.log", env={}), mode=0o666)
    # KeepAlive false: the job runs once; kickstart (no -k) runs it again.
    _put(node, f"{home}/once.plist", _plist("com.example.once", ["/bin/sh", "-c", "exit 7"], workdir=home,
                                            log=f"{home}/once.log", env={}, keepalive=False))
    aqua, missing, writable, gui, once = node.run_batch(
        f"launchctl bootstrap user/{uid} {home}/aqua.plist",
        f"launchctl bootstrap user/{uid} {home}/nope.plist",
        f"launchctl bootstrap user/{uid} {home}/w.plist",
        f"launchctl bootstrap gui/{uid} {home}/once.plist",
        f"launchctl bootstrap user/{uid} {home}/once.plist",
    )
    # No LimitLoadToSessionType means Aqua: not loadable in the user domain's Background session.
    assert aqua == (134, "", "Bootstrap failed: 134: Service cannot load in requested session\n")
    assert missing[0] == 2
    assert writable[0] == 5  # group/world-writable plists are refused
    assert gui[0] == 125  # no GUI login on an SSH-only node
    assert once[0] == 0, once
    print_once = f"launchctl print user/{uid}/com.example.once"
    shown = _wait(lambda: (lambda t: t if "\tlast exit code = 7" in t else None)(node.ssh(print_once).stdout),
                  5, "the job to exit")
    assert "\tstate = not running" in shown and "\tactive count = 0" in shown
    assert _printed_pid(shown) is None and "\truns = 1" in shown
    node.ssh(f"launchctl kickstart user/{uid}/com.example.once")
    _wait(lambda: (node.launchd_service("com.example.once") or {}).get("runs") == 2, 5, "a second run")
    assert node.launchd_service("com.example.aqua") is None and node.launchd_service("com.example.w") is None


def test_launchd_env_set_changes_what_new_jobs_get(node_factory):
    node = node_factory()
    assert node.launchd_env_set(FAKE_MACOS_MPS="0", EXTRA="x") == {"FAKE_MACOS_MPS": "0", "EXTRA": "x"}
    assert node.launchd_env_set(EXTRA=None) == {"FAKE_MACOS_MPS": "0"}
    home = str(node.home)
    plist = f"{home}/env.plist"
    _put(node, plist, _plist("com.example.env", ["/bin/sh", "-c", "env > env.txt"],
                             workdir=home, log=f"{home}/env.log", env={"A": "b"}, keepalive=False))
    node.ssh(f"launchctl bootstrap user/{node.uid} {plist}")
    env = _wait(lambda: Path(f"{home}/env.txt").exists() and Path(f"{home}/env.txt").read_text(), 5, "env.txt")
    assert "FAKE_MACOS_MPS=0\n" in env and "A=b\n" in env and "EXTRA=" not in env


def test_caffeinate_waits_for_the_watched_pid(node_factory):
    node = node_factory()
    (rc, out, err), utility, bad = node.run_batch(
        "sleep 1.2 & w=$!; s=$(date +%s%N); caffeinate -dimsu -w $w; echo rc=$?; "
        "kill -0 $w 2>/dev/null || echo gone; echo ms=$(( ($(date +%s%N) - s) / 1000000 ))",
        "caffeinate -d -i sh -c 'exit 4'",
        "caffeinate -x",
    )
    lines = out.splitlines()
    assert lines[:2] == ["rc=0", "gone"], (out, err)
    assert 1000 < int(lines[2].split("=")[1]) < 5000
    assert utility[0] == 4  # runs the utility, exits with its status
    assert bad[0] == 1 and "usage: caffeinate" in bad[2]
    calls = node.caffeinate_calls()
    assert [call["argv"][:2] for call in calls[:2]] == [["-dimsu", "-w"], ["-d", "-i"]]


def test_df_prints_the_configured_free_space_or_the_real_df(node_factory):
    node = node_factory()
    (_, real, _), = node.run_batch("df -Pk ~")
    assert "/dev/disk3s5" not in real and real.startswith("Filesystem")
    node.fake_macos_set(disk_free_kb=123456789)
    (_, big, _), = node.run_batch("df -Pk ~")
    lines = big.splitlines()
    assert len(lines) == 2
    assert lines[0].split() == ["Filesystem", "1024-blocks", "Used", "Available", "Capacity", "Mounted", "on"]
    fs, total, used, avail, capacity, mount = lines[1].split()
    assert (fs, int(avail), mount) == ("/dev/disk3s5", 123456789, "/System/Volumes/Data")
    assert int(total) == int(used) + int(avail) and re.fullmatch(r"\d+%", capacity)
    node.fake_macos_set(disk_free_kb=1000, disk_total_kb=4000)
    kilo, half, missing = node.run_batch("df -Pk /", "df -P /", "df -Pk /no/such/dir")
    assert kilo[1].splitlines()[1].split()[1:5] == ["4000", "3000", "1000", "75%"]
    assert half[1].splitlines()[0].split()[1] == "512-blocks"
    assert half[1].splitlines()[1].split()[1:4] == ["8000", "6000", "2000"]
    assert (missing[0], missing[2]) == (1, "df: /no/such/dir: No such file or directory\n")
    node.fake_macos_set(disk_free_kb=None, disk_total_kb=None)
    (_, back, _), = node.run_batch("df -Pk ~")
    assert "/dev/disk3s5" not in back and back.startswith("Filesystem")


def test_linux_nodes_have_no_launchctl(node_factory):
    node = node_factory(platform="linux")
    assert node.ssh("command -v launchctl caffeinate || echo none").stdout == "none\n"
    with pytest.raises(sshd.HarnessError):
        node.launchctl_calls()


# --- resource limits, plist ownership, a transient bootstrap error -----------------------------

EIO = "Bootstrap failed: 5: Input/output error\nTry re-running the command as root for richer errors.\n"


def _with_keys(plist_text: str, extra: str) -> str:
    """Add top-level keys to a plist made by _plist."""
    assert plist_text.count("</dict>\n</plist>") == 1
    return plist_text.replace("</dict>\n</plist>", f"  {extra}\n</dict>\n</plist>")


def _nofile(soft: Optional[int] = None, hard: Optional[int] = None) -> str:
    keys = ""
    for key, value in (("SoftResourceLimits", soft), ("HardResourceLimits", hard)):
        if value is not None:
            keys += f"<key>{key}</key><dict><key>NumberOfFiles</key><integer>{value}</integer></dict>"
    return keys


def _open_files(pid: int) -> tuple[str, str]:
    """(soft, hard) "Max open files" of a process, as /proc/<pid>/limits shows them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError(f"no open-files line in /proc/{pid}/limits")


def test_number_of_files_limits_reach_the_job(node_factory):
    node = node_factory()
    home, uid = str(node.home), node.uid
    (rc, out, _), = node.run_batch("ulimit -Hn")
    assert rc == 0
    hard = int(out) if out.strip() != "unlimited" else 1 << 20  # the session's (and launchctl's) hard limit
    jobs = {
        "com.example.nofile.set": (_nofile(soft=1000, hard=hard - 1), ("1000", str(hard - 1))),
        "com.example.nofile.default": ("", ("256", str(hard))),  # launchd's 256 for LaunchAgents
        "com.example.nofile.soft": (_nofile(soft=4000), ("4000", str(hard))),
        # launchd (root) could raise the hard limit; the emulation (the user) cannot, and says so.
        "com.example.nofile.raise": (_nofile(hard=hard + 1000), ("256", str(hard))),
    }
    for label, (keys, _) in jobs.items():
        _put(node, f"{home}/{label}.plist", _with_keys(
            _plist(label, ["/bin/sleep", "100"], workdir=home, log=f"{home}/{label}.log", env={}, keepalive=False),
            keys))
    booted = node.run_batch(*(f"launchctl bootstrap user/{uid} {home}/{label}.plist" for label in jobs))
    assert booted == [(0, "", "")] * len(jobs)
    for label, (_, expected) in jobs.items():
        pid = _wait(lambda label=label: (node.launchd_service(label) or {}).get("pid"), 10, f"the pid of {label}")
        assert _open_files(pid) == expected, label
    supervisor_log = node.fake_macos_state / "launchd" / "com.example.nofile.raise.supervisor.log"
    assert f"the hard open-files limit stays {hard} (asked {hard + 1000}" in supervisor_log.read_text()
    # A limit that is not a number is refused like any other bad plist.
    _put(node, f"{home}/bad.plist", _with_keys(
        _plist("com.example.nofile.bad", ["/bin/sleep", "1"], workdir=home, log=f"{home}/b.log", env={}),
        "<key>SoftResourceLimits</key><dict><key>NumberOfFiles</key><string>many</string></dict>"))
    (rc, _, err), = node.run_batch(f"launchctl bootstrap user/{uid} {home}/bad.plist")
    assert rc == 5 and "SoftResourceLimits.NumberOfFiles is not a non-negative integer" in err


def test_bootstrap_refuses_a_plist_with_bad_ownership_or_permissions(node_factory):
    node = node_factory()
    home, uid = str(node.home), node.uid
    args = {"workdir": home, "log": f"{home}/j.log", "env": {}, "keepalive": False}
    _put(node, f"{home}/open.plist", _plist("com.example.open", ["/bin/sleep", "100"], **args), mode=0o666)
    _put(node, f"{home}/group.plist", _plist("com.example.group", ["/bin/sleep", "100"], **args), mode=0o664)
    _put(node, f"{home}/other.plist", _plist("com.example.other", ["/bin/sleep", "100"], **args))
    _put(node, f"{home}/good.plist", _plist("com.example.good", ["/bin/sleep", "100"], **args))
    if os.geteuid() == 0:
        os.chown(f"{home}/other.plist", 65534, 65534)  # nobody's
    refused = node.run_batch(*(f"launchctl bootstrap user/{uid} {home}/{name}.plist" for name in ("open", "group", "other")))
    good, = node.run_batch(f"launchctl bootstrap user/{uid} {home}/good.plist")
    names = ("open", "group", "other") if os.geteuid() == 0 else ("open", "group")
    for (rc, out, err), name in zip(refused, names):
        assert (rc, out) == (5, "") and err.startswith(EIO), (name, err)
    assert good == (0, "", "")
    log = (node.fake_macos_state / "launchd.log").read_text().splitlines()
    assert len(log) == len(names)
    for line, name in zip(log, names):
        assert f"(user/{uid}) <Error>: Path had bad ownership/permissions: {home}/{name}.plist" in line
    assert "mode 0666" in log[0] and "mode 0664" in log[1]
    for name in ("open", "group", "other"):
        assert node.launchd_service(f"com.example.{name}") is None


def test_bootstrap_eio_once_fails_one_bootstrap_then_turns_itself_off(node_factory):
    node = node_factory(fake_macos_values={"launchd_bootstrap_eio_once": True})
    home, uid = str(node.home), node.uid
    arm = node.fake_macos_state / "launchd" / "bootstrap_eio_once"
    assert arm.exists()
    for label in ("com.example.eio", "com.example.eio2"):
        _put(node, f"{home}/{label}.plist", _plist(label, ["/bin/sleep", "100"], workdir=home,
                                                     log=f"{home}/e.log", env={}, keepalive=False))
    plist = f"{home}/com.example.eio.plist"
    boot, bootout = f"launchctl bootstrap user/{uid} {plist}", f"launchctl bootout user/{uid}/com.example.eio"
    first, second, shown = node.run_batch(boot, boot.replace("eio.plist", "eio2.plist"), f"launchctl print user/{uid}/com.example.eio2")
    assert first == (5, "", EIO)
    assert second == (0, "", "") and shown[0] == 0
    assert not arm.exists()
    assert "launchd_bootstrap_eio_once" in (node.fake_macos_state / "launchd.log").read_text()

    # Not remembered as an input: changing another value does not arm it again.
    node.fake_macos_set(memory_gb=32)
    assert not arm.exists()
    assert node.run_batch(boot, bootout) == [(0, "", "")] * 2
    # Armed again it fails once more; false disarms it.
    node.fake_macos_set(launchd_bootstrap_eio_once=True)
    assert arm.exists()
    node.fake_macos_set(launchd_bootstrap_eio_once=False)
    assert not arm.exists()
    assert node.run_batch(boot, bootout) == [(0, "", "")] * 2
    node.fake_macos_set(launchd_bootstrap_eio_once=True)
    assert node.run_batch(boot, boot) == [(5, "", EIO), (0, "", "")]
    assert node.run_batch(bootout) == [(0, "", "")]

    # Two bootstraps at once: exactly one of them takes the failure.
    assert node.run_batch(f"launchctl bootout user/{uid}/com.example.eio2") == [(0, "", "")]
    node.fake_macos_set(launchd_bootstrap_eio_once=True)
    (_, out, err), = node.run_batch(f"({boot}; echo a=$?) & ({boot.replace('eio.plist', 'eio2.plist')}; echo b=$?) & wait")
    assert sorted(line.split("=")[1] for line in out.split()) == ["0", "5"], (out, err)
    assert err == EIO and not arm.exists()
    loaded = [label for label in ("com.example.eio", "com.example.eio2") if node.launchd_service(label)]
    assert len(loaded) == 1
    codes = [(call["argv"][0], call["exit"]) for call in node.launchctl_calls()]
    assert codes[0] == ("bootstrap", 5) and codes[1] == ("bootstrap", 0)
