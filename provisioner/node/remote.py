"""Talking to a node: one small ``Node`` protocol, an SSH implementation and a local one.

``SSHNode`` holds one fabric ``Connection`` for the whole run (``connect.py`` opens it).
Commands go over a fresh channel on that connection: no new TCP or key exchange per command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Protocol

from ..core.errors import CommandFailed, ConnectError
from ..core.redact import redact

OutputCallback = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Result:
    """What one remote command did."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def display_command(self) -> str:
        """The command as it may be shown: secrets redacted, long scripts shortened."""
        text = redact(self.command)
        first = text.strip().splitlines()[0] if text.strip() else text
        return first if len(first) <= 200 else first[:200] + "..."

    def tail(self, lines: int = 5) -> str:
        """Return the last lines of stderr (else stdout), redacted, joined with ' | '."""
        text = self.stderr.strip() or self.stdout.strip()
        return redact(" | ".join(text.splitlines()[-lines:]))


@dataclasses.dataclass
class NodeStats:
    """What a run cost: counted so benchmarks and tests can hold us to our budget."""

    connections: int = 0
    commands: int = 0
    transfers: int = 0


class Node(Protocol):
    """What the rest of the tool needs from a node."""

    stats: NodeStats

    def run(self, command: str, *, check: bool = True, stdin: bytes | str | None = None,
            timeout: float | None = None, on_output: OutputCallback | None = None) -> Result: ...

    def put(self, data: bytes, remote_path: str, mode: int = 0o644) -> None: ...

    def get(self, remote_path: str, local_path: str | os.PathLike[str]) -> None: ...

    def close(self) -> None: ...


