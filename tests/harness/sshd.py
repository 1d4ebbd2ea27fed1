"""Real OpenSSH sshd "nodes" on 127.0.0.1 for tests: SSH is never mocked.

``start_node(base_dir)`` starts Debian's own ``/usr/sbin/sshd`` with a config of its own
(random free port on 127.0.0.1, an ed25519 host key and an ed25519 client key generated per
node, public-key auth only) and returns an ``SshNode`` that tests point the tool at.

Who the node's user is:

- As root (the normal case here) each node gets a throwaway Unix user ``pvn<8 hex>``
  (``useradd``; GECOS ``provision-test-harness pid=<pid> start=<ticks>`` names the owning test
  process). Its node folder (keys, sshd_config, sshd.log, shims, and the user's ``home/``) is
  ``/tmp/provision-harness/<user>/`` (``PROVISION_HARNESS_ROOT``), NOT under ``base_dir``:
  every pytest session that starts chmods ``/tmp/pytest-of-root`` back to 0700, which would
  lock the node users of any concurrently running session out of their homes. ``base_dir``
  gets a symlink ``<name>-<user>`` to the node folder; ``destroy()`` kills the user's
  processes, runs ``userdel``, removes the folder and leaves a copy of sshd.log and
  sshd_config in ``base_dir/<name>-<user>/``. Users left by a killed test run (owner process
  gone) are removed by ``cleanup_stale_nodes()``, which the first ``start_node`` of a process
  and the conftest session fixture run.
- Not as root: the node user is the current user and sshd runs as that user (sshd can then
  only authenticate itself); the node folder is ``<base_dir>/<name>-<rand>/``.
  ``SetEnv HOME=<node home>`` gives the node its own ``$HOME``; sshd still ``chdir``s to the
  passwd home before a command, so the initial working directory and sftp-relative paths are
  the REAL home in that mode. StrictModes is off there.

EMULATION: a ``platform="macos"`` node is Linux pretending to be a Mac. Its sshd puts the
node's own copy of ``fake_macos/bin`` (``sysctl``, ``sw_vers``, ``uname``, ``vm_stat``,
``memory_pressure``, ``xcode-select``, ``df``, and ``launchctl`` / ``caffeinate``, an emulated
launchd user domain) first on PATH for every session through
``SetEnv PATH=...`` in sshd_config (verified to override sshd's compiled-in default PATH for
exec, shell and subsystem sessions). A ``platform="linux"`` node has no shims. Both then have
``/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin``, so ``python3`` is Debian's /usr/bin/python3.
Values the shims print live in ``<node>/fake_macos/values.env``; ``fake_macos_set()`` rewrites
it while the node runs. The emulated launchd keeps its state in ``<node>/fake_macos/state/``
(owned by the node user): ``launchctl_calls()``, ``caffeinate_calls()``, ``launchd_service()``
read it, ``launchd_env_set()`` changes what jobs get from the "Background session"
(fake_macos/README.md, "launchctl"). ``GIT_CONFIG_SYSTEM`` points at a harness gitconfig with
``safe.directory=*`` so the node user can clone test repos owned by root (FACTS.md).

PROVIDER PROFILES (EMULATION): ``start_node(profile="homebrew" | "homebrew-3.13" | "aws" |
"scaleway" | "scaleway-no-python" | "bare")`` makes a macOS node look like what a provider
hands out (fake_macos/profiles.py): its sshd runs in a private mount namespace where /opt
(Homebrew, MacPorts) and /usr/bin (python3 and git stubs, no Debian python) are the profile's.
``profiles_supported()`` says why a machine cannot (then ``start_node`` raises
``ProfileUnavailable``); ``SshNode.stub_calls()`` reads what the stubs, brew and port were asked.

Counting round trips: sshd logs at ``LogLevel DEBUG1`` to ``sshd_log``; ``connection_counts()``
counts its lines (see ``LOG_PATTERNS``), independently of the tool under test.
"""

from __future__ import annotations

import atexit
import fcntl
import getpass
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional
from urllib.parse import quote

from . import fake_macos
from .fake_macos import profiles as fake_profiles

