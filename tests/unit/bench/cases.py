"""Shared test data for the bench modules: WebSocket message sequences as ComfyUI sends them
(FACTS.md "WebSocket and history") and a small BenchReport."""

from __future__ import annotations

from provisioner.bench.report import (
    BenchReport,
    ImageResult,
    MemoryPoint,
    RunResult,
    run_memory,
    summarise,
)
from provisioner.comfy.timing import RunTimer

PROMPT = "p-1"


def messages(prompt_id: str = PROMPT, steps: int = 4, cached=("1", "2", "3")) -> list[tuple[float, dict]]:
    """One successful prompt: (arrival time, message); the sampler is node 8, VAEDecode 9."""

    def msg(kind, **data):
        return {"type": kind, "data": dict(data, prompt_id=prompt_id)}

    out: list[tuple[float, dict]] = [
        (0.00, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}),
        (0.01, msg("execution_start", timestamp=1)),
        (0.02, msg("execution_cached", nodes=list(cached), timestamp=1)),
        (0.03, msg("executing", node="4", display_node="4")),
        (0.10, msg("executing", node="8", display_node="8")),
    ]
    for value in range(1, steps + 1):
        out.append((1.0 + 0.5 * value, msg("progress", value=value, max=steps, node="8")))
        out.append((1.0 + 0.5 * value, {"type": "progress_state", "data": {"prompt_id": prompt_id,
                                                                          "nodes": {}}}))
    end = 1.0 + 0.5 * steps
    out += [
        (end + 0.01, msg("executing", node="9", display_node="9")),
        (end + 0.31, msg("executing", node="10", display_node="10")),
        (end + 0.35, msg("executed", node="10", display_node="10",
                         output={"images": [{"filename": "a_00001_.png", "subfolder": "bench",
                                             "type": "output"}]})),
        (end + 0.36, msg("execution_success", timestamp=2)),
        (end + 0.37, {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}}),
        (end + 0.38, {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}),
    ]
    return out


def timer_for(sequence, submitted: float = 0.0) -> RunTimer:
    timer = RunTimer(PROMPT, submitted, ["8"], ["9"])
    for at, message in sequence:
        timer.feed(at, message)
    return timer


def points(*rows) -> list[MemoryPoint]:
    """rows: (t, pressure, swap_mb, swapouts)."""
    return [MemoryPoint(t=t, pressure=p, swap_used_bytes=mb * 1024**2, swapouts=so,
                        compressor_bytes=1000) for t, p, mb, so in rows]


def sample_report(ok: bool = True, **update) -> BenchReport:
    memory = points((0.5, "green", 0, 10), (1.5, "green", 0, 10), (2.5, "yellow", 100, 50),
                    (3.5, "red", 900, 400), (4.5, "red", 900, 400))
    runs = []
    spans = [(0.6, 1.6), (1.7, 2.6), (2.7, 3.6)]
    for index, (start, end) in enumerate(spans):
        timing = timer_for(messages(steps=4)).timing()
        failed = not ok and index == 2
        runs.append(RunResult(
            index=index, warmup=index == 0, seed=100 + index, prompt_id=f"p{index}", ok=not failed,
            error="a_00003_.png is all black" if failed else None, started_s=start, ended_s=end,
            timing=timing,
            images=[ImageResult(filename=f"a_0000{index + 1}_.png", subfolder="bench",
                                width=1024, height=1024, black=failed)],
            memory=run_memory(memory, start, end)))
    fields = dict(
        node="m4pro-1", host="203.0.113.10", platform="macos", chip="Apple M4 Pro",
        memory_bytes=64 * 1024**3, device="mps", comfyui_version="0.3.64",
        comfyui_argv=["main.py", "--fp32-vae"], model="dev", quality="q8",
        files={"unet": "flux1-dev-Q8_0.gguf", "t5": "t5-v1_1-xxl-encoder-Q8_0.gguf",
               "clip_l": "clip_l.safetensors", "vae": "ae.safetensors"},
        unet_loader="UnetLoaderGGUF", steps=4, width=1024, height=1024, prompt="a fox", seed=100,
        runs_requested=2, started_at="2025-01-01T10:00:00+00:00", duration_s=4.6, runs=runs,
        summary=summarise(runs), memory=memory, ok=ok,
        error=None if ok else "run 2 failed", hint=None if ok else "use --fp32-vae")
    fields.update(update)
    return BenchReport(**fields)
