"""What ``provision bench`` measures, as data, and the pure logic that computes it.

``RunTimer`` folds ComfyUI's WebSocket messages for one prompt (with their local arrival
times) into timings; ``run_memory`` attributes the memory samples to a run; ``summarise``
gives min/median/max over the measured runs (the warm-up excluded). ``run.py`` does the
I/O; ``BenchReport`` is what ``--json`` prints and what ``provision fleet bench`` collects.
"""

from __future__ import annotations

import statistics
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict

from ..core.report import NodeReport

Pressure = Literal["green", "yellow", "red"]
PRESSURE_RANK: dict[str, int] = {"green": 0, "yellow": 1, "red": 2}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class BenchOptions(_Frozen):
    """What the user asked ``bench`` for; None means the model's default."""

    model: Optional[Literal["dev", "schnell"]] = None  # None: node.yaml's model
    steps: Optional[int] = None  # None: 20 for dev, 4 for schnell (the seed's table)
    runs: int = 3
    warmup: bool = True
    seed: Optional[int] = None  # None: a random base seed; run i uses seed + i
    prompt: Optional[str] = None
    width: int = 1024
    height: int = 1024
    compare: Optional[Literal["seed"]] = None
    pull_images: bool = True
    run_timeout: float = 3600.0  # seconds per image; the seed's worst case is 760 s


class MemoryPoint(_Frozen):
    """One memory sample on the node; ``t`` is seconds since the bench started."""

    t: float
    pressure: Pressure
    swap_used_bytes: int
    swapouts: Optional[int] = None
    compressor_bytes: Optional[int] = None
    available_bytes: Optional[int] = None


class RunMemory(_Frozen):
    """Memory over one run: the peak pressure and what swap did, from the samples."""

    samples: int
    peak_pressure: Pressure
    swap_before_bytes: int
    swap_peak_bytes: int
    swap_delta_bytes: int
    swapouts_delta: Optional[int] = None
    compressor_peak_bytes: Optional[int] = None


class ImageResult(_Frozen):
    filename: str
    subfolder: str = ""
    local_path: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    black: Optional[bool] = None  # None: not checked


class RunTiming(_Frozen):
    """What the WebSocket messages of one prompt say about its time."""

    total_s: Optional[float] = None
    first_step_s: Optional[float] = None  # execution start -> first sampler step (model load)
    sampling_s: Optional[float] = None  # first -> last sampler step
    steps_per_s: Optional[float] = None
    steps_done: int = 0
    steps_total: int = 0
    vae_decode_s: Optional[float] = None
    node_seconds: dict[str, float] = {}
    cached_nodes: list[str] = []


class RunResult(_Frozen):
    """One image: index 0 is the warm-up when there is one."""

    index: int
    warmup: bool
    seed: int
    prompt_id: Optional[str] = None
    ok: bool
    error: Optional[str] = None
    started_s: float
    ended_s: float
    timing: RunTiming
    images: list[ImageResult] = []
    memory: Optional[RunMemory] = None


class Stat(_Frozen):
    min: float
    median: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Optional["Stat"]:
        if not values:
            return None
        return cls(min=min(values), median=statistics.median(values), max=max(values))


class BenchSummary(_Frozen):
    """Over the measured runs (the warm-up excluded)."""

    runs: int
    total_s: Optional[Stat] = None
    first_step_s: Optional[Stat] = None
    steps_per_s: Optional[Stat] = None
    vae_decode_s: Optional[Stat] = None
    warmup_total_s: Optional[float] = None
    warmup_first_step_s: Optional[float] = None  # the model load, paid once
    peak_pressure: Optional[Pressure] = None
    swap_peak_bytes: Optional[int] = None
    swap_delta_bytes: Optional[int] = None  # largest growth in one run
    swapouts_delta: Optional[int] = None  # summed over the measured runs


class SeedRow(_Frozen):
    """One row of the seed article's table (FACTS.md "The seed's benchmark table")."""

    memory_gb: int
    models: str
    quality: Literal["q4", "bf16"]
    model: Literal["dev", "schnell"]
    steps: int
    pressure: Pressure
    swap_gb: float
    time_s: float
    note: str = ""


class SeedComparison(_Frozen):
    seed: Optional[SeedRow] = None
    measured_s: Optional[float] = None  # median total time per image
    ratio: Optional[float] = None  # measured / seed: < 1 is faster than the seed
    measured_pressure: Optional[Pressure] = None
    measured_swap_peak_bytes: Optional[int] = None
    notes: list[str] = []