SSHD = Path(os.environ.get("PROVISION_HARNESS_SSHD", "/usr/sbin/sshd"))
SSH = "ssh"
SSH_KEYGEN = "ssh-keygen"
HOST = "127.0.0.1"
NODE_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
NODE_PYTHON = "/usr/bin/python3"
# Fed on stdin to the node's Python by SshNode.run_batch: many commands, one SSH session.
_BATCH_RUNNER = """import json, subprocess
results = []
for command in {commands!r}:
    done = subprocess.run(command, shell=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    results.append([done.returncode, done.stdout, done.stderr])
print(json.dumps(results))
"""
USER_PREFIX = "pvn"
GECOS_MARKER = "provision-test-harness"
PRIVSEP_DIR = Path("/run/sshd")
# Where node folders live when running as root. NOT under pytest's basetemp: every pytest
# session that starts resets /tmp/pytest-of-<user> to 0700, which would cut the node users
# of a concurrently running session off their own homes and shims.
NODES_ROOT = Path(os.environ.get("PROVISION_HARNESS_ROOT", "/tmp/provision-harness"))

# sshd log lines counted by connection_counts(), and the level each needs (we log DEBUG1).
LOG_PATTERNS: dict[str, re.Pattern[str]] = {
    # VERBOSE: one per accepted TCP connection (also keyscans and failed handshakes).
    "connections": re.compile(r"^Connection from \S+ port \d+ on \S+ port \d+"),
    # INFO: one per successful user authentication (= one SSH connection that logged in).
    "auths": re.compile(r"^Accepted publickey for \S+ from "),
    # VERBOSE: one per session channel, by type (exec = one remote command).
    "exec": re.compile(r"^Starting session: (command|forced-command)"),
    "shell": re.compile(r"^Starting session: shell"),
    "sftp": re.compile(r"^Starting session: subsystem 'sftp'"),
    "subsystem": re.compile(r"^Starting session: subsystem"),
    "sessions": re.compile(r"^Starting session: "),
    # DEBUG1: one per direct-tcpip channel (ssh -L / paramiko forwards, i.e. tunnels).
    "forwards": re.compile(r"^debug1: server_request_direct_tcpip: originator "),
}

_LOCK = threading.RLock()  # useradd/userdel and the registry of live nodes
_LIVE: "set[SshNode]" = set()
_STALE_CLEANED = False
_PORTS_HANDED_OUT: set[int] = set()


class HarnessError(RuntimeError):
    """The test harness itself could not do its job (not a failure of the tool)."""


class ProfileUnavailable(HarnessError):
    """Provider profiles cannot run on this machine (the reason is the message): skip."""


def profiles_supported() -> Optional[str]:
    """None when ``start_node(profile=...)`` can work here, else the reason (checked once)."""
    return fake_profiles.supported()


def _debug(message: str) -> None:
    if os.environ.get("HARNESS_DEBUG"):
        print(f"[harness] {message}", flush=True)


def is_root() -> bool:
    return os.geteuid() == 0


def require_sshd() -> None:
    """Raise HarnessError (with the fix) unless OpenSSH's sshd, ssh and ssh-keygen are here."""
    missing = [str(SSHD)] if not os.access(SSHD, os.X_OK) else []
    missing += [tool for tool in (SSH, SSH_KEYGEN) if shutil.which(tool) is None]
    if missing:
        raise HarnessError(
            f"OpenSSH is required by the test harness but {', '.join(missing)} is missing: "
            "install it (Debian: apt-get install openssh-server openssh-client). "
            "Tests never mock SSH and never skip for want of sshd."
        )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now (sshd binding it may still race)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        with _LOCK:
            if port not in _PORTS_HANDED_OUT:
                _PORTS_HANDED_OUT.add(port)
                return port
    raise HarnessError("could not find a free port on 127.0.0.1")


# --- processes (/proc) -------------------------------------------------------------------


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    uid: int
    start: int  # clock ticks since boot: with pid, identifies a process across pid reuse
    state: str  # R, S, D, Z (zombie: dead, waiting to be reaped), ...
    comm: str
    cmdline: tuple[str, ...]


def _read_proc(pid: int) -> Optional[_Proc]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "Uid: -1")
    return _Proc(
        pid=pid,
        ppid=int(fields[1]),
        uid=int(uid_line.split()[1]),
        start=int(fields[19]),
        state=fields[0],
        comm=comm,
        cmdline=tuple(part.decode(errors="replace") for part in cmdline.split(b"\0") if part),
    )


def _processes() -> list[_Proc]:
    procs = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = _read_proc(int(entry))
            if proc is not None:
                procs.append(proc)
    return procs


