"""``service``: ComfyUI kept running by the node's supervisor.

macOS: a LaunchAgent bootstrapped into the ``user/<uid>`` domain (it exists over SSH without
a GUI login), ``KeepAlive`` restarting it after a crash. Linux: a supervisor script started
in its own session with a pid file, restarting ComfyUI when it exits. Either way the unit
(plist or script) is rendered locally; a changed unit (another port, another flag) restarts
the service, an unchanged running one is left alone. ComfyUI imports its custom nodes only at
start-up: the commit of each custom node checkout it was started with is recorded beside the
unit, and a running ComfyUI is restarted in place when the checkouts differ from that record.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from typing import Literal, Optional

from pydantic import field_validator

from ...core.errors import CommandFailed, StepFailed
from ...core.rendering import render_template
from ...node.shell import q, sections, sh, sha256_of
from .base import Change, Step, StepContext
from .wait_http import START_MARKER

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# macOS's default kern.maxfilesperproc: a limit every Mac accepts, 40x launchd's 256.
OPEN_FILES = 10240
# bootout returns before launchd lets go of the label: wait (10 s at most) until `launchctl
# print` no longer knows $target, or a bootstrap that follows is refused with error 5.
_UNTIL_UNLOADED = ('i=0; while launchctl print "$target" >/dev/null 2>&1 && [ $i -lt 100 ]; '
                   'do sleep 0.1; i=$((i + 1)); done')
# launchctl answers error 5 to a bootstrap while the label is still going away (and for a
# plist it will not load): wait until it is gone, then try again, a few times; any other
# error fails at once.
_BOOTSTRAP = r"""target=$1; domain=$2; plist=$3
attempt=1
while :; do
  out=$(launchctl bootstrap "$domain" "$plist" 2>&1) && exit 0
  status=$?
  case $out in *"Bootstrap failed: 5:"*) ;; *) printf '%s\n' "$out" >&2; exit $status ;; esac
  if [ $attempt -ge 5 ]; then
    if launchctl print "$target" >/dev/null 2>&1; then loaded=still; else loaded=not; fi
    printf '%s (error 5 on %d tries, the label is %s loaded)\n' "$out" "$attempt" "$loaded" >&2
    exit $status
  fi
  """ + _UNTIL_UNLOADED + r"""
  sleep "0.$attempt"
  attempt=$((attempt + 1))
