"""The node lock: two runs on one node never interleave.

The lock is a directory under workdir created atomically with ``mkdir``. It is held by a
small keeper process on the node that lives exactly as long as our SSH channel: it reads
its stdin until EOF, which comes when we release the lock or when our connection dies.
So a crashed laptop does not leave a lock behind, and a lock whose keeper died (a node
reboot) is detected as stale and taken over. On macOS the keeper also runs
``caffeinate -w`` on itself, so the node stays awake exactly while a run holds the lock.

The lock is also the run's leash. While it is held, every command the run starts registers
its process group (sshd starts each command in a session of its own) in ``<lock>/groups``;
when the keeper sees EOF, whether the run ended, was interrupted or its laptop died, it
stops every group still registered (TERM, then KILL). A run taking the lock over from a dead
or broken one stops that run's groups first. So no command of a killed run goes on writing
beside the next one. Daemons leave their group on purpose (the Linux supervisor runs under
``setsid``; launchd starts ComfyUI on macOS) and are not touched.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import os
import shlex
import socket
from typing import Iterator

from ..core.errors import LockHeld

_KEEPER = r"""
lock=$1; info=$2; wait=$3; force=$4
stop_groups() {
  set -- "$1"/groups/*
  [ -e "$1" ] || return 0
  for entry do kill -TERM -"${entry##*/}" 2>/dev/null; kill -CONT -"${entry##*/}" 2>/dev/null; done
  i=0
  while [ $i -lt 50 ]; do
    alive=0
    for entry do kill -0 -"${entry##*/}" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.1; i=$((i + 1))
  done
  for entry do kill -KILL -"${entry##*/}" 2>/dev/null; done
}
mkdir -p "$(dirname "$lock")" || exit 1
tries=0
while ! mkdir "$lock" 2>/dev/null; do
  pid=$(cat "$lock/pid" 2>/dev/null)
  if [ "$force" = 1 ] || { [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; }; then
    echo "took-over $(cat "$lock/info" 2>/dev/null)" >&2
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    stop_groups "$lock"
    rm -rf "$lock"
    continue
  fi
  tries=$((tries + 1))
  if [ "$tries" -gt "$wait" ]; then
    if [ -z "$pid" ]; then rm -rf "$lock"; continue; fi
    echo "held $(cat "$lock/info" 2>/dev/null)"
    exit 3
  fi
  sleep 1
done
echo $$ > "$lock/pid"
printf '%s\n' "$info" > "$lock/info"
mkdir "$lock/groups"
# Its stdio is not our channel's: the channel ends when the keeper does, not when
# caffeinate notices.
if command -v caffeinate >/dev/null 2>&1; then
  caffeinate -dimsu -w $$ </dev/null >/dev/null 2>&1 &
fi
echo acquired
while read -r _; do :; done
stop_groups "$lock"
rm -rf "$lock"
echo released
"""

# Registers the command's process group with the keeper, runs it, unregisters it.
# Never runs it once the run's lock is gone (the run ended while this was starting).
LEASH = (r'g=$(ps -o pgid= -p $$ | tr -d " ") && : > "$1/$g" || exit 125; /bin/sh -c "$2"; '
         r'rc=$?; rm -f "$1/$g"; exit $rc')


def leashed(command: str, groups_dir: str) -> str:
    """Return ``command`` wrapped so the lock's keeper can stop it if the run dies."""
    return (f"/bin/sh -c {shlex.quote(LEASH)} provision-leash {shlex.quote(groups_dir)} "
            f"{shlex.quote(command)}")


def holder_description() -> str:
    """Describe this run for whoever finds the lock held: who, where, since when."""
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return f"{getpass.getuser()}@{socket.gethostname()} (pid {os.getpid()}) since {since}"


@contextlib.contextmanager
def node_lock(node, lock_dir: str, *, wait_seconds: int = 10, force: bool = False) -> Iterator[str]:
    """Hold the node's lock for the ``with`` block; raise ``LockHeld`` naming the holder."""
    args = [lock_dir, holder_description(), str(wait_seconds), "1" if force else "0"]
    command = "/bin/sh -c " + shlex.quote(_KEEPER) + " provision-lock " + \
        " ".join(shlex.quote(arg) for arg in args)
    keeper = node.spawn(command)
    try:
        answer = keeper.readline(timeout=wait_seconds + 15)
    except TimeoutError:
        keeper.close()
        raise LockHeld(f"{lock_dir}: no answer from the node while taking the lock",
                       "re-run; if it persists, check the node's load") from None
    if answer.startswith("held"):
        keeper.close()
        raise LockHeld(
            f"another provision run holds this node: {answer[len('held '):].strip()}",
            "wait for it to finish; if that run is gone for good, re-run with --break-lock",
        )
    if answer != "acquired":
        detail = keeper.stderr().strip() or answer or "no output"
        keeper.close()
        raise LockHeld(f"{lock_dir}: cannot take the lock: {detail}",
                       "check that workdir is writable by the node user")
    previous = getattr(node, "leash", None)
    node.leash = f"{lock_dir}/groups"
    try:
        yield lock_dir
    finally:
        node.leash = previous
        keeper.close(wait=10.0)
