"""The step loop: probe -> decide -> apply -> StepResult.

Probes are read-only, so the engine runs the probes of every remaining step in ONE round
trip, walks the steps in order, and re-probes only after it has changed something (a
change can alter what later steps find). A no-op re-run therefore costs one round trip
for all its checks.

A step marked ``background`` is started instead of applied (``Step.start`` returns a ``Job``):
a thread of the engine follows it (its progress events keep arriving, with its own index)
while the next steps run, and a ``join`` step later waits for it through ``ctx.jobs``. When a
step fails, or the run ends any other way, the jobs still running are stopped before the error
goes up, so nothing keeps writing on the node after ``up`` has returned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from typing import Callable, ContextManager, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import CommandFailed, Interrupted, ProvisionError, StepFailed, Terminated
from ..node.remote import Node
from .steps import Change, Step, StepContext
from .steps.base import Job

Status = Literal["ok", "changed", "would-change", "skipped", "failed", "stopped"]
STOP_WAIT = 10.0  # s a stopped background step may take to end before the run gives up on it


class StepResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    status: Status
    duration: float
    detail: str = ""
    started: float = Field(0.0, description="when the step started (Unix time)")
    background: bool = Field(False, description="it ran beside the next steps, until its join")


@dataclasses.dataclass(frozen=True)
class StepEvent:
    """Progress for the CLI: a step started, printed a line, or ended."""

    phase: Literal["start", "background", "output", "progress", "end"]  # background: started, left running
    step: Step
    index: int
    total: int
    line: str = ""
    result: Optional[StepResult] = None
    data: Optional[dict] = None


EventSink = Callable[[StepEvent], None]

_MARK = "@@provision-probe:"
_END = "@@provision-probe-end"  # closes a probe's output: one without it was cut short

# The probes run at once, each into a file of a private temporary folder, then are printed
# in order: a round of checks costs the slowest probe, not their sum (they fork a lot: git,
# shasum, launchctl). Without a temporary folder they run one after the other. A probe's
# output ends with a newline and the end mark, so the engine tells a complete output from
# one cut short (a full disk) and probes that step again.
_IN_PARALLEL = """d=$(mktemp -d "${TMPDIR:-/tmp}/provision-probe.XXXXXX" 2>/dev/null) || d=
if [ -n "$d" ]; then
  for i in $probes; do { "p$i" </dev/null 2>/dev/null; printf '\\n%s\\n' '""" + _END + """'; } >"$d/$i" 2>/dev/null & done
  wait
fi
"""
_IN_ORDER = """for i in $probes; do
  echo '""" + _MARK + """'"$i"
  if [ -n "$d" ]; then cat "$d/$i" 2>/dev/null
  else "p$i" </dev/null 2>/dev/null; printf '\\n%s\\n' '""" + _END + """'; fi
