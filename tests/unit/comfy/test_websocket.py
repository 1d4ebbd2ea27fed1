"""The WebSocket client against a small RFC 6455 server on a socket pair (no network)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import threading

import pytest

from provisioner.comfy.websocket import (
    ComfyWebSocket,
    WebSocketClosed,
    WebSocketError,
    accept_key,
    encode_frame,
    parse_frame,
)


def test_the_accept_key_is_rfc_6455s_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 200000])
def test_frames_round_trip_masked_and_unmasked(size):
    payload = os.urandom(size)
    for mask in (None, b"\x01\x02\x03\x04"):
        frame = encode_frame(0x2, payload, mask)
        assert parse_frame(frame + b"extra") == (True, 0x2, payload, len(frame))
        if size:
            assert parse_frame(frame[:-1]) is None  # incomplete: wait for more bytes


def serve(server: socket.socket, frames: list[bytes], answer: str | None = None, got: list | None = None):
    """Accept the upgrade on ``server``, send ``frames``, record what the client sends."""
    request = b""
    while b"\r\n\r\n" not in request:
        request += server.recv(4096)
    key = next(line.split(":", 1)[1].strip() for line in request.decode().split("\r\n")
               if line.lower().startswith("sec-websocket-key"))
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
                              .digest()).decode()
    head = answer or (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n")
    server.sendall(head.encode() + frames[0] if frames else head.encode())
    for frame in frames[1:]:
        server.sendall(frame)
    if got is not None:
        server.settimeout(2)
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                got.append(data)
        except OSError:
            pass


def text(obj) -> bytes:
    return encode_frame(0x1, json.dumps(obj).encode())


def connect(frames, answer=None, got=None):
    client, server = socket.socketpair()
    thread = threading.Thread(target=serve, args=(server, frames, answer, got), daemon=True)
    thread.start()
    return ComfyWebSocket.handshake(client, "127.0.0.1:8188", "/ws?clientId=abc", timeout=5), thread


def test_messages_arrive_in_order_across_binary_fragmented_and_ping_frames():
    status = {"type": "status", "data": {"sid": "abc"}}
    progress = json.dumps({"type": "progress", "data": {"value": 1, "max": 20}}).encode()
    frames = [
        text(status),  # sent right behind the 101 answer, in the same packet
        encode_frame(0x2, b"\x00\x00\x00\x01preview-jpeg"),  # binary: skipped
        encode_frame(0x9, b"hi"),  # ping: answered
        bytes([0x01, len(progress[:10])]) + progress[:10],  # first fragment, not final
        bytes([0x80, len(progress[10:])]) + progress[10:],  # continuation, final
        encode_frame(0x8, struct.pack(">H", 1000)),
    ]
    got: list[bytes] = []
    ws, thread = connect(frames, got=got)
    assert ws.receive(timeout=5) == status
    assert ws.receive(timeout=5)["data"]["value"] == 1
    with pytest.raises(WebSocketClosed, match="1000"):
        ws.receive(timeout=5)
    ws.close()
    thread.join(5)
    sent = b"".join(got)
    pong = parse_frame(sent)
    assert pong[:3] == (True, 0xA, b"hi") and sent[1] & 0x80  # masked, as a client must


def test_receive_times_out_with_none_and_keeps_partial_frames():
    frame = text({"type": "executing", "data": {"node": None}})
    client, server = socket.socketpair()
    ws = ComfyWebSocket(client)
    server.sendall(frame[:3])
    assert ws.receive(timeout=0.05) is None
    server.sendall(frame[3:])
    assert ws.receive(timeout=5)["type"] == "executing"
    server.close()
    with pytest.raises(WebSocketClosed):
        ws.receive(timeout=5)


def test_a_refused_upgrade_is_an_error():
    with pytest.raises(WebSocketError, match="400"):
        connect([], answer="HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def test_a_wrong_accept_key_is_an_error():
    answer = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: bm9wZQ==\r\n\r\n")
    with pytest.raises(WebSocketError, match="Accept"):
        connect([], answer=answer)
