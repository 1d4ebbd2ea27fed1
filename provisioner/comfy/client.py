"""A small ComfyUI HTTP client that reaches the node's loopback through the SSH connection.

ComfyUI listens on 127.0.0.1 on the node; each request opens a direct-tcpip channel on the
run's one SSH connection, so no port is opened anywhere and no local tunnel is needed.
"""

from __future__ import annotations

import http.client
import json
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict


class ComfyUnavailable(Exception):
    """ComfyUI did not answer (not listening yet, crashed, or the port is wrong)."""


class _ChannelConnection(http.client.HTTPConnection):
    def __init__(self, stream) -> None:
        super().__init__("127.0.0.1")
        self.sock = stream

    def connect(self) -> None:  # the stream is already connected
        pass


class ComfyClient:
    """ComfyUI's HTTP API on a node (FACTS.md "HTTP API")."""

    def __init__(self, node, port: int, timeout: float = 10.0) -> None:
        self.node = node
        self.port = port
        self.timeout = timeout

    def request(self, method: str, path: str, body: Optional[dict] = None) -> tuple[int, bytes]:
        try:
            stream = self.node.open_tcp(self.port, timeout=self.timeout)
        except Exception as error:  # paramiko ChannelException, socket errors
            raise ComfyUnavailable(f"nothing answers on 127.0.0.1:{self.port} ({error})") from None
        if hasattr(stream, "settimeout"):
            stream.settimeout(self.timeout)
        connection = _ChannelConnection(stream)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            raise ComfyUnavailable(f"127.0.0.1:{self.port} {method} {path}: {error}") from None
        finally:
            connection.close()

    def get_json(self, path: str) -> Any:
        status, data = self.request("GET", path)
        if status != 200:
            raise ComfyUnavailable(f"GET {path} answered {status}")
        return json.loads(data or b"null")

    def post_json(self, path: str, body: dict) -> tuple[int, Any]:
        status, data = self.request("POST", path, body)
        try:
            return status, json.loads(data or b"null")
        except ValueError:
            return status, data.decode(errors="replace")

    def system_stats(self) -> dict:
        return self.get_json("/system_stats")

    def choices(self, node_class: str, input_name: str) -> list[str]:
        """Return the combo choices ComfyUI offers for one input of a node class."""
        info = self.get_json(f"/object_info/{node_class}").get(node_class) or {}
        inputs = info.get("input", {})
        spec = inputs.get("required", {}).get(input_name) or inputs.get("optional", {}).get(input_name)
        if not spec or not isinstance(spec[0], list):
            return []
        return [str(choice) for choice in spec[0]]


class QueueState(BaseModel):
    """ComfyUI's queue (``GET /queue``): the prompt running and the ones waiting."""

    model_config = ConfigDict(frozen=True)

    running: list[str] = []  # prompt ids
    pending: list[str] = []

    @property
    def empty(self) -> bool:
        return not self.running and not self.pending


def parse_queue(data: Any) -> QueueState:
    """Parse ``GET /queue`` (entries are ``[number, prompt_id, prompt, extra, outputs]``)."""

    def ids(entries: Any) -> list[str]:
        found = []
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, list) and len(entry) > 1:
                found.append(str(entry[1]))
        return found

    data = data if isinstance(data, dict) else {}
    return QueueState(running=ids(data.get("queue_running")), pending=ids(data.get("queue_pending")))


def read_queue(client: ComfyClient) -> QueueState:
    return parse_queue(client.get_json("/queue"))


def interrupt_all(client: ComfyClient) -> None:
    """Drop the pending prompts, then interrupt the running one."""
    client.post_json("/queue", {"clear": True})
    client.post_json("/interrupt", {})
