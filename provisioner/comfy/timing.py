"""Time one prompt from ComfyUI's WebSocket messages: pure, messages in, ``RunTiming`` out.

``RunTimer.feed(at, message)`` takes each message with its local arrival time; ``timing()``
says how long the prompt took, how long until its first sampler step (the model load on a
cold ComfyUI) and how long the sampling took. ``bench`` and ``up``'s first image use it.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict


class RunTiming(BaseModel):
    """What the WebSocket messages of one prompt say about its time."""

    model_config = ConfigDict(frozen=True)

    total_s: Optional[float] = None
    first_step_s: Optional[float] = None  # execution start -> first sampler step (model load)
    sampling_s: Optional[float] = None  # first -> last sampler step
    steps_per_s: Optional[float] = None
    steps_done: int = 0
    steps_total: int = 0
    vae_decode_s: Optional[float] = None
    node_seconds: dict[str, float] = {}
    cached_nodes: list[str] = []


class RunTimer:
    """Fold the WebSocket messages of one prompt into a ``RunTiming``.

    ``feed(at, message)`` takes each message with its arrival time (monotonic seconds);
    messages of other prompts are ignored. ``done`` turns true on success, error or
    interruption; ``error`` then says what went wrong.
    """

    def __init__(self, prompt_id: str, submitted_at: float, sampler_ids: list[str],
                 decode_ids: list[str]) -> None:
        self.prompt_id = prompt_id
        self.submitted_at = submitted_at
        self.sampler_ids = set(sampler_ids)
        self.decode_ids = set(decode_ids)
        self.started_at: Optional[float] = None
        self.finished_at: Optional[float] = None
        self.done = False
        self.error: Optional[str] = None
        self.cached: list[str] = []
        self._current: Optional[tuple[str, float]] = None
        self._node_seconds: dict[str, float] = {}
        self._first: Optional[tuple[float, int]] = None
        self._last: Optional[tuple[float, int]] = None
        self._max = 0
        self.executed: list[dict[str, Any]] = []

    def feed(self, at: float, message: dict[str, Any]) -> Optional[tuple[int, int]]:
        """Take one message; return (value, max) when it is a sampler step of this prompt."""
        kind = message.get("type")
        data = message.get("data") or {}
        if not isinstance(data, dict) or data.get("prompt_id") != self.prompt_id or self.done:
            return None
        if kind == "execution_start":
            self.started_at = at
        elif kind == "execution_cached":
            self.cached = [str(node) for node in data.get("nodes") or []]
        elif kind == "executing":
            self._close_node(at)
            node = data.get("node")
            if node is None:
                self._finish(at)
            else:
                self._current = (str(node), at)
        elif kind == "progress":
            node = data.get("node")
            if node is not None and self.sampler_ids and str(node) not in self.sampler_ids:
                return None
            value, top = int(data.get("value", 0)), int(data.get("max", 0))
            if self._first is None:
                self._first = (at, value)
            self._last = (at, value)
            self._max = max(self._max, top)
            return value, top
        elif kind == "executed":
            self.executed.append(data)
        elif kind == "execution_success":
            self._close_node(at)
            self._finish(at)
        elif kind == "execution_error":
            self._close_node(at)
            where = f"{data.get('node_type', '?')} (node {data.get('node_id', '?')})"
            why = f"{data.get('exception_type', 'error')}: {str(data.get('exception_message', '')).strip()}"
            self.error = f"{where} failed: {why}"
            self._finish(at)
        elif kind == "execution_interrupted":
            self._close_node(at)
            self.error = f"interrupted in node {data.get('node_id', '?')} ({data.get('node_type', '?')})"
            self._finish(at)
        return None

    def _close_node(self, at: float) -> None:
        if self._current is not None:
            node, since = self._current
            self._node_seconds[node] = self._node_seconds.get(node, 0.0) + (at - since)
            self._current = None

    def _finish(self, at: float) -> None:
        self.done = True
        self.finished_at = at

    @property
    def sampler_cached(self) -> bool:
        """True when ComfyUI served the sampler from its cache: the run computed nothing."""
        return bool(self.sampler_ids & set(self.cached))

    def timing(self) -> RunTiming:
        start = self.started_at if self.started_at is not None else self.submitted_at
        total = (self.finished_at - self.submitted_at) if self.finished_at is not None else None
        first_step = (self._first[0] - start) if self._first is not None else None
        sampling = steps_per_s = None
        if self._first is not None and self._last is not None:
            sampling = self._last[0] - self._first[0]
            steps = self._last[1] - self._first[1]
            if steps > 0 and sampling > 0:
                steps_per_s = steps / sampling
        decode = [self._node_seconds[node] for node in self.decode_ids if node in self._node_seconds]
        return RunTiming(
            total_s=total, first_step_s=first_step, sampling_s=sampling, steps_per_s=steps_per_s,
            steps_done=self._last[1] if self._last else 0, steps_total=self._max,
            vae_decode_s=sum(decode) if decode else None,
            node_seconds={node: round(seconds, 4) for node, seconds in self._node_seconds.items()},
            cached_nodes=self.cached,
        )
