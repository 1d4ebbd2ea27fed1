"""The local end of the SSH tunnel to ComfyUI: 127.0.0.1 on the laptop -> 127.0.0.1 on the node.

Each accepted local connection is carried by a direct-tcpip channel on the run's SSH
connection. A watchdog notices a dead connection (keepalives stop being answered, the link
dropped) and reconnects, so the URL keeps working after a network blip.
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time
from typing import Callable, Optional

from ..core.errors import ProvisionError, UsageError

PORT_SEARCH = 50  # how far above a taken local port we look for a free one


class TunnelError(ProvisionError):
    """The tunnel cannot be opened (local port taken and pinned, or no connection)."""


def bind_local(port: int, pinned: bool) -> socket.socket:
    """Listen on 127.0.0.1:``port``, or the next free port unless the user pinned it."""
    last_error: Optional[OSError] = None
    for candidate in range(port, port + (1 if pinned else PORT_SEARCH)):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Reuse a port whose last connections linger in TIME_WAIT (a tunnel just closed);
        # a port another program listens on is still refused.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", candidate))
        except OSError as error:
            listener.close()
            if error.errno != errno.EADDRINUSE:
                raise
            last_error = error
            continue
        listener.listen(16)
        return listener
    if pinned:
        raise UsageError(f"local port {port} is already in use on this machine",
                         "free it, or set tunnel.pin_local_port: false to take the next free port")
    raise TunnelError(f"no free local port in {port}-{port + PORT_SEARCH - 1} ({last_error})")


class Tunnel:
    """Forward 127.0.0.1:``local_port`` to the node's 127.0.0.1:``remote_port``."""

    def __init__(self, node, remote_port: int, local_port: int, *, pinned: bool = False,
                 reconnect: Optional[Callable[[], object]] = None,
                 on_event: Callable[[str], None] = lambda message: None) -> None:
        self.node = node
        self.remote_port = remote_port
        self.requested_port = local_port
        self._pinned = pinned
        self._reconnect = reconnect
        self._on_event = on_event
        self._listener: Optional[socket.socket] = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self.reconnects = 0

    @property
    def local_port(self) -> int:
        assert self._listener is not None, "tunnel not open"
        return self._listener.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def open(self) -> "Tunnel":
        self._listener = bind_local(self.requested_port, self._pinned)
        if self.local_port != self.requested_port:
            self._on_event(f"local port {self.requested_port} is taken; using {self.local_port}")
        threading.Thread(target=self._accept_loop, name="tunnel-accept", daemon=True).start()
        if self._reconnect is not None:
            threading.Thread(target=self._watchdog, name="tunnel-watchdog", daemon=True).start()
        return self

    def close(self) -> None:
        self._closed.set()
        if self._listener is not None:
            try:
                self._listener.close()
            except OSError:
                pass

    def __enter__(self) -> "Tunnel":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _alive(self) -> bool:
        transport = getattr(self.node, "transport", None)
        return transport is None or transport.is_active()

    def _watchdog(self) -> None:
        while not self._closed.wait(1.0):
            if not self._alive():
                self._revive()

    def _revive(self) -> None:
        with self._lock:
            if self._alive() or self._closed.is_set():
                return
            self._on_event("SSH connection lost; reconnecting")
            delay = 0.5
            while not self._closed.is_set():
                try:
                    self.node = self._reconnect()
                    self.reconnects += 1
                    self._on_event("reconnected; the tunnel is open again")
                    return
                except ProvisionError as error:
                    self._on_event(f"reconnect failed ({error}); retrying in {delay:.0f}s")
                    time.sleep(delay)
                    delay = min(delay * 2, 30)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        channel = None
        for attempt in range(2):
            try:
                channel = self.node.open_tcp(self.remote_port, timeout=10)
                break
            except Exception:  # a dead transport: reconnect once, then give up on this client
                if attempt == 0 and self._reconnect is not None and not self._alive():
                    self._revive()
                    continue
                client.close()
                return
        try:
            _pump(client, channel, self._closed)
        finally:
            client.close()
            channel.close()


def _pump(client: socket.socket, channel, closed: threading.Event) -> None:
    """Copy bytes both ways until either side closes."""
    while not closed.is_set():
        readable, _, _ = select.select([client, channel], [], [], 1.0)
        if client in readable:
            data = client.recv(65536)
            if not data:
                return
            channel.sendall(data)
        if channel in readable:
            data = channel.recv(65536)
            if not data:
                return
            client.sendall(data)
