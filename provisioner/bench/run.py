"""Run ``provision bench`` on one node over its open SSH connection.

Facts and the model plan name the files; the workflow is rendered and checked against the
node's ``/object_info`` before anything is submitted; then a warm-up and N runs, each with a
new seed (ComfyUI caches identical prompts and would compute nothing), followed live over
the ``/ws`` WebSocket, collected from ``/history``, their images pulled through ``/view``
and checked not to be black, while ``MemoryWatch`` samples the node's memory every second.

``run_bench(node, cfg, options)`` is the per-node unit ``api.bench`` and fleets reuse; it
returns a ``BenchReport`` or raises ``BenchFailed`` carrying the report so far.
"""

from __future__ import annotations

import dataclasses
import datetime
import secrets
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from ..comfy.client import ComfyClient, ComfyUnavailable
from ..comfy.generate import SavedImage, collect_images
from ..comfy.prompts import (
    black_hint,
    fetch_object_info,
    interrupt,
    rejection_text,
)
from ..comfy.timing import RunTimer, RunTiming
from ..comfy.websocket import ComfyWebSocket, WebSocketError
from ..comfy.workflows import (
    DECODE_CLASSES,
    SAMPLER_CLASSES,
    DEFAULT_PROMPT,
    WorkflowFiles,
    check_workflow,
    default_steps,
    node_ids,
    render_workflow,
    unet_loader_for,
    workflow_classes,
)
from ..core.config import NodeConfig
from ..core.errors import BenchFailed
from .memory_watch import MemoryWatch
from .report import (
    BenchOptions,
    BenchReport,
    ImageResult,
    MemoryPoint,
    RunResult,
    run_memory,
    summarise,
    to_point,
)

MEMORY_INTERVAL = 1.0
FIRST_SAMPLE_TIMEOUT = 15.0
LOGS_HINT = "see `provision logs NODE.yaml` for ComfyUI's side"


@dataclasses.dataclass(frozen=True)
class BenchEvent:
    """Progress of a bench, for live display: ``kind`` says which fields matter."""

    node: str
    kind: Literal["ready", "run-start", "step", "run-end", "memory"]
    run: int = 0  # 0 = warm-up
    runs: int = 0  # measured runs requested
    warmup: bool = False
    seed: Optional[int] = None
    value: int = 0
    total: int = 0
    result: Optional[RunResult] = None
    memory: Optional[MemoryPoint] = None
    message: str = ""


BenchSink = Callable[[BenchEvent], None]


def run_bench(node, cfg: NodeConfig, options: BenchOptions,
              on_event: BenchSink = lambda event: None,
              why_down: Callable[[Any], Optional[str]] = lambda facts: None) -> BenchReport:
    """Benchmark Flux text-to-image on ``node`` (ComfyUI must be running: ``provision up``).

    ``why_down(facts)`` says why ComfyUI does not run, when it does not answer."""
    from ..install.catalog import load_catalog
    from ..install.sizing import SizingOptions, choose_models
    from ..node.facts import gather
    from ..node.layout import node_paths
    from ..node.state import read_state

    started_at = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    origin = time.monotonic()
    facts = gather(node, cfg.workdir)
    paths = node_paths(cfg, facts)
    state = read_state(node, paths.state_file)
    model = options.model or cfg.model
    sizing = SizingOptions.from_config(cfg).model_copy(
        update={"model": model, "quality": installed_quality(state, model, cfg.quality)})
    plan = choose_models(facts, load_catalog(), sizing)
    files = WorkflowFiles.from_plan(plan)
    port = int(state.get("remote_port") or cfg.tunnel.remote_port)
    client = ComfyClient(node, port, timeout=30)
    try:
        stats = client.system_stats()
    except ComfyUnavailable as error:
        why = why_down(facts)
        if why is not None:
            raise BenchFailed(f"ComfyUI is not running on the node: {why}",
                              "then run `provision bench NODE.yaml` again") from None
        raise BenchFailed(f"ComfyUI does not answer on the node's 127.0.0.1:{port} ({error})",
                          "start it with `provision up NODE.yaml` (or `provision restart NODE.yaml`)") from None
    try:
        _refuse_busy(client)
        steps = options.steps or default_steps(model)
        seed = options.seed if options.seed is not None else secrets.randbelow(2**32)
        prompt = options.prompt or DEFAULT_PROMPT
        prefix = f"bench/flux-{model}-{plan.quality}"

        def workflow_for(run_seed: int) -> dict:
            return render_workflow(model, files, seed=run_seed, steps=steps, prompt=prompt,
                                   width=options.width, height=options.height,
                                   filename_prefix=prefix)

        first = workflow_for(seed)
        check_workflow(first, fetch_object_info(client, workflow_classes(first)), model=model)
    except ComfyUnavailable as error:
        raise BenchFailed(f"ComfyUI stopped answering before the bench began ({error})",
                          LOGS_HINT) from None

    system = stats.get("system") or {}
    devices = stats.get("devices") or [{}]
    images_dir = (cfg.outputs_dir() / "bench").absolute() if options.pull_images else None
    report = BenchReport(
        node=cfg.name, host=cfg.host, platform=facts.platform, chip=facts.chip,
        memory_bytes=facts.memory_bytes, device=devices[0].get("type"),
        comfyui_version=system.get("comfyui_version"),
        comfyui_argv=[str(arg) for arg in system.get("argv") or []],
        model=model, quality=plan.quality, files=files.model_dump(),
        unet_loader=unet_loader_for(files.unet), steps=steps, width=options.width,
        height=options.height, prompt=prompt, seed=seed, runs_requested=options.runs,
        started_at=started_at, memory_interval_s=MEMORY_INTERVAL,
        images_dir=str(images_dir) if images_dir else None,
    )
    session = _Session(node, client, cfg.name, port, first, report, options, images_dir, on_event,
                       origin)
    runs, watch = session.run(workflow_for, facts.platform)
    points = [to_point(t, sample) for t, sample in list(watch.samples)]
    report = report.model_copy(update={
        "runs": runs, "summary": summarise(runs), "memory": points,
        "memory_errors": list(watch.errors), "duration_s": round(time.monotonic() - origin, 3),
    })
    if options.compare == "seed":
        from .seed import compare_with_seed

        report = report.model_copy(update={"compare": compare_with_seed(report)})
    failed = next((run for run in runs if not run.ok), None)
    if failed is not None:
        message, hint = session.failure(failed)
        report = report.model_copy(update={"ok": False, "error": message, "hint": hint})
        raise BenchFailed(message, hint, report)
    return report


