"""The node lock: two runs on one node never interleave.

The lock is a directory under workdir created atomically with ``mkdir``. It is held by a
small keeper process on the node that lives exactly as long as our SSH channel: it reads
its stdin until EOF, which comes when we release the lock or when our connection dies.
So a crashed laptop does not leave a lock behind, and a lock whose keeper died (a node
reboot) is detected as stale and taken over. On macOS the keeper also runs
``caffeinate -w`` on itself, so the node stays awake exactly while a run holds the lock.
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
mkdir -p "$(dirname "$lock")" || exit 1
tries=0
while ! mkdir "$lock" 2>/dev/null; do
  pid=$(cat "$lock/pid" 2>/dev/null)
  if [ "$force" = 1 ] || { [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; }; then
    echo "took-over $(cat "$lock/info" 2>/dev/null)" >&2
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
if command -v caffeinate >/dev/null 2>&1; then caffeinate -dimsu -w $$ & fi
echo acquired
while read -r _; do :; done
rm -rf "$lock"
echo released
"""


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
    try:
        yield lock_dir
    finally:
        keeper.close(wait=5.0)
