"""Real servers on 127.0.0.1 for the WebSocket client: a ``websockets`` server, and the two
streams the tool reaches it through (a TCP socket, and a paramiko direct-tcpip channel of an
in-process SSH connection, as ``SSHNode.open_tcp`` opens one)."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Callable, Iterator

import paramiko
import pytest
from websockets.sync.server import serve

from provisioner.node.remote import SSHNode


@pytest.fixture
def ws_server() -> Iterator[Callable[..., int]]:
    """Start ``websockets`` servers: ``ws_server(handler, **serve_options)`` returns the port."""
    with contextlib.ExitStack() as stack:

        def start(handler, **options) -> int:
            server = stack.enter_context(serve(handler, "127.0.0.1", 0, **options))
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            stack.callback(thread.join, 5)
            stack.callback(server.shutdown)
            return server.socket.getsockname()[1]

        yield start


class TcpNode:
    """A node whose loopback is this machine's: ``open_tcp`` is a plain TCP connection."""

    def __init__(self) -> None:
        self.streams: list[socket.socket] = []

    def open_tcp(self, port: int, timeout: float = 10.0) -> socket.socket:
        stream = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.streams.append(stream)
        return stream

    def all_closed(self) -> bool:
        return all(stream.fileno() == -1 for stream in self.streams)


class _SSHServer(paramiko.ServerInterface):
    """Accept anyone; open direct-tcpip channels the way sshd does (connect, else refuse)."""

    def __init__(self) -> None:
        self.targets: dict[int, socket.socket] = {}

    def get_allowed_auths(self, username: str) -> str:
        return "none"

    def check_auth_none(self, username: str) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_direct_tcpip_request(self, chanid: int, origin, destination) -> int:
        try:
            self.targets[chanid] = socket.create_connection(destination, timeout=5)
        except OSError:
            return paramiko.OPEN_FAILED_CONNECT_FAILED
        return paramiko.OPEN_SUCCEEDED


def _pump(source, target) -> None:
    """Copy bytes one way until either end closes, then close both."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):  # shutdown wakes the other pump's recv; close alone may not
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()


class ChannelNode:
    """A node reached over an in-process SSH connection; ``open_tcp`` is SSHNode's own."""

    def __init__(self, transport: paramiko.Transport) -> None:
        self.transport = transport
        self.streams: list[paramiko.Channel] = []

    def open_tcp(self, port: int, timeout: float = 10.0) -> paramiko.Channel:
        stream = SSHNode.open_tcp(self, port, timeout)  # type: ignore[arg-type]
        self.streams.append(stream)
        return stream

    def all_closed(self) -> bool:
        return all(stream.closed for stream in self.streams)


@contextlib.contextmanager
def ssh_loopback(host_key: paramiko.PKey) -> Iterator[ChannelNode]:
    client_end, server_end = socket.socketpair()
    server = _SSHServer()
    server_transport = paramiko.Transport(server_end)
    server_transport.add_server_key(host_key)
    server_transport.start_server(event=threading.Event(), server=server)  # negotiates in its thread
    client_transport = paramiko.Transport(client_end)
    client_transport.start_client(timeout=10)
    client_transport.auth_none("tester")
    stop = threading.Event()

    def bridge() -> None:
        while not stop.is_set():
            channel = server_transport.accept(timeout=0.2)
            if channel is not None:
                target = server.targets.pop(channel.get_id())
                for source, sink in ((channel, target), (target, channel)):
                    threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    thread = threading.Thread(target=bridge, daemon=True)
    thread.start()
    try:
        yield ChannelNode(client_transport)
    finally:
        stop.set()
        thread.join(5)
        client_transport.close()
        server_transport.close()


@pytest.fixture(scope="session")
def host_key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


@pytest.fixture(params=["tcp", "ssh-channel"])
def node(request, host_key):
    """Each WebSocket test runs over a TCP socket and over a paramiko channel."""
    if request.param == "tcp":
        yield TcpNode()
        return
    with ssh_loopback(host_key) as channel_node:
        yield channel_node
