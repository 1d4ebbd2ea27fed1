"""The WebSocket client against a real ``websockets`` server on 127.0.0.1, reached over a TCP
socket and over a paramiko direct-tcpip channel (the ``node`` fixture runs each test on both)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http import HTTPStatus

import pytest
from websockets.frames import Frame, Opcode

from provisioner.comfy.websocket import ComfyWebSocket, WebSocketClosed, WebSocketError

NO_KEEPALIVE = {"ping_interval": None}  # the server sends nothing the test did not ask for


def text_frame(message: dict) -> bytes:
    """Serialise ``message`` as the server's unmasked text frame (websockets' own encoder)."""
    return Frame(Opcode.TEXT, json.dumps(message).encode()).serialize(mask=False)


def test_messages_arrive_in_order_across_binary_fragmented_ping_and_non_json_frames(node, ws_server):
    status = {"type": "status", "data": {"sid": "abc def"}}
    progress = json.dumps({"type": "progress", "data": {"value": 1, "max": 20}})
    seen: dict = {}

    def handler(ws):
        seen["path"] = ws.request.path
        ws.send(json.dumps(status))
        ws.send(b"\x00\x00\x00\x01preview-jpeg")  # binary: a latent preview, skipped
        pong = ws.ping(b"hi")  # answered by the client while it reads on
        ws.send("not json")
        ws.send("[1, 2]")  # JSON, but not a message
        ws.send([progress[:10], progress[10:]])  # one message in two fragments
        seen["pong"] = pong.wait(5)
        ws.close(1000)

    port = ws_server(handler, **NO_KEEPALIVE)
    ws = ComfyWebSocket.connect(node, port, "abc def", timeout=5)
    assert ws.receive(timeout=5) == status
    assert ws.receive(timeout=5) == json.loads(progress)
    with pytest.raises(WebSocketClosed, match="1000"):
        ws.receive(timeout=5)
    assert ws.closed
    ws.close()
    assert seen == {"path": "/ws?clientId=abc%20def", "pong": True}
    assert node.all_closed()


def test_receive_times_out_with_none_and_completes_a_cut_frame(node, ws_server):
    status = {"type": "status", "data": {}}
    executing = text_frame({"type": "executing", "data": {"node": None, "prompt_id": "p"}})
    rest = threading.Event()

    def handler(ws):
        ws.socket.sendall(text_frame(status) + executing[:3])
        rest.wait(5)
        ws.socket.sendall(executing[3:])
        ws.socket.shutdown(socket.SHUT_RDWR)  # then the stream ends without a close frame

    port = ws_server(handler, **NO_KEEPALIVE)
    ws = ComfyWebSocket.connect(node, port, "abc", timeout=5)
    assert ws.receive(timeout=5) == status
    started = time.monotonic()
    assert ws.receive(timeout=0.2) is None
    assert 0.2 <= time.monotonic() - started < 3
    rest.set()
    assert ws.receive(timeout=5) == {"type": "executing", "data": {"node": None, "prompt_id": "p"}}
    with pytest.raises(WebSocketClosed, match="ended"):
        ws.receive(timeout=5)
    ws.close()
    assert node.all_closed()


def test_a_frame_that_breaks_the_protocol_is_an_error(node, ws_server):
    def handler(ws):
        ws.socket.sendall(Frame(Opcode.CONT, b"}").serialize(mask=False))  # continues nothing
        for _ in ws:  # until the client closes
            pass

    port = ws_server(handler, **NO_KEEPALIVE)
    ws = ComfyWebSocket.connect(node, port, "abc", timeout=5)
    with pytest.raises(WebSocketError) as raised:
        ws.receive(timeout=5)
    assert not isinstance(raised.value, WebSocketClosed)
    ws.close()
    assert node.all_closed()


def test_close_says_goodbye_with_1000_and_closes_the_stream(node, ws_server):
    done = threading.Event()
    seen: dict = {}

    def handler(ws):
        try:
            for _ in ws:
                pass
        finally:
            seen["code"] = ws.close_code
            done.set()

    port = ws_server(handler, **NO_KEEPALIVE)
    ws = ComfyWebSocket.connect(node, port, "abc", timeout=5)
    ws.close()
    assert ws.closed and node.all_closed()
    assert done.wait(5) and seen["code"] == 1000


def test_a_refused_upgrade_is_an_error(node, ws_server):
    def refuse(connection, request):
        return connection.respond(HTTPStatus.BAD_REQUEST, "expected a WebSocket upgrade\n")

    port = ws_server(lambda ws: None, process_request=refuse)
    with pytest.raises(WebSocketError, match="refused the WebSocket upgrade: HTTP 400"):
        ComfyWebSocket.connect(node, port, "abc", timeout=5)
    assert node.all_closed()


def test_a_wrong_accept_key_is_an_error(node, ws_server):
    def forge(connection, request, response):
        del response.headers["Sec-WebSocket-Accept"]
        response.headers["Sec-WebSocket-Accept"] = "bm9wZQ=="

    port = ws_server(lambda ws: None, process_response=forge)
    with pytest.raises(WebSocketError, match="handshake failed"):
        ComfyWebSocket.connect(node, port, "abc", timeout=5)
    assert node.all_closed()


def test_no_answer_within_the_timeout_is_an_error(node):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connects, never answers
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(WebSocketError, match="no WebSocket answer .* within 0.3 s"):
            ComfyWebSocket.connect(node, port, "abc", timeout=0.3)
        assert time.monotonic() - started < 3
    assert node.all_closed()


def test_nothing_listening_is_an_error(node):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(WebSocketError, match=f"nothing answers on 127.0.0.1:{port}"):
        ComfyWebSocket.connect(node, port, "abc", timeout=5)