def record_bench(report: BenchReport, *, plot_path: Optional[str] = None,
                 history: bool = True, history_path: Optional[Path] = None) -> BenchReport:
    """Keep a bench on the laptop: append it to the CSV history, draw the plot if asked;
    return the report naming the files written."""
    from .history import append_history

    update: dict[str, Any] = {}
    if history:
        update["history_file"] = str(append_history([report], history_path))
    if plot_path:
        from .plot import plot_report

        update["plot_file"] = str(plot_report(report, plot_path))
    return report.model_copy(update=update)


def installed_quality(state: dict, model: str, configured: str) -> str:
    """Return the quality ``up`` installed for ``model`` (state.json), else node.yaml's."""
    recorded = state.get("model_plan") or {}
    if recorded.get("model") == model and recorded.get("quality"):
        return str(recorded["quality"])
    return configured


def _refuse_busy(client: ComfyClient) -> None:
    queue = client.get_json("/queue") or {}
    busy = len(queue.get("queue_running") or []) + len(queue.get("queue_pending") or [])
    if busy:
        raise BenchFailed(f"ComfyUI is busy with {busy} prompt(s); a bench now would time the wait",
                          "let them finish (or clear the queue in ComfyUI) and run bench again")


class _Session:
    """One bench's I/O: WebSocket, memory watch, submissions, image checks."""

    def __init__(self, node, client: ComfyClient, name: str, port: int, workflow: dict,
                 report: BenchReport, options: BenchOptions, images_dir: Optional[Path],
                 on_event: BenchSink, origin: float) -> None:
        self.node = node
        self.client = client
        self.name = name
        self.port = port
        self.report = report
        self.options = options
        self.images_dir = images_dir
        self.on_event = on_event
        self.origin = origin
        self.sampler_ids = node_ids(workflow, SAMPLER_CLASSES)
        self.decode_ids = node_ids(workflow, DECODE_CLASSES)
        self.client_id = uuid.uuid4().hex
        self.failures: dict[int, tuple[str, str]] = {}

    def now(self) -> float:
        return time.monotonic() - self.origin

    def run(self, workflow_for: Callable[[int], dict], platform: str) -> tuple[list[RunResult], MemoryWatch]:
        """Run the warm-up and the measured runs; stop at the first failed one."""
        try:
            ws = ComfyWebSocket.connect(self.node, self.port, self.client_id)
        except WebSocketError as error:
            raise BenchFailed(f"cannot follow ComfyUI's progress: {error}", LOGS_HINT) from None
        watch = MemoryWatch(self.node, platform, self.origin, MEMORY_INTERVAL,
                            on_sample=lambda t, sample: self.on_event(BenchEvent(
                                node=self.name, kind="memory", memory=to_point(t, sample))))
        runs: list[RunResult] = []
        try:
            watch.start()
            if watch.wait_after(-1.0, FIRST_SAMPLE_TIMEOUT) is None:
                watch.errors.append("no memory sample from the node before the first run")
            self.on_event(BenchEvent(node=self.name, kind="ready", runs=self.options.runs))
            first = 0 if self.options.warmup else 1
            for number in range(first, self.options.runs + 1):
                seed = self.report.seed + number
                try:
                    result = self._one(ws, watch, workflow_for(seed), number, seed)
                except ComfyUnavailable as error:
                    result = self._failed(number, seed, self.now(), RunTiming(),
                                          f"ComfyUI stopped answering: {error}", LOGS_HINT)
                runs.append(result)
                self.on_event(BenchEvent(node=self.name, kind="run-end", run=number,
                                         runs=self.options.runs, warmup=result.warmup,
                                         seed=seed, result=result))
                if not result.ok:
                    break
        except KeyboardInterrupt:
            self._interrupt()
            raise
        finally:
            watch.stop()
            ws.close()
        return runs, watch

    def _one(self, ws: ComfyWebSocket, watch: MemoryWatch, workflow: dict, number: int,
             seed: int) -> RunResult:
        warmup = number == 0
        started = self.now()
        self.on_event(BenchEvent(node=self.name, kind="run-start", run=number,
                                 runs=self.options.runs, warmup=warmup, seed=seed))
        submitted = time.monotonic()
        status, body = self.client.post_json("/prompt", {"prompt": workflow,
                                                        "client_id": self.client_id})
        if status != 200 or not isinstance(body, dict) or "prompt_id" not in body:
            return self._failed(number, seed, started, RunTiming(),
                                f"ComfyUI refused the prompt ({status}): {rejection_text(body)}",
                                LOGS_HINT)
        prompt_id = str(body["prompt_id"])
        timer = RunTimer(prompt_id, submitted, self.sampler_ids, self.decode_ids)
        deadline = submitted + self.options.run_timeout
        try:
            while not timer.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._interrupt()
                    return self._failed(number, seed, started, timer.timing(),
                                        f"no result within {self.options.run_timeout:.0f} s "
                                        "(the prompt was interrupted)", LOGS_HINT, prompt_id)
                message = ws.receive(timeout=min(remaining, 5.0))
                if message is None:
                    continue
                step = timer.feed(time.monotonic(), message)
                if step is not None:
                    self.on_event(BenchEvent(node=self.name, kind="step", run=number,
                                             runs=self.options.runs, warmup=warmup, seed=seed,
                                             value=step[0], total=step[1]))
        except WebSocketError as error:
            return self._failed(number, seed, started, timer.timing(),
                                f"the WebSocket to ComfyUI failed mid-run ({error}): did it crash?",
                                LOGS_HINT, prompt_id)
        timing = timer.timing()
        if timer.error:
            return self._failed(number, seed, started, timing, timer.error, LOGS_HINT, prompt_id)
        if timer.sampler_cached:
            return self._failed(number, seed, started, timing,
                                f"ComfyUI answered seed {seed} from its cache: nothing was computed",
                                "run bench with another --seed (or none: a random one is chosen)",
                                prompt_id)
        images, problem = self._collect(prompt_id, seed, number)
        ended = self.now()
        memory = self._memory(watch, started, ended)
        if problem is not None:
            return self._failed(number, seed, started, timing, problem[0], problem[1], prompt_id,
                                images, memory)
        return RunResult(index=number, warmup=warmup, seed=seed, prompt_id=prompt_id, ok=True,
                         started_s=round(started, 3), ended_s=round(ended, 3), timing=timing,
                         images=images, memory=memory)

    def _memory(self, watch: MemoryWatch, started: float, ended: float):
        watch.wait_after(ended, timeout=max(5.0, 3 * MEMORY_INTERVAL))
        points = [to_point(t, sample) for t, sample in list(watch.samples)]
        return run_memory(points, started, ended)

    def _collect(self, prompt_id: str, seed: int,
                 number: int) -> tuple[list[ImageResult], Optional[tuple[str, str]]]:
        """Read the prompt's images (comfy.generate.collect_images), keep them, say what is wrong."""
        saved, problem = collect_images(self.client, prompt_id)
        images = [self._keep(image) for image in saved]
        if problem is None:
            return images, None
        outcome, message = problem
        if outcome == "black":
            return images, (f"{message}: the VAE decoded NaN or zeros",
                            black_hint(self.report.comfyui_argv))
        return images, (message, LOGS_HINT)

    def _keep(self, image: SavedImage) -> ImageResult:
        """Write a pulled image into images_dir (when asked) and describe it."""
        local = None
        if self.images_dir is not None and image.data:
            self.images_dir.mkdir(parents=True, exist_ok=True)
            target = self.images_dir / Path(image.filename).name
            target.write_bytes(image.data)
            local = str(target)
        check = image.check
        return ImageResult(filename=image.filename, subfolder=image.subfolder, local_path=local,
                           width=check.width if check else None,
                           height=check.height if check else None,
                           black=check.black if check else None)

    def _failed(self, number: int, seed: int, started: float, timing: RunTiming, message: str,
                hint: str, prompt_id: Optional[str] = None, images: Optional[list] = None,
                memory=None) -> RunResult:
        self.failures[number] = (message, hint)
        return RunResult(index=number, warmup=number == 0, seed=seed, prompt_id=prompt_id,
                         ok=False, error=message, started_s=round(started, 3),
                         ended_s=round(self.now(), 3), timing=timing, images=images or [],
                         memory=memory)

    def failure(self, run: RunResult) -> tuple[str, str]:
        """Return the message and hint of a failed run, naming the run."""
        message, hint = self.failures.get(run.index, (run.error or "failed", LOGS_HINT))
        which = "the warm-up" if run.warmup else f"run {run.index} of {self.options.runs}"
        return f"bench on {self.name}: {which} (seed {run.seed}) failed: {message}", hint

    def _interrupt(self) -> None:
        interrupt(self.client)