done
[ -z "$d" ] || rm -rf "$d"
"""


def probe_script(steps: list[Step], parallel: bool = True) -> str:
    """Return one sh script that runs each step's probe in a subshell, delimited by markers
    (all at once when ``parallel``, else one after the other, writing nothing to disk)."""
    functions, indices = [], []
    for index, step in enumerate(steps):
        snippet = step.probe()
        if snippet is not None and step.when:
            functions.append(f"p{index}() (\n{snippet}\n)")
            indices.append(str(index))
    if not indices:
        return "\n"
    return ("\n".join(functions) + f"\nprobes='{' '.join(indices)}'\n"
            + (_IN_PARALLEL if parallel else "d=\n") + _IN_ORDER)


def split_probe_output(output: str) -> dict[int, str]:
    """Split the output of ``probe_script`` into {step index: its probe's output}.

    A probe whose output lacks the end mark (it was cut short) is left out."""
    found: dict[int, list[str]] = {}
    current: Optional[int] = None
    for line in output.splitlines():
        if line.startswith(_MARK):
            current = int(line[len(_MARK):])
            found[current] = []
        elif current is not None:
            found[current].append(line)
    complete = {}
    for index, lines in found.items():
        if lines and lines[-1] == _END:
            # The newline printed before the end mark is ours: drop it with the mark.
            text = "\n".join(lines[:-1])
            complete[index] = "\n".join(text.splitlines())
    return complete


def probe_steps(node: Node, steps: list[Step]) -> dict[int, str]:
    """Run the probes of ``steps`` in one round trip; return {step index: probe output}."""
    return _probe(node, steps)


def _probe(node: Node, steps: list[Step]) -> dict[int, str]:
    script = probe_script(steps)
    if not script.strip():
        return {}
    outputs = split_probe_output(node.run("/bin/sh -s", stdin=script, check=False).stdout)
    missing = [index for index, step in enumerate(steps)
               if step.when and step.probe() is not None and index not in outputs]
    if missing:  # cut short (a full temp folder): probe those again, once, writing nothing
        again = split_probe_output(node.run(
            "/bin/sh -s", stdin=probe_script([steps[index] for index in missing], parallel=False),
            check=False).stdout)
        outputs.update({missing[position]: text for position, text in again.items()})
    return outputs


def run_steps(node: Node, steps: list[Step], ctx: StepContext, *, dry_run: bool = False,
              on_event: EventSink = lambda event: None,
              probed: Optional[dict[int, str]] = None,
              gates: Optional[dict[str, Callable[[], ContextManager[object]]]] = None,
              ) -> list[StepResult]:
    """Bring the node to the state ``steps`` describe; stop at the first failure.

    ``gates`` maps a step kind to a context manager factory entered around that kind's
    ``apply`` (or around a background step's whole run) only; no-ops never wait.

    ``probed`` are the outputs of ``probe_steps(node, steps)`` when the caller already has
    them (no second round trip). Raises ``StepFailed`` (carrying the results so far in
    ``.results``) naming the step, the command, its exit code and output, and saying that
    re-running resumes from there. A background step no ``join`` waited for is waited for
    at the end.
    """
    done: dict[int, StepResult] = {}
    jobs: dict[str, BackgroundJob] = {}
    ctx = dataclasses.replace(ctx, jobs=jobs)
    total = len(steps)
    first_unprobed = 0 if probed is None else total
    outputs: dict[int, str] = dict(probed or {})

    def results() -> list[StepResult]:
        found = dict(done)
        found.update({job.index: job.result for job in jobs.values() if job.result is not None})
        return [found[index] for index in sorted(found)]

    def finish(step: Step, index: int, result: StepResult) -> None:
        done[index] = result
        on_event(StepEvent("end", step, index, total, result=result))

    current: Optional[tuple[Step, int, float, float]] = None  # the step running, for an interrupt
    try:
        for index, step in enumerate(steps):
            started, started_at = time.monotonic(), time.time()
            current = (step, index, started, started_at)
            on_event(StepEvent("start", step, index, total))
            if not step.when:
                finish(step, index, StepResult(name=step.name, kind=step.kind, status="skipped",
                                               duration=0.0, detail="not wanted on this run",
                                               started=started_at, background=step.background))
                continue
            if index >= first_unprobed:
                remaining = steps[index:]
                outputs = {index + offset: text for offset, text in _probe(node, remaining).items()}
                first_unprobed = total
            gate = (gates or {}).get(step.kind, contextlib.nullcontext)
            try:
                change = step.decide_live(ctx, outputs.get(index))
                if change is None:
                    status, detail = "ok", "already as wanted"
                elif dry_run:
                    status, detail = "would-change", change.reason
                    if step.background:
                        jobs[step.name] = BackgroundJob(step, index)  # a join would wait for it
                        detail += " (in the background)"
                elif step.background:
                    jobs[step.name] = BackgroundJob.start(step, index, total, change, ctx, gate,
                                                          on_event)
                    on_event(StepEvent("background", step, index, total, line=change.reason))
                    continue  # its result comes when it ends; a join waits for it
                else:
                    with gate():
                        detail = _apply(step, ctx, change, index, total, on_event)
                    status = "changed"
                    if step.reprobe:  # what we changed may change what later probes find
                        first_unprobed = index + 1
            except ProvisionError as error:
                finish(step, index, StepResult(name=step.name, kind=step.kind, status="failed",
                                               duration=time.monotonic() - started,
                                               detail=str(error), started=started_at))
                _stop(jobs, f"step {step.name!r} failed")
                raise _step_failed(step, error, results()) from None
            finish(step, index, StepResult(name=step.name, kind=step.kind, status=status,
                                           duration=time.monotonic() - started, detail=detail,
                                           started=started_at, background=step.background))
        current = None
        for job in jobs.values():  # a background step that no join waited for
            try:
                job.wait()
            except ProvisionError as error:
                raise _step_failed(job.step, error, results()) from None
    except KeyboardInterrupt as interrupt:
        # Ctrl-C or SIGTERM: the step under way ends "stopped" (what it began is not recorded
        # as done), the background ones are stopped below, and the caller learns where to resume.
        if current is not None and current[1] not in done:
            step, index, started, started_at = current
            finish(step, index, StepResult(name=step.name, kind=step.kind, status="stopped",
                                           duration=time.monotonic() - started,
                                           detail="interrupted", started=started_at))
        _stop(jobs, "interrupted")
        raise _interrupted(current[0] if current else None, results(),
                           isinstance(interrupt, Terminated)) from None
    finally:
        _stop(jobs, "the run ended")  # no-op unless an error or an interrupt cut the run short
    return results()


class BackgroundJob:
    """A background step, followed on a thread of its own from ``start`` to its end.

    The thread enters the step's gate, calls ``step.start`` and waits on the ``Job`` it
    returns; the step's progress events go on arriving (with the step's own index) while the
    next steps run, and its "end" event comes when it ends. ``wait`` (what a ``join`` calls)
    returns its detail or raises its error; ``stop`` ends it early.
    """

    def __init__(self, step: Step, index: int) -> None:
        """Make a job that does not run: what a dry run records (a join would wait for it)."""
        self.step, self.index = step, index
        self.result: Optional[StepResult] = None
        self.error: Optional[ProvisionError] = None
        self._started, self._started_at = time.monotonic(), time.time()
        self._handle: Optional[Job] = None
        self._stopping: Optional[str] = None
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def start(cls, step: Step, index: int, total: int, change: Change, ctx: StepContext,
              gate: Callable[[], ContextManager[object]], on_event: EventSink) -> "BackgroundJob":
        """Start ``step`` on a thread of its own (it enters ``gate`` there) and return at once."""
        job = cls(step, index)
        job._thread = threading.Thread(target=job._run, args=(change, ctx, gate, on_event, total),
                                       name=f"background {step.name}", daemon=True)
        job._thread.start()
        return job

    def _run(self, change: Change, ctx: StepContext, gate: Callable[[], ContextManager[object]],
             on_event: EventSink, total: int) -> None:
        step, index = self.step, self.index
        step_ctx = _step_context(step, ctx, index, total, on_event)
        status, detail = "changed", ""
        try:
            with gate():
                with self._lock:
                    if self._stopping:
                        raise StepFailed(f"step {step.name}: {self._stopping} before it started")
                handle = step.start(step_ctx, change)
                with self._lock:
                    self._handle, stopping = handle, self._stopping
                if stopping:
                    handle.stop()
                detail = f"{change.reason}: {handle.wait()}"
        except ProvisionError as error:
            self.error, status, detail = error, "failed", str(error)
        except Exception as error:  # a bug on this thread must still end the step, loudly
            self.error = ProvisionError(f"step {step.name}: unexpected {type(error).__name__}: {error}",
                                        "this is probably a bug in provision; please report it")
            status, detail = "failed", str(self.error)
        if self._stopping and status == "failed":
            status, detail = "stopped", f"stopped ({self._stopping}): {detail}"
        self.result = StepResult(name=step.name, kind=step.kind, status=status,
                                 duration=time.monotonic() - self._started, detail=detail,
                                 started=self._started_at, background=True)
        on_event(StepEvent("end", step, index, total, result=self.result))

    def wait(self) -> str:
        """Wait for the step to end; return its detail, or raise its error."""
        if self._thread is None:
            return ""
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.result.detail if self.result else ""

    def stop(self, why: str) -> None:
        """Stop the step if it still runs, and give it ``STOP_WAIT`` s to end."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._stopping:
                return
            self._stopping, handle = why, self._handle
        if handle is not None:
            handle.stop()
        self._thread.join(STOP_WAIT)
        if self.result is None:  # it did not end in time; the connection's close will end it
            self.result = StepResult(name=self.step.name, kind=self.step.kind, status="stopped",
                                     duration=time.monotonic() - self._started,
                                     detail=f"stopped ({why}); it had not ended {STOP_WAIT:g}s later",
                                     started=self._started_at, background=True)


def _stop(jobs: dict[str, BackgroundJob], why: str) -> None:
    for job in jobs.values():
        job.stop(why)


def _step_context(step: Step, ctx: StepContext, index: int, total: int,
                  on_event: EventSink) -> StepContext:
    """Return ``ctx`` with the step's output lines and progress sent on as its events."""
    return dataclasses.replace(
        ctx, on_output=lambda line: on_event(StepEvent("output", step, index, total, line=line)),
        on_progress=lambda data: on_event(StepEvent("progress", step, index, total, data=data)))


def _apply(step: Step, ctx: StepContext, change: Change, index: int, total: int,
           on_event: EventSink) -> str:
    detail = step.apply(_step_context(step, ctx, index, total, on_event), change)
    return f"{change.reason}: {detail}"


def _interrupted(step: Optional[Step], results: list[StepResult], terminated: bool) -> Interrupted:
    done = [r.name for r in results if r.status in ("ok", "changed")]
    signal = "SIGTERM" if terminated else "Ctrl-C"
    where = f"during step {step.name!r}" if step is not None else "after the last step"
    error = Interrupted(
        f"interrupted ({signal}) {where}; {len(done)} step(s) done"
        + (f" ({', '.join(done)})" if done else "")
        + "; nothing left half-made counts as done, and the node's work for this run was stopped",
        "re-run `provision up NODE.yaml`: finished steps are checked, not redone, and downloads "
        "resume where they stopped" + (f"; it goes on from {step.name}" if step is not None else ""),
        terminated=terminated)
    error.results = results  # type: ignore[attr-defined]
    return error


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