class SSHNode:
    """A node reached over one SSH connection (fabric + paramiko)."""

    def __init__(self, connection, label: str) -> None:
        self._connection = connection
        self.label = label
        self.stats = NodeStats(connections=1)
        self._sftp = None
        self._sftp_lock = threading.Lock()
        self.leash: str | None = None  # while a run holds the node's lock: see lock.py

    @property
    def transport(self):
        return self._connection.client.get_transport()

    @property
    def connection(self):
        """The fabric Connection (for port forwarding)."""
        return self._connection

    def run(self, command: str, *, check: bool = True, stdin: bytes | str | None = None,
            timeout: float | None = None, on_output: OutputCallback | None = None) -> Result:
        """Run ``command`` in the login shell; raise ``CommandFailed`` on non-zero unless told."""
        started = time.monotonic()
        channel = self._exec(command)
        try:
            if stdin is not None:
                channel.sendall(stdin.encode() if isinstance(stdin, str) else stdin)
            channel.shutdown_write()
            stdout, stderr = _drain(channel, timeout, on_output)
            exit_code = channel.recv_exit_status()
        finally:
            channel.close()
        result = Result(command, exit_code, stdout, stderr, time.monotonic() - started)
        if check and exit_code != 0:
            raise CommandFailed(result)
        return result

    def spawn(self, command: str) -> "Spawned":
        """Start ``command`` on its own channel and return at once (for long-lived helpers)."""
        return Spawned(self._exec(command))

    def _exec(self, command: str):
        """Start ``command`` on a new channel of the connection; return the channel."""
        self.stats.commands += 1
        if self.leash:
            from .lock import leashed

            command = leashed(command, self.leash)
        try:
            channel = self.transport.open_session()
            channel.exec_command(command)
        except Exception as error:  # paramiko raises several kinds once the link is gone
            raise ConnectError(f"{self.label}: the SSH connection was lost ({error})",
                               "re-run the command; it resumes where it stopped") from None
        return channel

    def open_tcp(self, port: int, timeout: float = 10.0):
        """Open a TCP stream to 127.0.0.1:``port`` on the node, through this connection."""
        return self.transport.open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0),
                                           timeout=timeout)

    def _sftp_client(self):
        with self._sftp_lock:
            if self._sftp is None:
                self._sftp = self._connection.client.open_sftp()
            return self._sftp

    def put(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        """Write ``data`` to ``remote_path``; the mode is set before any byte is written."""
        self.stats.transfers += 1
        sftp = self._sftp_client()
        with sftp.open(remote_path, "wb") as handle:
            sftp.chmod(remote_path, mode)
            handle.write(data)

    def get(self, remote_path: str, local_path: str | os.PathLike[str]) -> None:
        self.stats.transfers += 1
        self._sftp_client().get(remote_path, os.fspath(local_path))

    def open_sftp(self, window_size: int | None = None, max_packet_size: int | None = None):
        """Open one more SFTP session on this connection (parallel transfers); caller closes it."""
        import paramiko

        try:
            return paramiko.SFTPClient.from_transport(self.transport, window_size=window_size,
                                                      max_packet_size=max_packet_size)
        except Exception as error:  # paramiko raises several kinds once the link is gone
            raise ConnectError(f"{self.label}: cannot open an SFTP session ({error})",
                               "re-run the command; it resumes where it stopped") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._sftp is not None:
                self._sftp.close()
        self._connection.close()


class Spawned:
    """A command left running on its own channel; closing the channel ends its stdin.

    One thread reads it (``readline``); another may ``end_input`` to tell it to stop.
    """

    def __init__(self, channel) -> None:
        self._channel = channel
        self._buffer = b""

    def write(self, data: bytes | str) -> None:
        """Send ``data`` to the command's stdin, which stays open until ``end_input``."""
        self._channel.sendall(data.encode() if isinstance(data, str) else data)

    def end_input(self) -> None:
        """Close the command's stdin (EOF); the channel stays open for what it still prints."""
        with contextlib.suppress(Exception):
            self._channel.shutdown_write()

    def exit_code(self, timeout: float = 10.0) -> int:
        """Return the command's exit status once it ended; -1 if none came within ``timeout``."""
        if not self._channel.status_event.wait(timeout):
            return -1
        return self._channel.exit_status

    def readline(self, timeout: float) -> str:
        """Return the next stdout line ('' at EOF); raise TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            if self._channel.recv_ready():
                chunk = self._channel.recv(4096)
                if not chunk:
                    break
                self._buffer += chunk
                continue
            if self._channel.eof_received or self._channel.closed:
                if not self._channel.recv_ready():
                    break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer within {timeout:.0f} s")
            select.select([self._channel], [], [], min(remaining, 0.5))
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace")

    @property
    def finished(self) -> bool:
        """True once the command's output has ended and every line of it was read."""
        channel = self._channel
        return (not self._buffer and (channel.eof_received or channel.closed)
                and not channel.recv_ready())

    def stderr(self) -> str:
        data = b""
        while self._channel.recv_stderr_ready():
            data += self._channel.recv_stderr(65536)
        return data.decode(errors="replace")

    def close(self, wait: float = 0.0) -> None:
        """End the command's stdin; with ``wait``, let it finish (up to ``wait`` s) first."""
        with contextlib.suppress(Exception):
            self._channel.shutdown_write()
            if wait:
                with contextlib.suppress(TimeoutError):
                    while self.readline(wait):
                        pass
            self._channel.close()


def _drain(channel, timeout: float | None, on_output: OutputCallback | None) -> tuple[str, str]:
    """Read stdout and stderr until the command ends, feeding complete lines to ``on_output``."""
    out, err = bytearray(), bytearray()
    pending = b""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        got = False
        while channel.recv_ready():
            chunk = channel.recv(65536)
            out += chunk
            got = True
            if on_output:
                pending = _emit_lines(pending + chunk, on_output)
        while channel.recv_stderr_ready():
            chunk = channel.recv_stderr(65536)
            err += chunk
            got = True
            if on_output:
                pending = _emit_lines(pending + chunk, on_output)
        if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            # The exit status can overtake the last data packets only if the server sent
            # EOF first; wait for EOF so nothing is cut off.
            if channel.eof_received or channel.closed:
                break
        if got:
            continue
        if deadline is not None and time.monotonic() > deadline:
            channel.close()
            raise TimeoutError(f"command did not finish within {timeout:.0f} s")
        select.select([channel], [], [], 0.5)
    if on_output and pending.strip():
        on_output(redact(pending.decode(errors="replace")))
    return out.decode(errors="replace"), err.decode(errors="replace")


def _emit_lines(buffer: bytes, on_output: OutputCallback) -> bytes:
    *lines, rest = buffer.replace(b"\r", b"\n").split(b"\n")
    for line in lines:
        if line.strip():
            on_output(redact(line.decode(errors="replace")))
    return rest


# ---------------------------------------------------------------------------- local node


class LocalNode:
    """This machine as a node: for development and for driving a node from itself."""

    def __init__(self, label: str = "local") -> None:
        self.label = label
        self.stats = NodeStats()

    def run(self, command: str, *, check: bool = True, stdin: bytes | str | None = None,
            timeout: float | None = None, on_output: OutputCallback | None = None) -> Result:
        started = time.monotonic()
        self.stats.commands += 1
        data = stdin.encode() if isinstance(stdin, str) else stdin
        completed = subprocess.run(["/bin/sh", "-c", command], input=data, capture_output=True,
                                   timeout=timeout, check=False)
        result = Result(command, completed.returncode, completed.stdout.decode(errors="replace"),
                        completed.stderr.decode(errors="replace"), time.monotonic() - started)
        if on_output:
            for line in (result.stdout + result.stderr).splitlines():
                on_output(redact(line))
        if check and result.exit_code != 0:
            raise CommandFailed(result)
        return result

    def spawn(self, command: str) -> "LocalSpawned":
        """Start ``command`` and return at once; its stdin stays open (as ``SSHNode.spawn``)."""
        self.stats.commands += 1
        process = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return LocalSpawned(process)

    def open_tcp(self, port: int, timeout: float = 10.0):
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def put(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        self.stats.transfers += 1
        path = Path(remote_path).expanduser()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)

    def get(self, remote_path: str, local_path: str | os.PathLike[str]) -> None:
        self.stats.transfers += 1
        Path(local_path).write_bytes(Path(remote_path).expanduser().read_bytes())

    def close(self) -> None:
        pass


class LocalSpawned:
    """``Spawned`` for a local process: the same reading, writing and ending of its input."""

    def __init__(self, process: subprocess.Popen) -> None:
        self._process = process
        self._buffer = b""
        self._errors = b""
        self._eof = False

    def write(self, data: bytes | str) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write(data.encode() if isinstance(data, str) else data)
        stdin.flush()

    def end_input(self) -> None:
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()

    def readline(self, timeout: float) -> str:
        """Return the next stdout line ('' at EOF); raise TimeoutError after ``timeout`` s."""
        stdout, stderr = self._process.stdout, self._process.stderr
        assert stdout is not None and stderr is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer and not self._eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer within {timeout:.0f} s")
            ready, _, _ = select.select([stdout, stderr], [], [], min(remaining, 0.5))
            if stderr in ready:  # drained as it comes, so a chatty stderr cannot block it
                self._errors += os.read(stderr.fileno(), 65536)
            if stdout in ready:
                chunk = os.read(stdout.fileno(), 65536)
                self._buffer += chunk
                self._eof = not chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace")

    @property
    def finished(self) -> bool:
        return self._eof and not self._buffer

    def stderr(self) -> str:
        stderr = self._process.stderr
        if stderr is not None and self._process.poll() is not None:
            with contextlib.suppress(OSError, ValueError):
                self._errors += stderr.read()
        data, self._errors = self._errors, b""
        return data.decode(errors="replace")

    def exit_code(self, timeout: float = 10.0) -> int:
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return -1

    def close(self, wait: float = 0.0) -> None:
        """End the process's stdin; with ``wait``, let it finish (up to ``wait`` s) first."""
        self.end_input()
        if wait:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(wait)
        for pipe in (self._process.stdout, self._process.stderr):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
