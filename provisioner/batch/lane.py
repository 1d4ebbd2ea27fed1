"""One node's share of a batch: keep its ComfyUI fed, follow its prompts on the WebSocket,
pull each finished job's images through ``/view`` and verify them against the node's copy
(sha256 on both sides) before the manifest lists them.

A lane runs on its own thread over the node's one SSH connection. When the node stops
answering (ComfyUI died, the connection dropped) the lane leaves the pool, which hands its
unfinished jobs to the other nodes; it never raises.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import posixpath
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional

from ..comfy.client import ComfyClient, ComfyUnavailable
from ..comfy.image import PngError, check_png
from ..comfy.prompts import (
    fetch_image,
    interrupt,
    rejection_text,
    saved_images,
    wait_history,
)
from ..comfy.websocket import ComfyWebSocket, WebSocketError
from ..node.shell import sh, sha256_of
from .manifest import Manifest, OutputRow
from .pool import JobPool
from .sweep import Job, job_workflow

RECEIVE_WAIT = 0.5
QUIET_POLL = 10.0  # ask /history about prompts that sent nothing for this long
FAILURES_IN_A_ROW = 3  # a node that fails this many jobs in a row leaves the batch


@dataclasses.dataclass(frozen=True)
class LaneEvent:
    """Progress of one node, for live display; ``kind`` says which fields matter."""

    node: str
    kind: Literal["ready", "queued", "step", "done", "failed", "left"]
    job: int = 0
    value: int = 0
    total: int = 0
    queue: int = 0  # this batch's jobs queued on the node
    steps_per_s: Optional[float] = None
    images: int = 0
    message: str = ""


LaneSink = Callable[[LaneEvent], None]


@dataclasses.dataclass
class LaneTally:
    """What one node did for the batch."""

    jobs: int = 0
    images: int = 0
    failed: int = 0
    handed_back: int = 0
    steps: int = 0
    step_seconds: float = 0.0
    error: Optional[str] = None


@dataclasses.dataclass
class _Flight:
    job: Job
    prompt_id: str
    queued_at: float
    started_wall: str
    last_news: float
    last_step_at: Optional[float] = None


class Lane:
    """Feed one node's ComfyUI from the pool until the batch settles or the node dies."""

    def __init__(self, name: str, node, port: int, output_dir: str, pool: JobPool,
                 manifest: Manifest, *, base: Optional[Mapping[str, Any]], job_timeout: float,
                 on_event: LaneSink) -> None:
        self.name = name
        self.node = node
        self.port = port
        self.output_dir = output_dir
        self.pool = pool
        self.manifest = manifest
        self.base = base
        self.job_timeout = job_timeout
        self.on_event = on_event
        self.client = ComfyClient(node, port, timeout=30)
        self.client_id = uuid.uuid4().hex
        self.flights: dict[str, _Flight] = {}
        self.tally = LaneTally()
        self.in_a_row = 0
        self.rate: Optional[float] = None

    def run(self) -> LaneTally:
        """The thread's body: returns the tally, never raises."""
        ws = None
        try:
            ws = ComfyWebSocket.connect(self.node, self.port, self.client_id)
            self.pool.join(self.name)
            self._emit("ready")
            while True:
                if self.pool.stopped:
                    self._withdraw()
                    break
                self._fill()
                if not self.flights:
                    if self.pool.wait(RECEIVE_WAIT):
                        break
                    continue
                message = ws.receive(timeout=RECEIVE_WAIT)
                if message is not None:
                    self._feed(message)
                self._check_quiet()
                if self.in_a_row >= FAILURES_IN_A_ROW:
                    raise _NodeGaveUp(f"{self.in_a_row} jobs in a row failed on it")
        except _NodeGaveUp as error:
            self._leave(str(error))
        except (ComfyUnavailable, WebSocketError) as error:
            self._leave(f"ComfyUI stopped answering: {error}")
        except Exception as error:  # noqa: BLE001 - an SSH failure ends this node, not the batch
            self._leave(f"the connection failed: {type(error).__name__}: {error}")
        finally:
            if ws is not None:
                ws.close()
        return self.tally

    # ------------------------------------------------------------------ queueing

    def _fill(self) -> None:
        while True:
            job = self.pool.take(self.name)
            if job is None:
                return
            workflow = job_workflow(job, self.base)
            status, body = self.client.post_json("/prompt", {"prompt": workflow,
                                                            "client_id": self.client_id})
            if status != 200 or not isinstance(body, dict) or "prompt_id" not in body:
                self._failed(job, f"ComfyUI refused it ({status}): {rejection_text(body)}")
                continue
            now = time.monotonic()
            wall = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            self.flights[str(body["prompt_id"])] = _Flight(job, str(body["prompt_id"]), now, wall, now)
            self._emit("queued", job=job.index)

    def _withdraw(self) -> None:
        """Take this batch's prompts off the node's queue and stop the running one (Ctrl-C)."""
        if not self.flights:
            return
        try:
            self.client.post_json("/queue", {"delete": list(self.flights)})
            self.client.post_json("/interrupt", {})
        except ComfyUnavailable:
            pass
        self.pool.leave(self.name)
        self.flights.clear()

    # ------------------------------------------------------------------ following

    def _feed(self, message: dict) -> None:
        data = message.get("data") or {}
        kind = message.get("type")
        flight = self.flights.get(str(data.get("prompt_id"))) if isinstance(data, dict) else None
        if flight is None:
            return
        now = time.monotonic()
        flight.last_news = now
        if kind == "progress":
            self._step(flight, now, int(data.get("value") or 0), int(data.get("max") or 0))
        elif kind == "execution_error":
            self._failed(flight.job, _error_text(data), flight)
        elif kind == "execution_interrupted":
            self._failed(flight.job, "it was interrupted on the node", flight)
        elif kind == "execution_success" or (kind == "executing" and data.get("node") is None):
            self._collect(flight)

    def _step(self, flight: _Flight, now: float, value: int, total: int) -> None:
        if flight.last_step_at is not None and value > 1:
            seconds = now - flight.last_step_at
            self.tally.steps += 1
            self.tally.step_seconds += seconds
            if seconds > 0:
                rate = 1.0 / seconds
                self.rate = rate if self.rate is None else 0.7 * self.rate + 0.3 * rate
        flight.last_step_at = now
        self._emit("step", job=flight.job.index, value=value, total=total)

    def _check_quiet(self) -> None:
        now = time.monotonic()
        for flight in list(self.flights.values()):
            if now - flight.queued_at > self.job_timeout:
                interrupt(self.client)
                self._failed(flight.job, f"no result within {self.job_timeout:.0f} s "
                                         "(it was interrupted)", flight)
            elif now - flight.last_news > QUIET_POLL:
                flight.last_news = now
                history = self.client.get_json(f"/history/{flight.prompt_id}") or {}
                if flight.prompt_id in history:
                    self._collect(flight, history[flight.prompt_id])

    # ------------------------------------------------------------------ outputs

    def _collect(self, flight: _Flight, entry: Optional[dict] = None) -> None:
        """Pull and verify the job's images, then list them in the manifest; ``entry`` is
        its /history entry when the caller has it already."""
        self.flights.pop(flight.prompt_id, None)
        entry = entry or wait_history(self.client, flight.prompt_id)
        if entry is None:
            return self._failed(flight.job, "ComfyUI kept no history of it")
        status = (entry.get("status") or {}).get("status_str")
        if status not in (None, "success"):
            return self._failed(flight.job, f"ComfyUI's history says it ended with {status!r}")
        images = saved_images(entry)
        if not images:
            return self._failed(flight.job, "it finished without saving an image")
        pulled = [self._pull(image) for image in images]
        problem = next((problem for _, _, problem in pulled if problem), None) or \
            self._verify(images, pulled)
        if problem:
            return self._failed(flight.job, problem)
        seconds = round(time.monotonic() - flight.queued_at, 3)
        rows = [OutputRow(job=flight.job.index, key=flight.job.key, inputs=dict(flight.job.values),
                          seed=flight.job.seed, node=self.name, prompt_id=flight.prompt_id,
                          started_at=flight.started_wall, seconds=seconds,
                          file=self._save(image, data), sha256=digest, bytes=len(data))
                for image, (data, digest, _) in zip(images, pulled)]
        self.manifest.record(rows)
        self.pool.finish(self.name, flight.job)
        self.tally.jobs += 1
        self.tally.images += len(rows)
        self.in_a_row = 0
        self._emit("done", job=flight.job.index, images=len(rows))

    def _pull(self, image: dict) -> tuple[bytes, str, Optional[str]]:
        """GET the image through /view: (bytes, their sha256, the problem if it failed)."""
        status, data = fetch_image(self.client, image)
        if status != 200:
            return b"", "", f"GET /view of {image.get('filename')} answered {status}"
        return data, hashlib.sha256(data).hexdigest(), None

    def _verify(self, images: list[dict], pulled: list[tuple[bytes, str, Optional[str]]]) -> Optional[str]:
        """Compare each pulled image with the sha256 of the node's file (one round trip)."""
        paths = [posixpath.join(self.output_dir, str(image.get("subfolder") or ""),
                                str(image.get("filename"))) for image in images]
        script = "; ".join(sha256_of(path) for path in paths)
        result = self.node.run(sh(script), check=False)
        remote = result.stdout.split()
        for path, (data, digest, _), theirs in zip(paths, pulled, remote + [""] * len(paths)):
            if theirs != digest:
                return (f"{posixpath.basename(path)} pulled with sha256 {digest[:16]}..., "
                        f"the node's file has {theirs[:16] or 'none'}...")
            try:
                if check_png(data).black:
                    return f"{posixpath.basename(path)} is all black (the VAE decoded NaN)"
            except PngError as error:
                return f"{posixpath.basename(path)} is not a readable image: {error}"
        return None

    def _save(self, image: dict, data: bytes) -> str:
        """Write the image into the output folder (atomically); return its relative name."""
        name = Path(str(image.get("filename"))).name
        target = self.manifest.folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(data)
        os.replace(partial, target)
        return name

    # ------------------------------------------------------------------ endings

    def _failed(self, job: Job, message: str, flight: Optional[_Flight] = None) -> None:
        if flight is not None:
            self.flights.pop(flight.prompt_id, None)
        self.pool.fail(self.name, job, message)
        self.tally.failed += 1
        self.in_a_row += 1
        self._emit("failed", job=job.index, message=message)

    def _leave(self, reason: str) -> None:
        self.tally.error = reason
        self.tally.handed_back = len(self.pool.leave(self.name))
        self.flights.clear()
        self._emit("left", message=reason)

    def _emit(self, kind, **fields) -> None:
        self.on_event(LaneEvent(node=self.name, kind=kind, queue=len(self.flights),
                                steps_per_s=self.rate, **fields))


class _NodeGaveUp(Exception):
    pass


def _error_text(data: dict) -> str:
    where = data.get("node_type") or data.get("node_id") or "a node"
    text = str(data.get("exception_message") or data.get("exception_type") or "failed").strip()
    return f"{where} failed: {text}"
