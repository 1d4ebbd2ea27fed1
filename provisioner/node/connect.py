"""Opening the run's one SSH connection to a node: ``Target``, ``target_of`` and ``connect``.

The TCP socket is opened here, with TCP_NODELAY: paramiko never sets it, and Nagle + delayed
ACK cost ~45 ms per command (FACTS.md "SSH cost"). Connection-level failures are retried
with backoff; the host key is verified (``hostkeys.py``); the transport prefers AES-GCM.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import socket
import time
from typing import Optional

from ..core.errors import ConnectError, HostKeyError
from .remote import SSHNode


@dataclasses.dataclass(frozen=True)
class Target:
    """Where and how to connect; built from a NodeConfig by ``target_of``."""

    host: str
    port: int = 22
    user: str = "root"
    identity_file: Optional[str] = None
    host_key: Optional[str] = None
    name: str = ""


def target_of(cfg) -> Target:
    """Return the connection ``Target`` of a ``NodeConfig``."""
    return Target(cfg.host, cfg.port, cfg.user, cfg.identity_file, cfg.host_key, cfg.name)


def connect(target: Target, *, accept_new_host_key: bool = False, timeout: float = 10.0,
            retries: int = 2, backoff: float = 0.5) -> SSHNode:
    """Open the one SSH connection of this run, verifying the host key.

    Connection-level failures (refused, timed out) are retried with backoff; host-key and
    authentication failures are never retried.
    """
    import logging

    import paramiko
    from fabric import Connection  # lazy: only commands that reach a node pay for it

    # paramiko logs expected events (a refused channel while ComfyUI starts) as errors;
    # our own errors say what matters, so keep its log off the user's terminal.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    logging.getLogger("paramiko").propagate = False

    from . import hostkeys

    where = f"{target.user}@{target.host}:{target.port}"
    connect_kwargs: dict = {"look_for_keys": target.identity_file is None,
                            "allow_agent": True, "banner_timeout": timeout,
                            "auth_timeout": timeout, "transport_factory": _aead_first_transport}
    if target.identity_file:
        key = _load_key(target.identity_file)
        if key is not None:
            connect_kwargs["pkey"] = key

    attempt = 0
    while True:
        sock = _open_socket(target, timeout, where, last_try=attempt >= retries)
        if sock is None:
            attempt += 1
            time.sleep(backoff * 2 ** (attempt - 1))
            continue
        connection = Connection(host=target.host, port=target.port, user=target.user,
                                connect_kwargs=dict(connect_kwargs, sock=sock))
        policy = hostkeys.configure_client(connection.client, target.host, target.port,
                                           target.host_key, accept_new_host_key)
        try:
            connection.open()
        except HostKeyError:
            sock.close()
            raise
        except paramiko.BadHostKeyException as error:
            sock.close()
            raise hostkeys.changed_key_error(target.host, target.port, error) from None
        except paramiko.AuthenticationException as error:
            sock.close()
            raise ConnectError(
                f"authentication failed for {where}: {error}",
                "check user: and identity_file: in node.yaml, or load the key into ssh-agent",
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as error:
            sock.close()
            if attempt < retries:
                attempt += 1
                time.sleep(backoff * 2 ** (attempt - 1))
                continue
            raise ConnectError(f"SSH handshake with {where} failed: {error or type(error).__name__}",
                               "is an SSH server listening on that port?") from None
        node = SSHNode(connection, target.name or target.host)
        connection.client.get_transport().set_keepalive(15)
        node.host_key_recorded = policy.recorded  # type: ignore[attr-defined]
        return node


def _aead_first_transport(*args, **kwargs):
    """Return a paramiko Transport that prefers AES-GCM when the server offers it.

    paramiko's default (AES-CTR + HMAC) compares every packet's MAC in pure Python; GCM
    authenticates in the cipher. Harvesting outputs over SFTP runs about 1.5x faster.
    """
    import paramiko

    transport = paramiko.Transport(*args, **kwargs)
    options = transport.get_security_options()
    aead = tuple(name for name in options.ciphers if name.endswith("-gcm@openssh.com"))
    options.ciphers = aead + tuple(name for name in options.ciphers if name not in aead)
    return transport


def _open_socket(target: Target, timeout: float, where: str, last_try: bool) -> socket.socket | None:
    """Connect TCP with TCP_NODELAY; return None to retry, raise on the last try."""
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except socket.gaierror as error:
        raise ConnectError(f"cannot resolve host {target.host!r}: {error.strerror}",
                           "check host: in node.yaml") from None
    except ConnectionRefusedError:
        if last_try:
            raise ConnectError(f"connection refused by {where}",
                               "is sshd running and is port: right in node.yaml?") from None
        return None
    except (socket.timeout, TimeoutError):
        if last_try:
            raise ConnectError(f"{where} is unreachable (no answer within {timeout:.0f} s)",
                               "check host:, port: and the node's firewall") from None
        return None
    except OSError as error:
        if last_try:
            raise ConnectError(f"{where} is unreachable: {error.strerror or error}",
                               "check host: and port: in node.yaml") from None
        return None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)
    return sock


def _load_key(path: str):
    """Load a private key; None means 'use ssh-agent' (the file is encrypted)."""
    import paramiko

    try:
        return paramiko.PKey.from_path(path)
    except (paramiko.PasswordRequiredException, TypeError) as error:
        # cryptography raises TypeError for a passphrase-protected OpenSSH key.
        if isinstance(error, TypeError) and "password" not in str(error).lower():
            raise ConnectError(f"{path}: not a usable private key ({error})",
                               "point identity_file: at an OpenSSH private key") from None
        if os.environ.get("SSH_AUTH_SOCK"):
            return None  # encrypted on disk: its unlocked copy in ssh-agent is used instead
        raise ConnectError(
            f"{path}: the identity file is encrypted and provision does not ask for passphrases",
            f"load it into ssh-agent (ssh-add {shlex.quote(path)}) and remove identity_file: "
            "from node.yaml",
        ) from None
    except PermissionError:
        raise ConnectError(f"{path}: identity file is not readable by you",
                           "fix its permissions (chmod 600) or its owner") from None
    except (paramiko.SSHException, ValueError, OSError) as error:
        raise ConnectError(f"{path}: not a usable private key ({error})",
                           "point identity_file: at an OpenSSH private key") from None