done
"""


class ServiceStep(Step):
    kind: Literal["service"] = "service"
    label: str
    platform: Literal["macos", "linux"]
    uid: int
    home: str
    argv: list[str]
    workdir: str
    log: str
    run_dir: str  # pid files and the Linux supervisor script live here
    env: dict[str, str] = {}
    open_files: int = OPEN_FILES  # the LaunchAgent's NumberOfFiles limits (soft and hard)
    # What ComfyUI imports at start-up that the unit does not show: the custom node checkouts
    # (folders). A running ComfyUI started with other commits in them is restarted.
    custom_nodes: list[str] = []

    @field_validator("env")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not _ENV_NAME.match(name)]
        if bad:
            raise ValueError(f"not an environment variable name: {bad[0]!r}")
        return value

    @property
    def unit_path(self) -> str:
        if self.platform == "macos":
            return posixpath.join(self.home, "Library", "LaunchAgents", f"{self.label}.plist")
        return posixpath.join(self.run_dir, "supervise.sh")

    @property
    def pid_file(self) -> str:
        return posixpath.join(self.run_dir, "supervisor.pid")

    @property
    def child_pid_file(self) -> str:
        return posixpath.join(self.run_dir, "comfyui.pid")

    @property
    def loaded_record(self) -> str:
        return posixpath.join(self.run_dir, "custom_nodes.txt")

    @property
    def target(self) -> str:
        return f"user/{self.uid}/{self.label}"

    def content(self) -> str:
        template = "comfyui.plist.j2" if self.platform == "macos" else "supervise.sh.j2"
        return render_template(template, service=self)

    def describe(self) -> str:
        return self.description or f"run {self.label}"

    def probe(self) -> Optional[str]:
        script = (f"echo @@sha; {sha256_of(self.unit_path)}; echo @@state; {status_script(self)}; "
                  f"echo @@loaded; cat {q(self.loaded_record)} 2>/dev/null")
        if self.custom_nodes:
            # The checkouts are detached (the git step): .git/HEAD holds the commit.
            script += (f"; echo @@heads; for d in {' '.join(q(f) for f in self.custom_nodes)}; do "
                       "h=$(cat \"$d/.git/HEAD\" 2>/dev/null); echo \"${d##*/} ${h:-absent}\"; done")
        return script

    def decide(self, output: Optional[str]) -> Optional[Change]:
        found = sections(output or "")
        state = parse_status(found.get("state", ""))
        heads = found.get("heads", "").splitlines()  # "name commit" per custom node checkout
        recorded = bool(found.get("loaded"))
        wanted = hashlib.sha256(self.content().encode()).hexdigest()
        if found.get("sha") != wanted:
            why = "not installed yet" if not found.get("sha") else "its definition changed: restart"
            return Change(why, {"install": True, "loaded": state["loaded"], "heads": heads,
                                "recorded": recorded})
        # On Linux a live supervisor restarts ComfyUI by itself, like launchd's KeepAlive.
        supervised = self.platform == "linux" and state["loaded"]
        if not state["running"] and not supervised:
            return Change("installed but not running: start",
                          {"loaded": state["loaded"], "heads": heads, "recorded": recorded})
        loaded = found.get("loaded", "").splitlines()
        if loaded != heads:
            new = [line.split(" ", 1)[0] for line in heads if line not in loaded]
            why = f"custom nodes to load: {', '.join(new)}" if new else "custom nodes changed"
            return Change(f"{why}: restart ComfyUI",
                          {"restart": True, "pid": state["pid"], "heads": heads,
                           "recorded": recorded})
        return None

    def apply(self, ctx: StepContext, change: Change) -> str:
        node = ctx.node
        if change.data.get("restart"):
            restart_service(node, self, change.data.get("pid"))
            self._record_loaded(node, change.data)
            return "restarted"
        # The marker tells the health check where this start's log lines begin.
        node.run(sh(f"mkdir -p {q(posixpath.dirname(self.unit_path))} {q(self.run_dir)} "
                    f"{q(posixpath.dirname(self.log))} && echo {q(START_MARKER)} "
                    f"\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\" >> {q(self.log)}"))
        if change.data.get("install"):
            if change.data.get("loaded"):
                stop_service(node, self)
            node.put(self.content().encode(), self.unit_path,
                     0o644 if self.platform == "macos" else 0o755)
        start_service(node, self, loaded=bool(change.data.get("loaded")) and
                      not change.data.get("install"))
        self._record_loaded(node, change.data)
        return "started"

    def _record_loaded(self, node, data: dict) -> None:
        """Record the custom node commits ComfyUI was (re)started with; none: no record."""
        if data.get("heads"):
            node.put("".join(line + "\n" for line in data["heads"]).encode(), self.loaded_record,
                     0o644)
        elif data.get("recorded"):
            node.run(sh(f"rm -f {q(self.loaded_record)}"))


# The running process's age (ps etime, e.g. 01:02:03) in the same round trip as its state.
_UPTIME = ("up=; [ -n \"$pid\" ] && up=$(ps -o etime= -p \"$pid\" 2>/dev/null | tr -d ' '); "
           "echo \"loaded=$loaded running=$running pid=$pid uptime=$up\"")


def status_script(service: ServiceStep) -> str:
    """Return a read-only sh snippet printing ``loaded=0|1 running=0|1 pid=N uptime=T``."""
    if service.platform == "macos":
        return (f"out=$(launchctl print {q(service.target)} 2>/dev/null) && loaded=1 || loaded=0; "
                "pid=$(printf '%s\\n' \"$out\" | sed -n 's/^[[:space:]]*pid = \\([0-9][0-9]*\\).*/\\1/p' "
                "| head -1); "
                "[ -n \"$pid\" ] && running=1 || running=0; "
                f"{_UPTIME}")
    return (f"sup=$(cat {q(service.pid_file)} 2>/dev/null); "
            f"pid=$(cat {q(service.child_pid_file)} 2>/dev/null); "
            "if [ -n \"$sup\" ] && kill -0 \"$sup\" 2>/dev/null; then loaded=1; else loaded=0; pid=; fi; "
            "if [ -n \"$pid\" ] && kill -0 \"$pid\" 2>/dev/null; then running=1; else running=0; pid=; fi; "
            f"{_UPTIME}")


def parse_status(text: str) -> dict:
    """Parse ``status_script`` output into {loaded, running, pid}."""
    fields = _fields(text)
    pid = fields.get("pid", "")
    return {"loaded": fields.get("loaded") == "1", "running": fields.get("running") == "1",
            "pid": int(pid) if pid.isdigit() else None}


def parse_uptime(text: str) -> Optional[str]:
    """Return the running process's age from ``status_script`` output, e.g. ``01:02:03``."""
    return _fields(text).get("uptime") or None


