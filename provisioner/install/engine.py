"""The step loop: probe -> decide -> apply -> StepResult.

Probes are read-only, so the engine runs the probes of every remaining step in ONE round
trip, walks the steps in order, and re-probes only after it has changed something (a
change can alter what later steps find). A no-op re-run therefore costs one round trip
for all its checks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable, ContextManager, Literal, Optional

from pydantic import BaseModel, ConfigDict

from ..core.errors import CommandFailed, ProvisionError, StepFailed
from ..node.remote import Node
from .steps import Change, Step, StepContext

Status = Literal["ok", "changed", "would-change", "skipped", "failed"]


class StepResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    status: Status
    duration: float
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class StepEvent:
    """Progress for the CLI: a step started, printed a line, or ended."""

    phase: Literal["start", "output", "progress", "end"]
    step: Step
    index: int
    total: int
    line: str = ""
    result: Optional[StepResult] = None
    data: Optional[dict] = None


EventSink = Callable[[StepEvent], None]

_MARK = "@@provision-probe:"


def probe_script(steps: list[Step]) -> str:
    """Return one sh script that runs each step's probe in a subshell, delimited by markers."""
    lines = []
    for index, step in enumerate(steps):
        snippet = step.probe()
        if snippet is not None and step.when:
            lines.append(f"echo '{_MARK}{index}'")
            lines.append(f"( {snippet} ) </dev/null 2>/dev/null")
    return "\n".join(lines) + "\n"


def split_probe_output(output: str) -> dict[int, str]:
    """Split the output of ``probe_script`` into {step index: its probe's output}."""
    found: dict[int, list[str]] = {}
    current: Optional[int] = None
    for line in output.splitlines():
        if line.startswith(_MARK):
            current = int(line[len(_MARK):])
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return {index: "\n".join(lines) for index, lines in found.items()}


def probe_steps(node: Node, steps: list[Step]) -> dict[int, str]:
    """Run the probes of ``steps`` in one round trip; return {step index: probe output}."""
    return _probe(node, steps)


def _probe(node: Node, steps: list[Step]) -> dict[int, str]:
    script = probe_script(steps)
    if not script.strip():
        return {}
    return split_probe_output(node.run("/bin/sh -s", stdin=script, check=False).stdout)


def run_steps(node: Node, steps: list[Step], ctx: StepContext, *, dry_run: bool = False,
              on_event: EventSink = lambda event: None,
              probed: Optional[dict[int, str]] = None,
              gates: Optional[dict[str, Callable[[], ContextManager[object]]]] = None,
              ) -> list[StepResult]:
    """Bring the node to the state ``steps`` describe; stop at the first failure.

    ``gates`` maps a step kind to a context manager factory entered around that kind's
    ``apply`` only (a fleet bounds its concurrent downloads with one); no-ops never wait.

    ``probed`` are the outputs of ``probe_steps(node, steps)`` when the caller already has
    them (no second round trip). Raises ``StepFailed`` (carrying the results so far in
    ``.results``) naming the step, the command, its exit code and output, and saying that
    re-running resumes from there.
    """
    results: list[StepResult] = []
    total = len(steps)
    first_unprobed = 0 if probed is None else total
    outputs: dict[int, str] = dict(probed or {})
    for index, step in enumerate(steps):
        started = time.monotonic()
        on_event(StepEvent("start", step, index, total))
        if not step.when:
            result = StepResult(name=step.name, kind=step.kind, status="skipped",
                                duration=0.0, detail="not wanted on this run")
            results.append(result)
            on_event(StepEvent("end", step, index, total, result=result))
            continue
        if index >= first_unprobed:
            remaining = steps[index:]
            outputs = {index + offset: text for offset, text in _probe(node, remaining).items()}
            first_unprobed = total
        try:
            change = step.decide_live(ctx, outputs.get(index))
            if change is None:
                status, detail = "ok", "already as wanted"
            elif dry_run:
                status, detail = "would-change", change.reason
            else:
                with (gates or {}).get(step.kind, contextlib.nullcontext)():
                    detail = _apply(step, ctx, change, index, total, on_event)
                status = "changed"
                first_unprobed = index + 1  # what we changed may change later probes
        except ProvisionError as error:
            failed = StepResult(name=step.name, kind=step.kind, status="failed",
                                duration=time.monotonic() - started, detail=str(error))
            results.append(failed)
            on_event(StepEvent("end", step, index, total, result=failed))
            raise _step_failed(step, error, results) from None
        result = StepResult(name=step.name, kind=step.kind, status=status,
                            duration=time.monotonic() - started, detail=detail)
        results.append(result)
        on_event(StepEvent("end", step, index, total, result=result))
    return results


def _apply(step: Step, ctx: StepContext, change: Change, index: int, total: int,
           on_event: EventSink) -> str:
    def forward(line: str) -> None:
        on_event(StepEvent("output", step, index, total, line=line))

    def progress(data: dict) -> None:
        on_event(StepEvent("progress", step, index, total, data=data))

    step_ctx = dataclasses.replace(ctx, on_output=forward, on_progress=progress)
    detail = step.apply(step_ctx, change)
    return f"{change.reason}: {detail}"


def _step_failed(step: Step, error: ProvisionError, results: list[StepResult]) -> StepFailed:
    if isinstance(error, CommandFailed):
        result = error.result
        message = (f"step {step.name!r} failed: `{result.display_command}` exited "
                   f"{result.exit_code}: {result.tail(5) or '(no output)'}")
    elif isinstance(error, StepFailed):
        message = error.message if error.message.startswith("step ") else \
            f"step {step.name!r} failed: {error.message}"
    else:
        message = f"step {step.name!r} failed: {error}"
    hint = error.hint or "fix the cause, then re-run `provision up`: it resumes from this step"
    if "re-run" not in hint:
        hint += "; then re-run `provision up`: it resumes from this step"
    failed = StepFailed(message, hint)
    failed.results = results  # type: ignore[attr-defined]
    failed.exit_status = error.exit_status  # a lost connection stays "cannot connect"
    return failed
