"""Make one image: submit an API-format prompt, follow it on the WebSocket, pull what it saved
through ``/view`` and check each PNG. Every way it can end is an ``outcome`` the caller (``up``'s
first image) turns into a diagnosis (``diagnosis.py``); nothing here raises for a failed image.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Callable, Literal, Optional

from .client import ComfyClient, ComfyUnavailable
from .image import PngCheck, PngError, check_png
from .prompts import fetch_image, image_name, interrupt, rejection_text, saved_images, wait_history
from .timing import RunTimer, RunTiming
from .websocket import ComfyWebSocket, WebSocketError
from .workflows import DECODE_CLASSES, SAMPLER_CLASSES, node_ids

Outcome = Literal["ok", "refused", "error", "interrupted", "died", "timeout", "cached",
                  "no_image", "unreadable", "black"]
StepSink = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class SavedImage:
    name: str  # subfolder/filename in ComfyUI's output folder
    filename: str
    subfolder: str
    data: bytes = b""  # empty when /view did not give it
    check: Optional[PngCheck] = None  # None when it could not be read


@dataclasses.dataclass
class Generation:
    """How one prompt ended, and what was seen on the way."""

    outcome: Outcome
    message: str = ""
    prompt_id: Optional[str] = None
    timing: RunTiming = dataclasses.field(default_factory=RunTiming)
    error: dict = dataclasses.field(default_factory=dict)  # ComfyUI's execution_error data
    executing: Optional[str] = None  # the class of the node running when it stopped
    images: list[SavedImage] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def generate(node, port: int, workflow: dict, *, timeout: float,
             on_step: StepSink = lambda value, total: None) -> Generation:
    """Run ``workflow`` on the ComfyUI at the node's 127.0.0.1:``port``; never raises for a
    failed image (a broken SSH connection still raises)."""
    client = ComfyClient(node, port, timeout=30)
    client_id = uuid.uuid4().hex
    try:
        ws = ComfyWebSocket.connect(node, port, client_id)
    except WebSocketError as error:
        return Generation("died", f"ComfyUI's WebSocket does not answer ({error})")
    try:
        return _follow(client, ws, client_id, workflow, timeout, on_step)
    except ComfyUnavailable as error:
        return Generation("died", f"ComfyUI stopped answering ({error})")
    finally:
        ws.close()


def _follow(client: ComfyClient, ws: ComfyWebSocket, client_id: str, workflow: dict,
            timeout: float, on_step: StepSink) -> Generation:
    submitted = time.monotonic()
    status, body = client.post_json("/prompt", {"prompt": workflow, "client_id": client_id})
    if status != 200 or not isinstance(body, dict) or "prompt_id" not in body:
        return Generation("refused", f"ComfyUI refused the prompt ({status}): {rejection_text(body)}")
    prompt_id = str(body["prompt_id"])
    timer = RunTimer(prompt_id, submitted, node_ids(workflow, SAMPLER_CLASSES),
                     node_ids(workflow, DECODE_CLASSES))
    seen = _Seen(workflow, prompt_id)
    deadline = submitted + timeout
    try:
        while not timer.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                interrupt(client)
                return seen.ended("timeout", f"no image within {timeout:.0f} s", timer)
            message = ws.receive(timeout=min(remaining, 5.0))
            if message is None:
                continue
            seen.feed(message)
            step = timer.feed(time.monotonic(), message)
            if step is not None:
                on_step(*step)
    except WebSocketError as error:
        return seen.ended("died", f"the WebSocket to ComfyUI broke mid-prompt ({error})", timer)
    if timer.error:
        outcome: Outcome = "error" if seen.error else "interrupted"
        return seen.ended(outcome, timer.error, timer)
    if timer.sampler_cached:
        return seen.ended("cached", "ComfyUI answered from its cache: nothing was computed", timer)
    return _collect(client, seen, timer)


def collect_images(client: ComfyClient, prompt_id: str) -> tuple[list[SavedImage],
                                                                  Optional[tuple[Outcome, str]]]:
    """Read a finished prompt's images from /history, pull each via /view and check it;
    return them and the first problem (outcome, message), if any."""
    entry = wait_history(client, prompt_id)
    if entry is None:
        return [], ("no_image", f"/history/{prompt_id} stayed empty after the prompt finished")
    status = (entry.get("status") or {}).get("status_str")
    if status not in (None, "success"):
        return [], ("error", f"ComfyUI's history says the prompt ended with {status!r}")
    found = saved_images(entry)
    if not found:
        return [], ("no_image", "the prompt finished without saving an image")
    images: list[SavedImage] = []
    problem: Optional[tuple[Outcome, str]] = None
    for image in found:
        saved = SavedImage(image_name(image), str(image.get("filename", "")),
                           str(image.get("subfolder", "")))
        status_code, data = fetch_image(client, image)
        if status_code != 200:
            images.append(saved)
            problem = problem or ("no_image", f"GET /view of {saved.name} answered {status_code}")
            continue
        try:
            check = check_png(data)
        except PngError as error:
            images.append(dataclasses.replace(saved, data=data))
            problem = problem or ("unreadable", f"{saved.name} cannot be checked: it is {error}")
            continue
        images.append(dataclasses.replace(saved, data=data, check=check))
        if check.black:
            problem = problem or ("black", f"{saved.name} is all black")
    return images, problem


def _collect(client: ComfyClient, seen: "_Seen", timer: RunTimer) -> Generation:
    images, problem = collect_images(client, seen.prompt_id)
    result = seen.ended(*(problem or ("ok", "")), timer)
    result.images = images
    return result


class _Seen:
    """What the messages said beyond timings: the error's details and the node running."""

    def __init__(self, workflow: dict, prompt_id: str) -> None:
        self.workflow = workflow
        self.prompt_id = prompt_id
        self.error: dict = {}
        self.executing: Optional[str] = None

    def feed(self, message: dict) -> None:
        data = message.get("data") or {}
        if not isinstance(data, dict) or data.get("prompt_id") != self.prompt_id:
            return
        if message.get("type") == "executing" and data.get("node") is not None:
            node = self.workflow.get(str(data["node"])) or {}
            self.executing = str(node.get("class_type") or data["node"])
        elif message.get("type") == "execution_error":
            self.error = data

    def ended(self, outcome: Outcome, message: str, timer: RunTimer) -> Generation:
        return Generation(outcome, message, self.prompt_id, timer.timing(), self.error,
                          self.executing)
