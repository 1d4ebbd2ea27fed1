"""What ``provision bench`` measures, as data, and the pure logic that computes it.

``run_memory`` attributes the memory samples to a run; ``summarise``
gives min/median/max over the measured runs (the warm-up excluded). ``run.py`` does the
I/O; ``BenchReport`` is what ``--json`` prints and what ``provision fleet bench`` collects.
"""

from __future__ import annotations

import statistics
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict

from ..comfy.timing import RunTiming
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
