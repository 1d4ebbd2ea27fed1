"""A minimal RFC 6455 WebSocket client for ComfyUI's ``/ws?clientId=...`` (stdlib only).

It runs over any connected stream with ``sendall``/``recv``/``settimeout``: on a node that is
a direct-tcpip channel of the run's one SSH connection (``node.open_tcp(port)``), so, as with
``ComfyClient``, nothing listens on the laptop. Text messages are JSON; binary ones (latent
previews) are skipped; pings are answered; fragmented messages are reassembled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import time
from typing import Any, Optional
from urllib.parse import quote

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 64 * 1024 * 1024


class WebSocketError(Exception):
    """The handshake failed, or the peer broke the protocol."""


class WebSocketClosed(WebSocketError):
    """The server closed the WebSocket (or the stream under it ended)."""


def accept_key(key: str) -> str:
    """Return the ``Sec-WebSocket-Accept`` value a server must answer to ``key``."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def encode_frame(opcode: int, payload: bytes, mask: Optional[bytes] = None) -> bytes:
    """Return one final frame; a client must pass a 4-byte ``mask``."""
    head = bytearray([0x80 | opcode])
    flag = 0x80 if mask is not None else 0
    length = len(payload)
    if length < 126:
        head.append(flag | length)
    elif length < 65536:
        head.append(flag | 126)
        head += struct.pack(">H", length)
    else:
        head.append(flag | 127)
        head += struct.pack(">Q", length)
    if mask is None:
        return bytes(head) + payload
    return bytes(head) + mask + _xor(payload, mask)


def parse_frame(buffer: bytes | bytearray) -> Optional[tuple[bool, int, bytes, int]]:
    """Return (fin, opcode, payload, bytes used) of the first complete frame, or None."""
    if len(buffer) < 2:
        return None
    first, second = buffer[0], buffer[1]
    length = second & 0x7F
    offset = 2
    if length == 126:
        if len(buffer) < 4:
            return None
        length = struct.unpack(">H", buffer[2:4])[0]
        offset = 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        length = struct.unpack(">Q", buffer[2:10])[0]
        offset = 10
    if length > MAX_MESSAGE:
        raise WebSocketError(f"frame of {length} bytes is too large")
    mask = None
    if second & 0x80:
        if len(buffer) < offset + 4:
            return None
        mask = buffer[offset:offset + 4]
        offset += 4
    if len(buffer) < offset + length:
        return None
    payload = bytes(buffer[offset:offset + length])
    if mask is not None:
        payload = _xor(payload, mask)
    return bool(first & 0x80), first & 0x0F, payload, offset + length


def _xor(data: bytes, mask: bytes | bytearray) -> bytes:
    if not data:
        return b""
    repeated = (mask * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(data), "big")


class ComfyWebSocket:
    """ComfyUI's WebSocket on a connected stream; ``receive`` returns one JSON message."""

    def __init__(self, stream, buffered: bytes = b"") -> None:
        self._stream = stream
        self._buffer = bytearray(buffered)
        self._fragments: Optional[tuple[int, bytearray]] = None
        self.closed = False

    @classmethod
    def connect(cls, node, port: int, client_id: str, timeout: float = 10.0) -> "ComfyWebSocket":
        """Open ``/ws?clientId=client_id`` on the node's 127.0.0.1:``port``."""
        try:
            stream = node.open_tcp(port, timeout=timeout)
        except Exception as error:  # paramiko ChannelException, socket errors
            raise WebSocketError(f"nothing answers on 127.0.0.1:{port} ({error})") from None
        try:
            return cls.handshake(stream, f"127.0.0.1:{port}", f"/ws?clientId={quote(client_id)}",
                                 timeout)
        except BaseException:
            stream.close()
            raise

    @classmethod
    def handshake(cls, stream, host: str, path: str, timeout: float) -> "ComfyWebSocket":
        """Send the upgrade request on ``stream``; check the 101 answer and its accept key."""
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n")
        stream.settimeout(timeout)
        stream.sendall(request.encode("ascii"))
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = stream.recv(4096)
            except (socket.timeout, TimeoutError):
                raise WebSocketError(f"no WebSocket answer from {host}{path} within {timeout:.0f} s") from None
            if not chunk:
                raise WebSocketError(f"{host}{path} closed the connection during the handshake")
            data += chunk
            if len(data) > 65536:
                raise WebSocketError(f"{host}{path}: oversized handshake answer")
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            raise WebSocketError(f"{host}{path} refused the WebSocket upgrade: {lines[0]}")
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in lines[1:])}
        if headers.get("sec-websocket-accept") != accept_key(key):
            raise WebSocketError(f"{host}{path} answered a wrong Sec-WebSocket-Accept")
        return cls(stream, rest)

    def receive(self, timeout: float) -> Optional[dict[str, Any]]:
        """Return the next JSON text message, or None when none arrives within ``timeout`` s.

        Raises ``WebSocketClosed`` when the server closes the socket or the stream ends.
        """
        deadline = time.monotonic() + timeout
        while True:
            message = self._next_message()
            if message is not None:
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._stream.settimeout(remaining)
            try:
                chunk = self._stream.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            except OSError as error:
                self.closed = True
                raise WebSocketClosed(f"the WebSocket stream failed: {error}") from None
            if not chunk:
                self.closed = True
                raise WebSocketClosed("the server ended the WebSocket stream")
            self._buffer += chunk

    def _next_message(self) -> Optional[dict[str, Any]]:
        """Consume buffered frames; return the first complete JSON text message."""
        while True:
            frame = parse_frame(self._buffer)
            if frame is None:
                return None
            fin, opcode, payload, used = frame
            del self._buffer[:used]
            if opcode == OP_PING:
                self._send(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                self.closed = True
                self._send(OP_CLOSE, payload[:2])
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                raise WebSocketClosed(f"the server closed the WebSocket (code {code})")
            if opcode == OP_CONTINUATION:
                if self._fragments is None:
                    raise WebSocketError("continuation frame without a first fragment")
                self._fragments[1].extend(payload)
                if not fin:
                    continue
                opcode, whole = self._fragments[0], bytes(self._fragments[1])
                self._fragments = None
            elif not fin:
                self._fragments = (opcode, bytearray(payload))
                continue
            else:
                whole = payload
            if opcode != OP_TEXT:
                continue  # binary: latent previews, not needed here
            try:
                message = json.loads(whole.decode("utf-8"))
            except ValueError:
                continue
            if isinstance(message, dict):
                return message

    def _send(self, opcode: int, payload: bytes) -> None:
        try:
            self._stream.sendall(encode_frame(opcode, payload, os.urandom(4)))
        except OSError:
            self.closed = True

    def close(self) -> None:
        """Say goodbye (close frame 1000) and close the stream."""
        if not self.closed:
            self._send(OP_CLOSE, struct.pack(">H", 1000))
            self.closed = True
        try:
            self._stream.close()
        except OSError:
            pass