class BenchReport(NodeReport):
    """Everything ``provision bench`` measured on one node; ``--json`` is this model's JSON."""

    platform: str
    chip: str
    memory_bytes: int
    device: Optional[str] = None
    comfyui_version: Optional[str] = None
    comfyui_argv: list[str] = []
    model: Literal["dev", "schnell"]
    quality: str
    files: dict[str, str]
    unet_loader: str
    steps: int
    width: int
    height: int
    prompt: str
    seed: int
    runs_requested: int
    started_at: str
    duration_s: float = 0.0
    runs: list[RunResult] = []
    summary: Optional[BenchSummary] = None
    memory: list[MemoryPoint] = []
    memory_interval_s: float = 1.0
    memory_errors: list[str] = []
    compare: Optional[SeedComparison] = None
    images_dir: Optional[str] = None
    history_file: Optional[str] = None
    plot_file: Optional[str] = None
    ok: bool = True
    error: Optional[str] = None
    hint: Optional[str] = None

    @property
    def measured(self) -> list[RunResult]:
        return [run for run in self.runs if not run.warmup]


# ------------------------------------------------------------------------------ timing


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


# ------------------------------------------------------------------------------ memory


def to_point(t: float, sample) -> MemoryPoint:
    """Turn a ``memory.MemorySample`` taken at ``t`` into a ``MemoryPoint``."""
    return MemoryPoint(t=round(t, 3), pressure=sample.pressure,
                       swap_used_bytes=sample.swap_used_bytes, swapouts=sample.swapouts,
                       compressor_bytes=sample.compressor_bytes,
                       available_bytes=sample.available_bytes)


def run_memory(points: list[MemoryPoint], start: float, end: float) -> Optional[RunMemory]:
    """Attribute samples to the run between ``start`` and ``end`` (seconds since the bench
    started): the baseline is the last sample at or before ``start`` (else the first one);
    the window is every sample after ``start`` up to and including the first one after
    ``end``, so a run shorter than the sampling interval still gets one."""
    if not points:
        return None
    before = [p for p in points if p.t <= start]
    baseline = before[-1] if before else points[0]
    window = [p for p in points if start < p.t <= end]
    after = next((p for p in points if p.t > end), None)
    if after is not None:
        window.append(after)
    if not window:
        return None
    last = window[-1]
    swapouts = (last.swapouts - baseline.swapouts
                if last.swapouts is not None and baseline.swapouts is not None else None)
    compressor = [p.compressor_bytes for p in window if p.compressor_bytes is not None]
    return RunMemory(
        samples=len(window),
        peak_pressure=_highest([p.pressure for p in window]) or baseline.pressure,
        swap_before_bytes=baseline.swap_used_bytes,
        swap_peak_bytes=max(p.swap_used_bytes for p in window),
        swap_delta_bytes=last.swap_used_bytes - baseline.swap_used_bytes,
        swapouts_delta=swapouts,
        compressor_peak_bytes=max(compressor) if compressor else None,
    )


def _highest(levels: list[Pressure]) -> Optional[Pressure]:
    return max(levels, key=PRESSURE_RANK.__getitem__, default=None)


def summarise(runs: list[RunResult]) -> BenchSummary:
    """Return min/median/max over the measured runs that succeeded (the warm-up excluded)."""
    measured = [run for run in runs if not run.warmup and run.ok]
    warmup = next((run for run in runs if run.warmup), None)

    def values(name: str) -> list[float]:
        return [getattr(run.timing, name) for run in measured if getattr(run.timing, name) is not None]

    memories = [run.memory for run in measured if run.memory is not None]
    swapouts = [m.swapouts_delta for m in memories if m.swapouts_delta is not None]
    return BenchSummary(
        runs=len(measured),
        total_s=Stat.of(values("total_s")),
        first_step_s=Stat.of(values("first_step_s")),
        steps_per_s=Stat.of(values("steps_per_s")),
        vae_decode_s=Stat.of(values("vae_decode_s")),
        warmup_total_s=warmup.timing.total_s if warmup else None,
        warmup_first_step_s=warmup.timing.first_step_s if warmup else None,
        peak_pressure=_highest([m.peak_pressure for m in memories]),
        swap_peak_bytes=max(m.swap_peak_bytes for m in memories) if memories else None,
        swap_delta_bytes=max(m.swap_delta_bytes for m in memories) if memories else None,
        swapouts_delta=sum(swapouts) if swapouts else None,
    )
