"""One API-format prompt on ComfyUI, over the run's SSH connection: check it, submit it, read
what it saved. ``bench`` and ``up``'s first image share these; ``generate.py`` follows one
prompt from submission to its checked images.
"""

from __future__ import annotations

import time
from typing import Any, Optional
from urllib.parse import quote, urlencode

from .client import ComfyClient, ComfyUnavailable

HISTORY_WAIT = 15.0  # ComfyUI stores the history just after the prompt's last message


def fetch_object_info(client: ComfyClient, classes: list[str]) -> dict[str, Any]:
    """Ask ``/object_info/{class}`` for each class (a few KB each, not the 500 KB whole)."""
    info: dict[str, Any] = {}
    for name in classes:
        answer = client.get_json(f"/object_info/{quote(name, safe='')}") or {}
        if isinstance(answer, dict) and answer.get(name):
            info[name] = answer[name]
    return info


def rejection_text(body: Any) -> str:
    """Summarise a POST /prompt 400 answer: the error and each node's first errors."""
    if not isinstance(body, dict):
        return str(body)[:300]
    error = body.get("error") or {}
    parts = [str(error.get("message") or error.get("type") or "rejected")]
    for node_id, entry in (body.get("node_errors") or {}).items():
        for item in (entry.get("errors") or [])[:3]:
            parts.append(f"node {node_id} ({entry.get('class_type', '?')}): {item.get('message')}"
                         + (f": {item.get('details')}" if item.get("details") else ""))
    return "; ".join(parts)


def wait_history(client: ComfyClient, prompt_id: str, wait: float = HISTORY_WAIT) -> Optional[dict]:
    """Return the prompt's ``/history`` entry, waiting up to ``wait`` s for it; None if absent."""
    deadline = time.monotonic() + wait
    while True:
        history = client.get_json(f"/history/{quote(prompt_id, safe='')}") or {}
        if prompt_id in history:
            return history[prompt_id]
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def saved_images(entry: dict) -> list[dict]:
    """Return the images a history entry says were saved to the output folder."""
    return [image for output in (entry.get("outputs") or {}).values()
            for image in (output.get("images") or []) if image.get("type", "output") == "output"]


def image_name(image: dict) -> str:
    """Return ``subfolder/filename`` (or the filename) of a saved image, as a user sees it."""
    filename, subfolder = str(image.get("filename", "")), str(image.get("subfolder", ""))
    return f"{subfolder}/{filename}" if subfolder else filename


def fetch_image(client: ComfyClient, image: dict) -> tuple[int, bytes]:
    """GET a saved image through ``/view``; return (HTTP status, bytes)."""
    query = urlencode({"filename": str(image.get("filename", "")),
                       "subfolder": str(image.get("subfolder", "")), "type": "output"})
    return client.request("GET", f"/view?{query}")


def interrupt(client: ComfyClient) -> None:
    """Stop the running prompt, if ComfyUI still answers."""
    try:
        client.request("POST", "/interrupt", {})
    except ComfyUnavailable:
        pass


def black_hint(argv: list[str]) -> str:
    """Say what to do about an all-black image, given ComfyUI's command line."""
    if "--fp32-vae" not in argv:
        return ("an all-black (NaN) image is the MPS fp16-VAE failure: ComfyUI must run with "
                "--fp32-vae (not --fp32vae); this one does not, so re-run `provision up NODE.yaml`, "
                "which starts it with --fp32-vae")
    return ("an all-black (NaN) image is the MPS fp16-VAE failure; this ComfyUI already runs with "
            "--fp32-vae, so also try comfyui: {extra_args: [--cpu-vae]} in node.yaml and check the "
            "VAE file (ae.safetensors)")