def _fields(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split() if "=" in part)


def stop_service(node, service: ServiceStep) -> None:
    """Stop the service and wait until it is gone; no-op when it is not running."""
    if service.platform == "macos":
        node.run(sh(f"target={q(service.target)}; launchctl bootout \"$target\"; {_UNTIL_UNLOADED}; true"),
                 check=False)
    else:
        # The supervisor leads its own process group (setsid): one kill stops it and ComfyUI.
        node.run(sh(f"sup=$(cat {q(service.pid_file)} 2>/dev/null); "
                    f"[ -n \"$sup\" ] && kill -TERM -\"$sup\" 2>/dev/null; "
                    f"for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 \"$sup\" 2>/dev/null || break; "
                    f"sleep 0.3; done; [ -n \"$sup\" ] && kill -KILL -\"$sup\" 2>/dev/null; "
                    f"rm -f {q(service.pid_file)} {q(service.child_pid_file)}; true"), check=False)


def start_service(node, service: ServiceStep, loaded: bool = False) -> None:
    """Start (or, when already loaded on macOS, kick) the service."""
    if service.platform == "macos":
        if loaded:
            node.run(f"launchctl kickstart -k {q(service.target)}")
            return
        try:
            node.run(f"/bin/sh -c {q(_BOOTSTRAP)} provision-bootstrap {q(service.target)} "
                     f"{q('user/' + str(service.uid))} {q(service.unit_path)}")
        except CommandFailed as error:
            raise StepFailed(
                f"step launch: launchctl bootstrap failed: {error.result.tail(3)}",
                f"check the plist with `plutil -lint {service.unit_path}`; it must be owned by "
                "the node user and not group- or world-writable; then re-run up") from None
        return
    node.run(sh(f"cd / && nohup setsid /bin/sh {q(service.unit_path)} </dev/null "
                f">>{q(service.log)} 2>&1 &"))


def restart_service(node, service: ServiceStep, pid: Optional[int] = None) -> None:
    """Restart ComfyUI in place (launchd kickstart -k; the Linux supervisor respawns it).

    Waits (10 s at most) until the old process is gone (on macOS: ``pid``, when given), so
    that what answers on the port next is the new one."""
    gone = ('i=0; while [ -n "$old" ] && kill -0 "$old" 2>/dev/null && [ $i -lt 100 ]; '
            'do sleep 0.1; i=$((i + 1)); done')
    node.run(sh(f"echo {q(START_MARKER)} restart >> {q(service.log)}"), check=False)
    if service.platform == "macos":
        node.run(sh(f"old={q(str(pid or ''))}; launchctl kickstart -k {q(service.target)} "
                    f"&& {{ {gone}; }}"))
        return
    # No ComfyUI (it crashed; the supervisor is about to start it again): nothing to stop.
    node.run(sh(f"old=$(cat {q(service.child_pid_file)} 2>/dev/null); "
                f"if [ -n \"$old\" ]; then kill -TERM \"$old\" 2>/dev/null; {gone}; fi"))