def _descendants(procs: list[_Proc], root_pid: int) -> list[_Proc]:
    children: dict[int, list[_Proc]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    found, todo = [], [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def _kill(proc: _Proc, sig: int = signal.SIGKILL) -> None:
    """Signal one process by pid, only if it is still the same process (pid + start time)."""
    current = _read_proc(proc.pid)
    if current is None or current.start != proc.start:
        return
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass


def _own_identity() -> str:
    me = _read_proc(os.getpid())
    return f"pid={os.getpid()} start={me.start if me else 0}"


def _owner_alive(gecos: str) -> bool:
    match = re.search(r"pid=(\d+) start=(\d+)", gecos)
    if not match:
        return False
    proc = _read_proc(int(match.group(1)))
    return proc is not None and proc.start == int(match.group(2))


# --- users -------------------------------------------------------------------------------


def _run_locked(argv: list[str], what: str) -> subprocess.CompletedProcess[str]:
    """Run useradd/userdel, retrying while another process holds the passwd/group locks."""
    deadline = time.monotonic() + 20
    while True:
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode == 0:
            return result
        if "lock" in result.stderr.lower() and time.monotonic() < deadline:
            time.sleep(0.05 + secrets.randbelow(50) / 1000)
            continue
        raise HarnessError(f"{what} failed ({result.returncode}): {result.stderr.strip()}")


def _kill_user_processes(uid: int) -> None:
    for _ in range(50):
        # Zombies are dead already; an orphaned one waits for PID 1 to reap it.
        procs = [proc for proc in _processes() if proc.uid == uid and proc.state != "Z"]
        if not procs:
            return
        for proc in procs:
            _kill(proc)
        time.sleep(0.02)
    raise HarnessError(f"processes of uid {uid} survive SIGKILL")


def _delete_user(user: str, uid: int, home: Optional[Path]) -> None:
    with _LOCK:
        for attempt in range(10):
            _kill_user_processes(uid)
            result = subprocess.run(["userdel", user], capture_output=True, text=True)
            if result.returncode in (0, 6):  # 6: no such user (already gone)
                break
            _debug(f"userdel {user}: {result.returncode} {result.stderr.strip()}")
            if "currently used by process" in result.stderr or "lock" in result.stderr.lower():
                time.sleep(0.05 * (attempt + 1))
                continue
            raise HarnessError(f"userdel {user} failed: {result.stderr.strip()}")
    if home is not None and home.is_dir():
        shutil.rmtree(home, ignore_errors=True)


def cleanup_stale_nodes() -> list[str]:
    """Remove ``pvn*`` harness users (and their sshd and processes) whose test run is gone.

    A user belongs to a live run while the process named in its GECOS field (pid + start
    time) still exists, so concurrent test runs never remove each other's nodes.
    Returns the names removed. A no-op when not root.
    """
    if not is_root():
        return []
    # Parallel test workers each clean up at start: one at a time, so no two of them race
    # to kill and delete the same stale user.
    with open(nodes_root() / ".cleanup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _cleanup_stale_locked()


def _cleanup_stale_locked() -> list[str]:
    removed = []
    for entry in pwd.getpwall():
        if not entry.pw_name.startswith(USER_PREFIX) or not entry.pw_gecos.startswith(GECOS_MARKER):
            continue
        if _owner_alive(entry.pw_gecos):
            continue
        home = Path(entry.pw_dir)
        config = str(home.parent / "sshd_config")
        for proc in _processes():
            # sshd rewrites its title: "sshd: /usr/sbin/sshd -D -f <config> ... [listener] ..."
            if proc.comm == "sshd" and f" -f {config} " in " ".join(proc.cmdline) + " ":
                _kill(proc)
        _delete_user(entry.pw_name, entry.pw_uid, None)
        if home.parent.parent == NODES_ROOT:
            shutil.rmtree(home.parent, ignore_errors=True)
        removed.append(entry.pw_name)
    if NODES_ROOT.is_dir():
        # Folders whose user is gone (a run killed between userdel and rmtree).
        for folder in NODES_ROOT.glob(USER_PREFIX + "*"):
            try:
                pwd.getpwnam(folder.name)
            except KeyError:
                shutil.rmtree(folder, ignore_errors=True)
        # Shared folders of dead runs: shared-pid=<pid>-start=<ticks>-<rand>.
        for folder in NODES_ROOT.glob("shared-*"):
            owner = folder.name.replace("-start=", " start=").replace("shared-", "", 1)
            if not _owner_alive(owner):
                shutil.rmtree(folder, ignore_errors=True)
    return removed


def shared_dir() -> Path:
    """Create a folder every node user can read (test repos, wheelhouses, model files).

    Files under pytest's tmp_path are NOT readable by node users (pytest keeps its basetemp
    0700). As root this returns ``/tmp/provision-harness/shared-<owner>-<rand>/`` (0755,
    owned by root; write there as root, then make files world-readable); the caller removes
    it, else ``cleanup_stale_nodes()`` does once this process is gone. Not as root, a plain
    temporary folder.
    """
    if not is_root():
        return Path(tempfile.mkdtemp(prefix="provision-shared-"))
    owner = _own_identity().replace(" ", "-")
    folder = nodes_root() / f"shared-{owner}-{secrets.token_hex(4)}"
    folder.mkdir(mode=0o755)
    return folder


def _cleanup_stale_once() -> None:
    global _STALE_CLEANED
    with _LOCK:
        if not _STALE_CLEANED:
            _STALE_CLEANED = True
            cleanup_stale_nodes()


def nodes_root() -> Path:
    """Return (creating it) the root-owned folder that holds node folders when root."""
    NODES_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    info = NODES_ROOT.lstat()
    if NODES_ROOT.is_symlink() or info.st_uid != 0 or info.st_mode & 0o022:
        raise HarnessError(f"{NODES_ROOT} must be a real folder owned by root, not group/world-writable")
    if info.st_mode & 0o005 != 0o005:
        os.chmod(NODES_ROOT, 0o755)
    for folder in NODES_ROOT.parents:  # every ancestor must let node users through
        if not folder.stat().st_mode & 0o001:
            raise HarnessError(f"{folder} is not searchable by other users; set PROVISION_HARNESS_ROOT")
    return NODES_ROOT


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def _sshd_quote(value: str) -> str:
    return f'"{value}"' if re.search(r'[\s#"]', value) else value


# --- the node ----------------------------------------------------------------------------


class SshNode:
    """One real sshd on 127.0.0.1 and the user it lets in; see the module docstring."""

    def __init__(
        self,
        base_dir: Path,
        *,
        name: str,
        platform: Literal["macos", "linux"],
        fake_macos_inputs: dict[str, Any],
        shell: str,
        sshd_options: dict[str, str],
        profile: Optional[str] = None,
    ) -> None:
        self.name = name
        self.profile = profile  # a fake_macos/profiles.py name, or None (the plain emulated Mac)
        self.host = HOST
        self.platform = platform
        self.base_dir = base_dir
        self._set_paths(base_dir / f"{name}-{secrets.token_hex(3)}")
        self.python = NODE_PYTHON
        self.shell = shell
        self.root_mode = is_root()
        self.port = 0
        self.user = ""
        self.uid = -1
        self.gid = -1
        self.host_key_fingerprint = ""
        self.known_hosts_line = ""
        self.shim_dir: Optional[Path] = None
        self.homebrew_bin: Optional[Path] = None
        self.fake_macos_values: Optional[Path] = None
        self.path = NODE_PATH
        self._fake_inputs = dict(fake_macos_inputs)
        self._sshd_options = dict(sshd_options)
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._created = False
        self._user_exists = False

    def _set_paths(self, node_dir: Path) -> None:
        self.node_dir = node_dir
        self.home = node_dir / "home"
        self.client_key = node_dir / "id_ed25519"
        self.host_key = node_dir / "ssh_host_ed25519_key"
        self.known_hosts = node_dir / "known_hosts"
        self.sshd_config = node_dir / "sshd_config"
        self.sshd_log = node_dir / "sshd.log"
        self.pid_file = node_dir / "sshd.pid"
        self.gitconfig = node_dir / "gitconfig"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        kind = self.platform if self.profile is None else f"{self.platform}:{self.profile}"
        return f"<SshNode {self.name} {kind} {self.user}@{self.host}:{self.port} {state}>"

    # -- life cycle ---------------------------------------------------------------------

    def _create(self) -> None:
        """Make keys, the user, its home, the shims and sshd_config (does not start sshd)."""
        with _LOCK:
            _LIVE.add(self)
        self._created = True
        if self.root_mode:
            # The user first, then its folder: a pvn* folder without a user is stale.
            _cleanup_stale_once()
            self._add_user()
            self.node_dir.mkdir(mode=0o755)
            self._link = self.base_dir / f"{self.name}-{self.user}"
            self._link.symlink_to(self.node_dir)
        else:
            self.user, self.uid, self.gid = getpass.getuser(), os.getuid(), os.getgid()
            self.node_dir.mkdir(mode=0o755)
        _keygen(self.host_key, f"host@{self.name}")
        _keygen(self.client_key, f"provision-test-client@{self.name}")
        listing = subprocess.run(
            [SSH_KEYGEN, "-lf", str(self.host_key) + ".pub"],
            check=True, capture_output=True, text=True,
        ).stdout.split()
        self.host_key_fingerprint = listing[1]  # "256 SHA256:... comment (ED25519)"

        if self.platform == "macos":
            self._fake_inputs.setdefault("hostname", self.name)
            # kern.boottime: the emulated Mac has been up for an hour; reboot() moves it.
            self._fake_inputs.setdefault("boot_time", time.time() - 3600)
            # launchd gives a job the passwd HOME; without root that is not the node's home.
            launchd_env = {} if self.root_mode else {"HOME": str(self.home)}
            dest = self.node_dir / "fake_macos"
            python = fake_profiles.interpreter(dest) if self.profile else None
            self.shim_dir, self.homebrew_bin = fake_macos.install(
                dest, self._fake_inputs, owner=(self.uid, self.gid) if self.root_mode else None,
                launchd_env=launchd_env, python=python,
            )
            if self.profile is not None:
                profile = fake_profiles.get(self.profile)
                fake_profiles.build(dest, profile, (self.uid, self.gid))
                self.python = str(python)  # the real 3.11 inside the node, off PATH
                self.homebrew_bin = Path("/opt/homebrew/bin") if profile.homebrew else None
            self.fake_macos_values = self.node_dir / "fake_macos" / "values.env"
            self.path = f"{self.shim_dir}:{NODE_PATH}"
        self.gitconfig.write_text("[safe]\n\tdirectory = *\n")
        os.chmod(self.gitconfig, 0o644)

        self.home.mkdir(mode=0o755)
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        authorized = ssh_dir / "authorized_keys"
        shutil.copyfile(str(self.client_key) + ".pub", authorized)
        os.chmod(authorized, 0o600)
        if self.root_mode:
            for path in (self.home, ssh_dir, authorized):
                os.chown(path, self.uid, self.gid)

    def _add_user(self) -> None:
        root = nodes_root()
        with _LOCK:
            for _ in range(5):
                user = USER_PREFIX + secrets.token_hex(4)
                try:
                    pwd.getpwnam(user)
                    continue
                except KeyError:
                    break
            self._set_paths(root / user)
            _run_locked(
                [
                    "useradd",
                    "--home-dir", str(self.home),
                    "--no-create-home",
                    "--shell", self.shell,
                    "--password", "*",  # not "!": sshd without PAM refuses locked accounts
                    "--user-group",
                    "--comment", f"{GECOS_MARKER} {_own_identity()}",
                    user,
                ],
                f"useradd {user}",
            )
            self.user, self._user_exists = user, True
            entry = pwd.getpwnam(user)
            self.uid, self.gid = entry.pw_uid, entry.pw_gid

    def _write_config(self) -> None:
        env = {"PATH": self.path, "GIT_CONFIG_SYSTEM": str(self.gitconfig)}
        if not self.root_mode:
            env["HOME"] = str(self.home)
        options: dict[str, str] = {
            "ListenAddress": HOST,
            "Port": str(self.port),
            "HostKey": _sshd_quote(str(self.host_key)),
            "PidFile": _sshd_quote(str(self.pid_file)),
            "AuthorizedKeysFile": (
                ".ssh/authorized_keys"
                if self.root_mode
                else _sshd_quote(str(self.home / ".ssh" / "authorized_keys"))
            ),
            "AllowUsers": self.user,
            "PermitRootLogin": "no",
            "PubkeyAuthentication": "yes",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "UsePAM": "no",
            "StrictModes": "yes" if self.root_mode else "no",
            "PermitUserEnvironment": "no",
            "UseDNS": "no",
            "PrintMotd": "no",
            "PrintLastLog": "no",
            "X11Forwarding": "no",
            "AllowTcpForwarding": "yes",
            "Subsystem": "sftp internal-sftp",
            "LogLevel": "DEBUG1",
            "SetEnv": " ".join(_sshd_quote(f"{key}={value}") for key, value in env.items()),
        }
        options.update(self._sshd_options)
        lines = [f"# provision test harness node {self.name} ({self.platform}); see tests/harness/sshd.py"]
        lines += [f"{key} {value}" for key, value in options.items()]
        self.sshd_config.write_text("\n".join(lines) + "\n")
        public = (Path(str(self.host_key) + ".pub").read_text().split())[:2]
        self.known_hosts_line = f"[{HOST}]:{self.port} {public[0]} {public[1]}"
        self.known_hosts.write_text(self.known_hosts_line + "\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start sshd (again) on the same port with the same keys; return once it listens."""
        if self.running:
            return
        if not self._created:
            raise HarnessError(f"node {self.name} was destroyed")
        if self.root_mode:
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        first = self.port == 0
        for _ in range(10 if first else 1):
            if first:
                self.port = free_port()
            self._write_config()
            if self._launch():
                return
            if not first:
                break
        raise HarnessError(f"sshd for node {self.name} did not start:\n{self.log_tail()}")

    def _launch(self) -> bool:
        offset = self.sshd_log.stat().st_size if self.sshd_log.exists() else 0
        argv = [str(SSHD), "-D", "-f", str(self.sshd_config), "-E", str(self.sshd_log)]
        if self.profile is not None:  # sshd (exec'd, same pid) in the profile's mount namespace
            argv = fake_profiles.sshd_command(
                self.node_dir / "fake_macos", fake_profiles.get(self.profile), argv)
        with open(self.sshd_log, "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                close_fds=True,
            )
        ready = f"Server listening on {HOST} port {self.port}."
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(self.sshd_log, "rb") as log:
                log.seek(offset)
                if ready in log.read().decode(errors="replace"):
                    return True
            if self._proc.poll() is not None:
                self._proc = None
                return False
            time.sleep(0.003)
        self._terminate_master()
        return False

    def _terminate_master(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)

    def stop(self) -> None:
        """Stop sshd like a node dropping off the network: the port refuses, open SSH
        connections are cut. Processes the node user started keep running; ``start()``
        brings sshd back on the same port with the same host key."""
        proc = self._proc
        if proc is None:
            return
        connection_sshds = [
            child for child in _descendants(_processes(), proc.pid) if child.comm == "sshd"
        ]
        self._terminate_master()
        for child in connection_sshds:
            _kill(child)

    def destroy(self) -> None:
        """Stop sshd, kill every process of the node user, delete the user and its folder.

        As root the node folder is removed; its sshd.log and sshd_config are kept in
        ``base_dir/<name>-<user>/`` (where the symlink to the live folder was), and
        ``sshd_log`` then points there.
        """
        try:
            self.stop()
            self._stop_fake_launchd()
        finally:
            with _LOCK:
                _LIVE.discard(self)
            self._created = False
            if self._user_exists:
                self._user_exists = False
                _delete_user(self.user, self.uid, self.home)
            if self.root_mode and self.node_dir.parent == NODES_ROOT and self.node_dir.exists():
                self._archive_and_remove()

    def _archive_and_remove(self) -> None:
        link = getattr(self, "_link", None)
        keep = link if link is not None else self.base_dir / f"{self.name}-{self.user}"
        try:
            if keep.is_symlink():
                keep.unlink()
            keep.mkdir(parents=True, exist_ok=True)
            for path in (self.sshd_log, self.sshd_config):
                if path.exists():
                    shutil.copy2(path, keep / path.name)
            self.sshd_log = keep / self.sshd_log.name
        except OSError:
            pass  # base_dir may be gone already (a test's tmp_path at exit)
        shutil.rmtree(self.node_dir, ignore_errors=True)

    close = destroy

    def __enter__(self) -> "SshNode":
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- using the node -----------------------------------------------------------------

    def ssh_argv(self, command: Optional[str] = None) -> list[str]:
        """Return the OpenSSH client command line for this node (strict host key, no agent)."""
        argv = [
            SSH, "-F", "/dev/null",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none",
            "-o", "ConnectTimeout=10",
            "-o", "LogLevel=ERROR",
            "-i", str(self.client_key),
            "-p", str(self.port),
            "-l", self.user,
            "--", self.host,
        ]
        return argv if command is None else [*argv, command]

    def ssh(
        self,
        command: str,
        check: bool = True,
        *,
        input: Optional[str] = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on the node with the plain OpenSSH client (text, output captured)."""
        env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID")}
        return subprocess.run(
            self.ssh_argv(command),
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            env=env,
        )

    def run_batch(self, *commands: str, timeout: float = 120) -> list[tuple[int, str, str]]:
        """Run each shell command on the node in ONE SSH session; (exit, stdout, stderr) each."""
        out = self.ssh(f"{self.python} -", input=_BATCH_RUNNER.format(commands=list(commands)), timeout=timeout)
        return [tuple(result) for result in json.loads(out.stdout)]  # type: ignore[misc]

    def write_node_yaml(self, path: Path, **fields: Any) -> Path:
        """Write a node.yaml that reaches this node (host key pinned); ``None`` drops a key."""
        import yaml

        data: dict[str, Any] = {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "identity_file": str(self.client_key),
            "host_key": self.host_key_fingerprint,
        }
        for key, value in fields.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    def connection_counts(self) -> dict[str, int]:
        """Count, from sshd's own log, what clients did since the node was created.

        Keys (see ``LOG_PATTERNS``): ``connections`` (TCP connections accepted), ``auths``
        (logins), ``exec`` (remote commands), ``shell``, ``sftp``, ``subsystem``, ``sessions``
        (all session channels) and ``forwards`` (direct-tcpip channels). Cumulative across
        stop()/start(); compare two snapshots to count one action.
        """
        counts = dict.fromkeys(LOG_PATTERNS, 0)
        if not self.sshd_log.exists():
            return counts
        with open(self.sshd_log, encoding="utf-8", errors="replace") as log:
            for line in log:
                for key, pattern in LOG_PATTERNS.items():
                    if pattern.match(line):
                        counts[key] += 1
        return counts

    def fake_macos_set(self, **values: Any) -> dict[str, str]:
        """Change emulated macOS values while the node runs; return the values.env entries.

        Keys: ``fake_macos.INPUTS`` (memory_gb, memsize, pressure_level 1/2/4, free_percent,
        swap_used_mb, swap_total_mb, wired_limit_mb, chip, ncpu, macos_version, ... and every
        vm_stat counter by its snake_case label, e.g. pages_free, swapouts; disk_free_kb and
        disk_total_kb for df; launchd_throttle_seconds, launchd_exit_timeout_seconds,
        launchd_bootout_linger_seconds for launchctl). Values set before are kept (``None``
        unsets one); derived values (vm_stat pages from memory and pressure) follow.
        """
        if self.fake_macos_values is None:
            raise HarnessError(f"node {self.name} is a {self.platform} node: it has no fake macOS")
        merged = {k: v for k, v in {**self._fake_inputs, **values}.items() if v is not None}
        written = fake_macos.write_values(self.fake_macos_values, merged)
        self._fake_inputs = merged
        return written

    # -- the emulated launchd / caffeinate (fake_macos/bin/launchctl, caffeinate) ------------

    @property
    def fake_macos_state(self) -> Path:
        """``<node>/fake_macos/state``: launchd/<label>.json per loaded service, calls.jsonl."""
        return self.node_dir / "fake_macos" / "state"

    def _fake_calls(self, tool: "str | tuple[str, ...]") -> list[dict[str, Any]]:
        if self.platform != "macos":
            raise HarnessError(f"node {self.name} is a {self.platform} node: it has no fake macOS")
        return fake_macos.read_calls(self.node_dir / "fake_macos", tool)

    @property
    def opt_dir(self) -> Optional[Path]:
        """Host path of the folder a profiled node sees as /opt (None without a profile)."""
        return None if self.profile is None else fake_profiles.root_dir(self.node_dir / "fake_macos") / "opt"

    def stub_calls(self, tool: Optional[str] = None) -> list[dict[str, Any]]:
        """Every call of the stubs and tools that log one, oldest first: ``clt-stub``,
        ``python-stub``, ``brew``, ``port``, ``fdesetup``, ``pmset`` (``tool`` keeps one):
        ``{tool, argv (after the program), path (as run), time, exit, pid, uid, ...}``."""
        return self._fake_calls(tool or ("clt-stub", "python-stub", "brew", "port", "fdesetup", "pmset"))

    def launchctl_calls(self) -> list[dict[str, Any]]:
        """Every ``launchctl`` call on the node, oldest first: ``{tool, argv (after the
        program name), time (epoch start), exit, duration, pid, uid, cwd}``."""
        return self._fake_calls("launchctl")

    def caffeinate_calls(self) -> list[dict[str, Any]]:
        """Every ``caffeinate`` call (logged when it starts): ``{tool, argv, time, pid, ppid, uid}``."""
        return self._fake_calls("caffeinate")

    def launchd_env_set(self, **env: Optional[str]) -> dict[str, str]:
        """Change what the emulated Background session gives jobs started from now on
        (``launchd.env``; default ``FAKE_MACOS_MPS=1``); ``None`` removes a variable.
        Returns the whole file's variables."""
        if self.platform != "macos":
            raise HarnessError(f"node {self.name} is a {self.platform} node: it has no fake macOS")
        path = self.node_dir / "fake_macos" / "launchd.env"
        merged = fake_macos.read_launchd_env(path)
        for key, value in env.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        return fake_macos.write_launchd_env(path, merged)

    def launchd_service(self, label: str) -> Optional[dict[str, Any]]:
        """The emulated launchd's record of a loaded service (pid, runs, last_exit, state,
        supervisor, config), or None when the label is not loaded (or its file is stale)."""
        path = self.fake_macos_state / "launchd" / (quote(label, safe="") + ".json")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def _stop_fake_launchd(self) -> None:
        """Kill the emulated launchd supervisors and their jobs (without root, destroy() kills
        no user processes, and those would outlive the node)."""
        folder = self.fake_macos_state / "launchd"
        if self.platform != "macos" or not folder.is_dir():
            return

        def record(path: Path) -> dict[str, Any]:
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}

        def mine(pid: Any, start: Any) -> Optional[_Proc]:
            proc = _read_proc(int(pid)) if pid else None
            return proc if proc is not None and proc.start == start and proc.uid == self.uid else None

        for path in folder.glob("*.json"):
            sup = record(path).get("supervisor") or {}
            supervisor = mine(sup.get("pid"), sup.get("start"))
            if supervisor is not None:
                _kill(supervisor)  # first, so that it cannot respawn the job
            svc = record(path)
            job = mine(svc.get("pid"), svc.get("pid_start"))
            if job is not None:
                try:
                    os.killpg(job.pid, signal.SIGKILL)  # the job leads its process group
                except OSError:
                    _kill(job)

    def reboot(self) -> float:
        """EMULATED reboot: kill every process of the node user, as a reboot does; return
        the new boot time (epoch seconds).

        What goes: the user's SSH sessions, ComfyUI, the Linux supervisor, and the emulated
        launchd's supervisors, so launchd forgets every ``user/<uid>`` agent (on a real Mac a
        user-domain agent is not loaded again until someone logs in, FACTS.md). On a macOS
        node ``sysctl kern.boottime`` then says the node booted now. What stays: files
        (pid files, the lock folder, state.json, as on a real disk), and sshd itself (root's),
        so the node answers again at once. A Linux node reports the real machine's
        /proc/stat btime, which does not move. Without root only processes whose command
        line names the node folder are killed (the harness's own process is the same user).
        """
        if self.root_mode:
            _kill_user_processes(self.uid)
            # After a real reboot not even a zombie is left: a zombie still answers `kill -0`,
            # so wait for PID 1 to reap the orphans before saying the node is back.
            deadline = time.monotonic() + 10
            while any(proc.uid == self.uid for proc in _processes()):
                if time.monotonic() > deadline:
                    raise HarnessError(f"processes of {self.user} are still there after the reboot")
                time.sleep(0.02)
        else:
            self._stop_fake_launchd()
            me = os.getpid()
            for proc in _processes():
                if proc.uid == self.uid and proc.pid != me and \
                        any(str(self.node_dir) in arg for arg in proc.cmdline):
                    _kill(proc)
        booted = time.time()
        if self.platform == "macos":
            self.fake_macos_set(boot_time=booted)
        return booted

    def log_tail(self, lines: int = 40) -> str:
        """Return the last lines of the sshd log (for failure messages)."""
        if not self.sshd_log.exists():
            return "(no sshd log)"
        return "\n".join(self.sshd_log.read_text(errors="replace").splitlines()[-lines:])


def start_node(
    base_dir: Path,
    *,
    name: str = "node1",
    platform: Literal["macos", "linux"] = "macos",
    memory_gb: float = 64,
    chip: str = "Apple M4 Pro",
    macos_version: str = "15.5",
    fake_macos_values: Optional[dict[str, Any]] = None,
    shell: str = "/bin/bash",
    sshd_options: Optional[dict[str, str]] = None,
    profile: Optional[str] = None,
) -> SshNode:
    """Create and start one node under ``base_dir``; see the module docstring.

    ``memory_gb``, ``chip`` and ``macos_version`` (plus any ``fake_macos.INPUTS`` in
    ``fake_macos_values``) only matter for a macOS node: a Linux node reports the real
    machine. ``sshd_options`` overrides or adds sshd_config keywords. ``profile`` (macOS
    only) names a provider profile (fake_macos/profiles.py; ValueError for an unknown one,
    ProfileUnavailable when ``profiles_supported()`` gives a reason).
    """
    require_sshd()
    if platform not in ("macos", "linux"):
        raise ValueError("platform must be 'macos' or 'linux'")
    profile_values: dict[str, Any] = {}
    if profile is not None:
        if platform != "macos":
            raise ValueError("a provider profile needs platform='macos'")
        profile_values = fake_profiles.fake_values(fake_profiles.get(profile))
        reason = profiles_supported()
        if reason is not None:
            raise ProfileUnavailable(reason)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"node name {name!r}: use letters, digits, '.', '_' and '-'")
    base_dir = Path(base_dir).resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    inputs = {"memory_gb": memory_gb, "chip": chip, "macos_version": macos_version, **profile_values}
    inputs.update(fake_macos_values or {})
    if platform == "macos":
        fake_macos.compute(inputs)  # fail on unknown keys before creating a user
    node = SshNode(
        base_dir,
        name=name,
        platform=platform,
        fake_macos_inputs=inputs,
        shell=shell,
        sshd_options=sshd_options or {},
        profile=profile,
    )
    try:
        node._create()
        node.start()
    except BaseException:
        node.destroy()
        raise
    return node


def destroy_all() -> None:
    """Destroy every node this process started and has not destroyed yet."""
    with _LOCK:
        nodes = list(_LIVE)
    for node in nodes:
        try:
            node.destroy()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(destroy_all)
