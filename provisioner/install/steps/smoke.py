"""``smoke``: make one small image on the node with the planned models, before ``up`` ends.

ComfyUI answering is not proof that the node can make an image: the torch / macOS /
ComfyUI-GGUF set can abort in the first sampling step, an fp16 VAE gives black images, a bad
model file fails at load. This step runs the bench's workflow at a few steps and a small
size, follows it on the WebSocket, pulls the PNG to the laptop and checks it is not black.
The models stay loaded, so the user's first real image does not pay the load again.

What it was made with (models, torch, ComfyUI, ComfyUI-GGUF, ComfyUI's argv, the workflow)
is recorded on the node with the result: a re-run with nothing changed makes no image.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, Optional

from ...comfy.client import ComfyClient, ComfyUnavailable
from ...comfy.workflows import DEFAULT_PROMPT, WorkflowFiles, render_workflow
from ...core.errors import StepFailed
from ...node.shell import q
from .base import Change, Step, StepContext

if TYPE_CHECKING:  # imported when the step runs: every command loads the playbook's steps
    from ...comfy.generate import Generation

RESTART_WAIT = 60.0  # seconds to wait for a supervisor to bring a dead ComfyUI back


class SmokeStep(Step):
    kind: Literal["smoke"] = "smoke"
    port: int
    model: Literal["dev", "schnell"]
    models: list[dict[str, Any]]  # the plan's files: role, dest, sha256
    steps: int = 4
    width: int = 512
    height: int = 512
    seed: int = 42
    prompt: str = DEFAULT_PROMPT
    timeout: float = 600.0
    log: str  # ComfyUI's log on the node
    argv: list[str]  # ComfyUI's command line, for the black-image diagnosis
    record: str  # the result, on the node
    pull_to: str  # the laptop folder the image is copied to
    versions: dict[str, Optional[str]]  # torch, comfyui, gguf_node, platform, macos

    def describe(self) -> str:
        return self.description or (f"a first image ({self.model}, {self.steps} steps, "
                                    f"{self.width}x{self.height}), checked not black")

    def made_with(self) -> dict[str, Any]:
        """What the image depends on; a change of any of it makes a new one."""
        return {
            "models": {item["role"]: [PurePosixPath(item["dest"]).name, item.get("sha256")]
                       for item in self.models},
            "versions": {name: self.versions.get(name) for name in ("torch", "comfyui", "gguf_node")},
            "argv": self.argv,
            "workflow": {"model": self.model, "steps": self.steps, "width": self.width,
                         "height": self.height, "seed": self.seed, "prompt": self.prompt},
        }

    def probe(self) -> Optional[str]:
        return f"cat {q(self.record)} 2>/dev/null"

    def decide(self, output: Optional[str]) -> Optional[Change]:
        record = parse_record(output)
        if not record:
            return Change("no first image made yet")
        if record.get("made_with") != self.made_with():
            changed = changed_parts(record.get("made_with") or {}, self.made_with())
            return Change(f"the last first image was made with other {changed}")
        if not record.get("ok"):
            return Change(f"the last first image failed ({record.get('error', '?')})")
        return None

    def decide_live(self, ctx: StepContext, output: Optional[str]) -> Optional[Change]:
        change = self.decide(output)
        if change is None:
            ctx.records[self.name] = dict(parse_record(output), made_this_run=False)
        return change

    def apply(self, ctx: StepContext, change: Change) -> str:
        from ...comfy.diagnosis import Versions, diagnose
        from ...comfy.generate import generate

        files = {item["role"]: PurePosixPath(item["dest"]).name for item in self.models}
        workflow_files = WorkflowFiles(unet=files["unet"], t5=files["t5"], clip_l=files["clip_l"],
                                       vae=files["vae"])
        offset = _log_size(ctx, self.log)
        started = time.monotonic()

        def attempt(seed: int) -> "Generation":
            workflow = render_workflow(self.model, workflow_files, seed=seed, steps=self.steps,
                                       prompt=self.prompt, width=self.width, height=self.height,
                                       filename_prefix=f"provision-smoke/flux-{self.model}")
            return generate(ctx.node, self.port, workflow, timeout=self.timeout,
                            on_step=lambda value, total: ctx.on_output(
                                f"first image: step {value}/{total}"))

        generation = attempt(self.seed)
        if generation.outcome == "cached":  # the same prompt ran before: make it compute
            generation = attempt(self.seed + 1)
        seconds = time.monotonic() - started
        local = self._pull(generation)
        record = self._record(generation, seconds, local)
        if generation.ok:
            self._keep(ctx, record)
            return first_image_line(record)
        log = ctx.node.run(f"tail -c +{offset + 1} {q(self.log)} 2>/dev/null | tail -n 300",
                           check=False).stdout
        came_back = _answers_again(ctx, self.port) if generation.outcome == "died" else None
        versions = Versions(**{name: str(self.versions.get(name) or "?")
                               for name in ("torch", "comfyui", "gguf_node", "platform")},
                            macos=self.versions.get("macos") or None)
        diagnosis = diagnose(generation, log=log, argv=self.argv, versions=versions,
                             timeout=self.timeout, came_back=came_back)
        record.update(error=diagnosis.message, hint=diagnosis.hint)
        self._keep(ctx, record)
        raise StepFailed(f"step {self.name}: {diagnosis.message}", diagnosis.hint)

    def _pull(self, generation: "Generation") -> Optional[str]:
        """Copy the image to the laptop (a black one too: it is the evidence)."""
        image = next((image for image in generation.images if image.data), None)
        if image is None:
            return None
        folder = Path(self.pull_to).expanduser().absolute()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / PurePosixPath(image.name).name
        target.write_bytes(image.data)
        return str(target)

    def _record(self, generation: "Generation", seconds: float, local: Optional[str]) -> dict:
        timing = generation.timing
        return {
            "ok": generation.ok, "outcome": generation.outcome,
            "at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "seconds": round(seconds, 2),
            "load_s": None if timing.first_step_s is None else round(timing.first_step_s, 2),
            "sampling_s": None if timing.sampling_s is None else round(timing.sampling_s, 2),
            "steps_done": timing.steps_done,
            "image": generation.images[0].name if generation.images else None,
            "local_path": local, "error": None if generation.ok else generation.message,
            "made_with": self.made_with(),
        }

    def _keep(self, ctx: StepContext, record: dict) -> None:
        ctx.node.put((json.dumps(record, indent=2, sort_keys=True) + "\n").encode(), self.record,
                     0o600)
        ctx.records[self.name] = dict(record, made_this_run=True)


def parse_record(output: Optional[str]) -> dict:
    try:
        record = json.loads(output or "")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def changed_parts(old: dict, new: dict) -> str:
    """Name what differs between two ``made_with`` records, e.g. "models, versions"."""
    parts = [key for key in new if old.get(key) != new.get(key)]
    return ", ".join(parts) or "settings"


def first_image_line(record: dict) -> str:
    """``first image in N s (model load X s, sampling Y s): PATH``."""
    def seconds(value) -> str:
        return "?" if value is None else f"{value:.1f} s"

    where = record.get("local_path") or record.get("image") or "?"
    return (f"first image in {seconds(record.get('seconds'))} (model load "
            f"{seconds(record.get('load_s'))}, sampling {seconds(record.get('sampling_s'))}): {where}")


def _log_size(ctx: StepContext, log: str) -> int:
    output = ctx.node.run(f"wc -c < {q(log)} 2>/dev/null", check=False).stdout.strip()
    return int(output) if output.isdigit() else 0


def _answers_again(ctx: StepContext, port: int) -> bool:
    """Wait for a dead ComfyUI's supervisor (launchd's KeepAlive) to bring it back."""
    client = ComfyClient(ctx.node, port, timeout=5)
    deadline = time.monotonic() + RESTART_WAIT
    while time.monotonic() < deadline:
        try:
            client.system_stats()
            return True
        except ComfyUnavailable:
            time.sleep(1.0)
    return False
