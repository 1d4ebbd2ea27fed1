"""ComfyUI's ``/ws?clientId=...`` WebSocket, followed through the run's SSH connection.

The protocol is websocket-client's; this module hands it the stream to speak over. On a
node that is ``node.open_tcp(port)``, a direct-tcpip channel of the run's one SSH connection
to the node's 127.0.0.1 (as for ``ComfyClient``), so nothing listens on the laptop. A
paramiko Channel has the calls websocket-client makes on a socket it is given (``send``,
``recv``, ``settimeout``/``gettimeout``, ``shutdown``, ``close``) but not the ``_closed``
flag its ``shutdown()`` reads, so this module closes the stream itself.

Text messages are JSON; binary ones (latent previews) are skipped; the library answers
pings and reassembles fragmented messages.
"""

from __future__ import annotations

import json
import struct
import time
from typing import Any, Optional
from urllib.parse import quote

import websocket

CLOSE_TIMEOUT = 2.0  # seconds to wait for the server's answer to our close frame


class WebSocketError(Exception):
    """The handshake failed, or the peer broke the protocol."""


class WebSocketClosed(WebSocketError):
    """The server closed the WebSocket (or the stream under it ended)."""


class ComfyWebSocket:
    """ComfyUI's WebSocket on a connected stream; ``receive`` returns one JSON message."""

    def __init__(self, ws: websocket.WebSocket, stream) -> None:
        self._ws = ws
        self._stream = stream
        self.closed = False

    @classmethod
    def connect(cls, node, port: int, client_id: str, timeout: float = 10.0) -> "ComfyWebSocket":
        """Open ``/ws?clientId=client_id`` on the node's 127.0.0.1:``port``."""
        try:
            stream = node.open_tcp(port, timeout=timeout)
        except Exception as error:  # paramiko ChannelException, socket errors
            raise WebSocketError(f"nothing answers on 127.0.0.1:{port} ({error})") from None
        url = f"ws://127.0.0.1:{port}/ws?clientId={quote(client_id)}"
        try:
            return cls.open(stream, url, timeout)
        except BaseException:
            stream.close()
            raise

    @classmethod
    def open(cls, stream, url: str, timeout: float) -> "ComfyWebSocket":
        """Do the opening handshake for ``url`` on ``stream`` (a connected socket or channel)."""
        stream.settimeout(timeout)
        # No socket options: with a stream given the library sets none (a Channel has no
        # setsockopt). No Origin header, as before: ComfyUI checks it against Host if present.
        ws = websocket.WebSocket(skip_utf8_validation=True)  # receive() skips non-UTF-8 text
        try:
            ws.connect(url, socket=stream, timeout=timeout, suppress_origin=True)
        except websocket.WebSocketBadStatusException as error:
            raise WebSocketError(f"{url} refused the WebSocket upgrade: HTTP {error.status_code} "
                                 f"{error.status_message or ''}".rstrip()) from None
        except websocket.WebSocketTimeoutException:
            raise WebSocketError(f"no WebSocket answer from {url} within {timeout:g} s") from None
        except websocket.WebSocketConnectionClosedException:
            raise WebSocketError(f"{url} closed the connection during the handshake") from None
        except (websocket.WebSocketException, OSError, ValueError) as error:
            raise WebSocketError(f"{url}: the WebSocket handshake failed: {error}") from None
        return cls(ws, stream)

    def receive(self, timeout: float) -> Optional[dict[str, Any]]:
        """Return the next JSON text message, or None when none arrives within ``timeout`` s.

        Raises ``WebSocketClosed`` when the server closes the socket or the stream ends. A
        frame cut by the timeout is kept and completed by the next call.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._ws.settimeout(remaining)
            try:
                opcode, data = self._ws.recv_data()
            except websocket.WebSocketTimeoutException:
                return None
            except websocket.WebSocketConnectionClosedException:
                self.closed = True
                raise WebSocketClosed("the server ended the WebSocket stream") from None
            except OSError as error:
                self.closed = True
                raise WebSocketClosed(f"the WebSocket stream failed: {error}") from None
            except websocket.WebSocketException as error:
                raise WebSocketError(f"ComfyUI's WebSocket broke the protocol: {error}") from None
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self.closed = True  # the library has answered with its own close frame
                code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None
                raise WebSocketClosed(f"the server closed the WebSocket (code {code})")
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue  # binary: latent previews, not needed here
            try:
                message = json.loads(data.decode("utf-8"))
            except ValueError:  # not UTF-8, or not JSON
                continue
            if isinstance(message, dict):
                return message

    def close(self) -> None:
        """Say goodbye (close frame 1000, unless the server already closed) and close the stream."""
        try:
            self._ws.close(timeout=CLOSE_TIMEOUT)  # a no-op once either side has closed
        except (websocket.WebSocketException, OSError, ValueError):
            pass
        self.closed = True
        try:
            self._stream.close()
        except OSError:
            pass
