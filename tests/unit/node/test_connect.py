"""Connecting: the socket's options, the cipher preference and the identity file's errors.

The whole handshake (host keys, authentication, retries) runs against real sshd nodes in
tests/e2e/test_plan.py.
"""

from __future__ import annotations

import socket
import types

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.core.errors import ConnectError
from provisioner.node.connect import (
    Target,
    _aead_first_transport,
    _load_key,
    _open_socket,
    target_of,
)


def test_target_of_a_node_config():
    cfg = types.SimpleNamespace(host="203.0.113.7", port=2222, user="admin",
                                identity_file="~/.ssh/id", host_key="SHA256:x", name="m1")
    assert target_of(cfg) == Target("203.0.113.7", 2222, "admin", "~/.ssh/id", "SHA256:x", "m1")


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    yield server
    server.close()


def test_the_socket_has_tcp_nodelay_and_blocks(listener):
    target = Target("127.0.0.1", listener.getsockname()[1])
    sock = _open_socket(target, 5.0, "here", last_try=True)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert sock.gettimeout() is None
    finally:
        sock.close()


def test_a_refused_connection_is_retried_then_reported():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    target = Target("127.0.0.1", closed.getsockname()[1])
    closed.close()  # bound, never listening: connections to it are refused
    assert _open_socket(target, 5.0, "here", last_try=False) is None
    with pytest.raises(ConnectError, match="connection refused by here"):
        _open_socket(target, 5.0, "here", last_try=True)


def test_the_transport_offers_aes_gcm_first_and_drops_nothing():
    left, right = socket.socketpair()
    try:
        transport = _aead_first_transport(left)
        ciphers = transport.get_security_options().ciphers
        gcm = [name for name in ciphers if name.endswith("-gcm@openssh.com")]
        assert gcm and list(ciphers[:len(gcm)]) == gcm
        assert set(ciphers) == set(type(transport)(right).get_security_options().ciphers)
    finally:
        left.close()
        right.close()


def write_key(path, passphrase: bytes | None):
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption))
    return str(path)


def test_a_plain_key_is_loaded(tmp_path):
    assert _load_key(write_key(tmp_path / "id", None)).algorithm_name == "ED25519"


def test_an_encrypted_key_without_an_agent_says_to_use_ssh_agent(tmp_path, monkeypatch):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(ConnectError, match="encrypted") as raised:
        _load_key(write_key(tmp_path / "id", b"secret"))
    assert "ssh-add" in raised.value.hint


def test_an_encrypted_key_with_an_agent_leaves_it_to_the_agent(tmp_path, monkeypatch):
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
    assert _load_key(write_key(tmp_path / "id", b"secret")) is None


def test_a_file_that_is_not_a_key_is_refused(tmp_path):
    path = tmp_path / "id"
    path.write_text("not a key\n")
    with pytest.raises(ConnectError, match="not a usable private key"):
        _load_key(str(path))
