"""Host-key trust: a pinned fingerprint, else known_hosts; unknown keys are refused.

Nothing here ever accepts a key silently: an unknown key is accepted only when the user
passed ``--accept-new-host-key``, and then it is recorded in the tool's own known_hosts.
A key that differs from the one we trust is always refused.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import paramiko

from ..core.errors import HostKeyError, UnknownHostKey

ACCEPT_FLAG = "--accept-new-host-key"
_record_lock = threading.Lock()


def tool_home() -> Path:
    """Return the tool's local config folder (``$PROVISION_HOME`` or ~/.config/provision)."""
    override = os.environ.get("PROVISION_HOME")
    return Path(override).expanduser() if override else Path("~/.config/provision").expanduser()


def tool_known_hosts() -> Path:
    return tool_home() / "known_hosts"


def user_known_hosts() -> Path:
    return Path("~/.ssh/known_hosts").expanduser()


def host_key_name(host: str, port: int) -> str:
    """Return the known_hosts name OpenSSH uses: ``host`` on 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


class VerifyingPolicy(paramiko.MissingHostKeyPolicy):
    """Decide about a host key that is not in the loaded known_hosts files."""

    def __init__(self, host: str, port: int, pinned: str | None, accept_new: bool) -> None:
        self.host = host
        self.port = port
        self.pinned = pinned
        self.accept_new = accept_new
        self.recorded: Path | None = None

    def missing_host_key(self, client, hostname, key) -> None:  # noqa: D401 (paramiko API)
        fingerprint = key.fingerprint
        where = f"{self.host}:{self.port}"
        if self.pinned is not None:
            if _same_fingerprint(fingerprint, self.pinned):
                return
            raise HostKeyError(
                f"HOST KEY MISMATCH for {where}: the node presented {key.get_name()} {fingerprint}, "
                f"but node.yaml pins {self.pinned}; refusing to connect",
                "someone may be intercepting the connection, or the node was reinstalled: "
                "check with your provider before changing host_key",
            )
        if not self.accept_new:
            raise UnknownHostKey(
                f"unknown host key for {where}: {key.get_name()} {fingerprint}; refusing to connect",
                f"if that fingerprint is the one your provider shows, re-run with {ACCEPT_FLAG} "
                "(it is then recorded), or pin it as host_key: in node.yaml",
                where=where, key_type=key.get_name(), fingerprint=fingerprint,
            )
        self.recorded = record_host_key(hostname, key)


def _same_fingerprint(actual: str, pinned: str) -> bool:
    return actual.rstrip("=") == pinned.rstrip("=")


def record_host_key(hostname: str, key: paramiko.PKey) -> Path:
    """Append a host key to the tool's own known_hosts file."""
    path = tool_known_hosts()
    with _record_lock:  # fleets accept keys from several threads at once
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="ascii") as handle:
            handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        os.chmod(path, 0o600)
    return path


def configure_client(client: paramiko.SSHClient, host: str, port: int, pinned: str | None,
                     accept_new: bool) -> VerifyingPolicy:
    """Load the trusted keys into ``client`` and install the verifying policy."""
    if pinned is None:
        for path in (user_known_hosts(), tool_known_hosts()):
            if path.is_file():
                try:
                    client.get_host_keys().load(str(path))
                except (OSError, paramiko.SSHException) as error:
                    raise HostKeyError(f"{path}: cannot read known_hosts: {error}",
                                       "fix or move that file") from None
    policy = VerifyingPolicy(host, port, pinned, accept_new)
    client.set_missing_host_key_policy(policy)
    return policy


def changed_key_error(host: str, port: int, error: paramiko.BadHostKeyException) -> HostKeyError:
    """Turn paramiko's changed-key error into our loud refusal."""
    return HostKeyError(
        f"HOST KEY CHANGED for {host}:{port}: it now presents {error.key.get_name()} "
        f"{error.key.fingerprint}, but known_hosts says {error.expected_key.fingerprint}; "
        "refusing to connect",
        "someone may be intercepting the connection, or the node was reinstalled; if your "
        f"provider confirms, remove the old line with: ssh-keygen -R '{host_key_name(host, port)}'",
    )
