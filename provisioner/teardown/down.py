"""``provision down``: hand the node back without losing work or leaving secrets behind.

In order, each step safe to repeat, so a run cut anywhere is finished by the next one:

1. read the node's state in one round trip; a node ``up`` never touched has nothing to do;
2. take the node lock;
3. let ComfyUI's queue drain (or, forced, drop what waits and interrupt what runs);
4. stop the service and prove its port is free;
5. harvest the outputs (``harvest.py``), each file verified by sha256 on both sides;
6. delete, in one round trip (templates/node_clean.py): the token file, the outputs now
   safe on the laptop (unless kept), then the wipe level's models or the whole work folder
   and LaunchAgent plist; a failed harvest refuses the wipe unless outputs may be discarded;
7. search what remains for the token by its sha256 (it is never sent to the node).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict

from ..comfy.client import ComfyClient, ComfyUnavailable, QueueState, interrupt_all, read_queue
from ..core.errors import ConfigError, ProvisionError
from ..core.units import format_bytes
from ..node.programs import interpreters, run_program
from ..node.shell import q, sections
from . import harvest as harvesting
from .cleanup import (
    SCAN_MAX_BYTES,
    Removal,
    Wipe,
    plan_removals,
    plist_problem,
    token_probe,
    workdir_problem,
)
from .harvest import HarvestEvent, HarvestFailure, PulledFile, Refused

INTERRUPT_WAIT = 30.0  # after --force, how long the queue may take to empty
PORT_WAIT = 15.0  # how long the port may take to close after the service stopped


class DownOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    wipe: Wipe = "none"
    keep_outputs_remote: bool = False
    discard_outputs: bool = False
    dry_run: bool = False
    force: bool = False  # interrupt the queue at once
    drain_timeout: float = 300.0
    interrupt_after_timeout: bool = False  # sessions: the rental ends, interrupt what is left
    lock_wait: int = 10
    break_lock: bool = False


class QueueReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    answered: bool = False  # ComfyUI answered on its port
    running: list[str] = []
    pending: list[str] = []
    waited_seconds: float = 0.0
    interrupted: list[str] = []
    dropped: list[str] = []


class ServiceReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    was_loaded: bool
    was_running: bool
    stopped: bool
    port: int
    port_free: Optional[bool] = None


class PlannedFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    file: str
    bytes: int
    reason: str


class HarvestReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    dest: str
    files_on_node: int
    to_pull: list[PlannedFile] = []  # dry run: what would be copied
    pulled: list[PulledFile] = []
    bytes_pulled: int = 0
    skipped: int = 0  # already on the laptop, identical
    failed: list[HarvestFailure] = []
    refused: list[Refused] = []
    manifest: Optional[str] = None
    seconds: float = 0.0
    ok: bool = True


class SecretsReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    removed: list[str] = []  # credential files removed
    check: Literal["clean", "found", "not-checked"] = "not-checked"
    found_in: list[str] = []
    files_searched: int = 0
    bytes_searched: int = 0
    not_searched: list[str] = []
    note: Optional[str] = None


class DownReport(BaseModel):
    """What ``provision down`` did (or, dry, would do); ``--json`` is this model's JSON."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    node: str
    host: str
    dry_run: bool
    wipe: Wipe
    nothing_to_do: bool = False
    notes: list[str] = []
    queue: Optional[QueueReport] = None
    service: Optional[ServiceReport] = None
    harvest: Optional[HarvestReport] = None
    removals: list[Removal] = []
    secrets: Optional[SecretsReport] = None
    ok: bool = True
    problems: list[str] = []
    duration: float = 0.0
    cost: dict[str, int] = {}


class TeardownEvent(BaseModel):
    """Progress for the CLI: a note to show, or harvest progress."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["note", "harvest"]
    message: str = ""
    harvest: Optional[HarvestEvent] = None


TeardownSink = Callable[[TeardownEvent], None]


class TeardownIncomplete(ProvisionError):
    """``down`` could not finish everything; ``.report`` says what it did. Re-run resumes."""

    def __init__(self, message: str, hint: str, report: Optional[DownReport] = None) -> None:
        super().__init__(message, hint)
        self.report = report


# ---------------------------------------------------------------------------- the node's state


class NodeProbe(BaseModel):
    model_config = ConfigDict(frozen=True)

    state: dict = {}
    workdir_exists: bool = False
    workdir_ours: bool = False  # holds provision's state/ folder
    workdir_has_files: bool = False
    plist_exists: bool = False
    token_exists: bool = False
    service: dict = {}


def probe_script(paths, service, plist: Optional[str]) -> str:
    """Return the read-only sh script ``parse_probe`` reads (one round trip)."""
    from ..install.steps.service import status_script

    work = q(paths.workdir)
    lines = [
        f"echo @@state; cat {q(paths.state_file)} 2>/dev/null; echo",
        f"echo @@workdir; if [ -d {work} ]; then echo exists; "
        f"[ -d {q(paths.state_dir)} ] && echo ours; "
        f"[ -n \"$(find {work} -type f 2>/dev/null | head -n 1)\" ] && echo files; fi",
        "echo @@plist" + (f"; [ -f {q(plist)} ] && echo exists" if plist else ""),
        f"echo @@token; [ -e {q(paths.token_file)} ] && echo exists",
        f"echo @@service; {status_script(service)}",
        "true",
    ]
    return "\n".join(lines) + "\n"


def parse_probe(text: str) -> NodeProbe:
    """Parse ``probe_script``'s output."""
    from ..install.steps.service import parse_status

    found = sections(text)
    try:
        state = json.loads(found.get("state", "") or "{}")
    except ValueError:
        state = {}
    workdir = found.get("workdir", "").split()
    return NodeProbe(
        state=state if isinstance(state, dict) else {},
        workdir_exists="exists" in workdir, workdir_ours="ours" in workdir,
        workdir_has_files="files" in workdir, plist_exists=found.get("plist") == "exists",
        token_exists=found.get("token") == "exists", service=parse_status(found.get("service", "")),
    )


def service_for(facts, paths):
    """Return the service ``up`` runs on this node, for stopping it (no playbook needed)."""
    from ..install.playbook import SERVICE_LABEL
    from ..install.steps.service import ServiceStep

    return ServiceStep(name="launch", label=SERVICE_LABEL, platform=facts.platform, uid=facts.uid,
                       home=facts.home, argv=[], workdir=paths.comfyui, log=paths.comfyui_log,
                       run_dir=paths.run_dir)


# ---------------------------------------------------------------------------- down


def down(node, *, cfg, config_path: str, facts, paths, service, token: Optional[str],
         options: DownOptions, on_event: TeardownSink = lambda event: None) -> DownReport:
    """Tear the node down as ``options`` say; raise ``TeardownIncomplete`` if anything is left
    undone (its ``.report`` is the DownReport so far)."""
    from ..node.lock import node_lock

    started = time.monotonic()
    plist = service.unit_path if facts.platform == "macos" else None

    def note(message: str) -> None:
        on_event(TeardownEvent(kind="note", message=message))

    probe = parse_probe(node.run("/bin/sh -s", stdin=probe_script(paths, service, plist)).stdout)
    base = {"node": cfg.name, "host": cfg.host, "dry_run": options.dry_run, "wipe": options.wipe}

    def finish(**fields) -> DownReport:
        problems = fields.get("problems", [])
        return DownReport(**base, ok=not problems, duration=time.monotonic() - started,
                          cost={"connections": node.stats.connections,
                                "commands": node.stats.commands,
                                "transfers": node.stats.transfers}, **fields)

    leftovers = probe.workdir_exists and not probe.workdir_has_files and options.wipe == "all"
    if not (probe.workdir_ours or probe.plist_exists or probe.token_exists or leftovers):
        if not probe.workdir_exists:
            why = (f"{paths.workdir} does not exist: provision up never ran on this node, or "
                   "it was torn down already")
        elif probe.workdir_has_files:
            why = (f"{paths.workdir} exists but provision did not make it (no state/ folder in "
                   "it); it is left alone")
        else:
            why = f"{paths.workdir} holds nothing but empty folders"
        return finish(nothing_to_do=True, notes=[f"nothing to do: {why}"])

    if options.wipe == "all":
        _check_wipe_paths(config_path, paths, facts, service, plist)

    port = int(probe.state.get("remote_port") or cfg.tunnel.remote_port)
    locked = contextlib.nullcontext() if options.dry_run else \
        node_lock(node, paths.lock_dir, wait_seconds=options.lock_wait, force=options.break_lock)
    notes: list[str] = []
    with locked:
        # The secret goes first: whatever fails later, the token file is not left behind.
        tokens = [Removal(path=paths.token_file, what="token", done=not options.dry_run)
                  ] if probe.token_exists else []
        if tokens and not options.dry_run:
            node.run(f"rm -f {q(paths.token_file)}")
            note("removed the Hugging Face token file")
        queue = settle_queue(ComfyClient(node, port, timeout=10), options, note,
                             partial=lambda **f: finish(**f))
        service_report = stop(node, service, port, probe, options.dry_run, note)
        candidates = interpreters(paths.venv_python,
                                  [(probe.state.get("python") or {}).get("path", "")] +
                                  [p.path for p in facts.usable_pythons])
        roots = harvesting.harvest_roots(paths)
        inventory, harvest_report, verified = list_and_harvest(
            node, inventory_spec(paths, roots, probe, options), roots, candidates,
            cfg.outputs_dir(), cfg.name, options, on_event)
        problems = harvest_problems(harvest_report)
        wipe_allowed = not problems or options.discard_outputs
        if problems and options.discard_outputs:
            # Asked for: what could not be copied is given up, and that is not a failure.
            notes.append(f"--discard-outputs: going on although {harvest_summary(harvest_report)}")
            problems = []
        elif problems and options.wipe != "none":
            problems.append(f"--wipe {options.wipe} refused because the harvest failed: "
                            "nothing was wiped")
        removals = plan_removals(
            wipe=options.wipe, workdir=paths.workdir,
            workdir_bytes=inventory["sizes"].get(paths.workdir, (0, 0))[0],
            outputs=verified, keep_outputs_remote=options.keep_outputs_remote,
            models=inventory["models"], plist=plist if probe.plist_exists else None,
            wipe_allowed=wipe_allowed)
        if options.dry_run:
            notes.append("dry run: nothing was stopped, copied or deleted")
            return finish(notes=notes, queue=queue, service=service_report, harvest=harvest_report,
                          removals=tokens + removals, secrets=SecretsReport(
                              removed=[r.path for r in tokens],
                              note="dry run: the node was not searched for the token"))
        removals, secrets = clean(node, paths, removals, roots, plist, token, cfg.hf.token_env,
                                  candidates, note)
        removals = tokens + removals
        secrets = secrets.model_copy(update={"removed": [r.path for r in tokens]})
    problems += [f"could not remove {r.path}: {r.error}" for r in removals if r.error]
    if service_report.port_free is False:
        problems.append(f"port {port} on the node is still taken after ComfyUI was stopped")
    if secrets.check == "found":
        problems.append("the Hugging Face token is still on the node in: " + ", ".join(secrets.found_in))
    report = finish(notes=notes, queue=queue, service=service_report, harvest=harvest_report,
                    removals=removals, secrets=secrets, problems=problems)
    if problems:
        raise TeardownIncomplete(f"down did not finish: {problems[0]}"
                                 + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                                 _hint_for(report), report)
    return report


def _hint_for(report: DownReport) -> str:
    harvest = report.harvest
    if harvest is not None and not harvest.ok:
        return (f"fix what stops the copy to {harvest.dest} and re-run `provision down` (it "
                "resumes); or add --discard-outputs to wipe without them")
    if report.secrets is not None and report.secrets.check == "found":
        return "delete those files on the node, or run `provision down --wipe all`"
    return "re-run `provision down`: it finishes what is left"


def _check_wipe_paths(config_path: str, paths, facts, service, plist: Optional[str]) -> None:
    problem = workdir_problem(paths.workdir, facts.home)
    if problem:
        raise ConfigError(f"{config_path}: workdir: --wipe all refuses to delete it: {problem}",
                          "set workdir: to a folder of its own, e.g. ~/provision")
    if plist and plist_problem(plist, facts.home, service.label):
        raise ConfigError(f"{config_path}: --wipe all refuses to delete {plist}: "
                          f"{plist_problem(plist, facts.home, service.label)}",
                          "this is a bug in provision; please report it")


# ---------------------------------------------------------------------------- 3. the queue


def settle_queue(client: ComfyClient, options: DownOptions, note: Callable[[str], None],
                 partial: Callable[..., DownReport]) -> QueueReport:
    """Wait for ComfyUI's queue to drain; with ``force`` (or once the wait is over and
    ``interrupt_after_timeout``) drop the pending prompts and interrupt the running one."""
    try:
        state = read_queue(client)
    except ComfyUnavailable:
        return QueueReport(answered=False)
    first = QueueReport(answered=True, running=state.running, pending=state.pending)
    if state.empty or options.dry_run:
        return first
    started = time.monotonic()
    if not options.force:
        note(f"waiting for ComfyUI's queue to drain: {_describe_queue(state)} "
             f"(up to {options.drain_timeout:.0f} s; --force interrupts)")
        last_note = started
        while not state.empty and time.monotonic() - started < options.drain_timeout:
            time.sleep(1.0)
            try:
                state = read_queue(client)
            except ComfyUnavailable:
                state = QueueState()
            if not state.empty and time.monotonic() - last_note >= 30:
                note(f"still waiting: {_describe_queue(state)}")
                last_note = time.monotonic()
        waited = time.monotonic() - started
        if state.empty:
            return first.model_copy(update={"waited_seconds": waited})
        if not options.interrupt_after_timeout:
            report = first.model_copy(update={"waited_seconds": waited})
            raise TeardownIncomplete(
                f"ComfyUI's queue did not drain within {options.drain_timeout:.0f} s "
                f"({_describe_queue(state)}); nothing was stopped or deleted",
                "wait and re-run, raise --drain-timeout, or re-run with --force to interrupt them",
                partial(queue=report, problems=["the queue did not drain"]))
        note(f"the wait is over ({waited:.0f} s)")
    note(f"interrupting ComfyUI: {_describe_queue(state)}")
    try:
        interrupt_all(client)
        deadline = time.monotonic() + INTERRUPT_WAIT
        while time.monotonic() < deadline and not read_queue(client).empty:
            time.sleep(0.5)
    except ComfyUnavailable:
        pass
    return first.model_copy(update={"waited_seconds": time.monotonic() - started,
                                    "interrupted": state.running, "dropped": state.pending})


def _describe_queue(state: QueueState) -> str:
    running = ", ".join(f"prompt {pid}" for pid in state.running) or "nothing"
    return f"running {running}; {len(state.pending)} waiting"


# ---------------------------------------------------------------------------- 4. the service


def stop(node, service, port: int, probe: NodeProbe, dry_run: bool,
         note: Callable[[str], None]) -> ServiceReport:
    """Stop the service and prove nothing listens on its port any more."""
    from ..install.steps.service import stop_service

    loaded, running = probe.service.get("loaded", False), probe.service.get("running", False)
    report = ServiceReport(was_loaded=loaded, was_running=running, stopped=False, port=port)
    if dry_run:
        return report
    if loaded or running:
        note("stopping ComfyUI")
        stop_service(node, service)
    return report.model_copy(update={"stopped": loaded or running,
                                     "port_free": port_free(node, port)})


def port_free(node, port: int, wait: float = PORT_WAIT) -> bool:
    """Return True once nothing accepts connections on the node's 127.0.0.1:``port``."""
    deadline = time.monotonic() + wait
    while True:
        try:
            channel = node.open_tcp(port, timeout=5)
        except Exception:  # refused: the port is free  # noqa: BLE001
            return True
        channel.close()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)


# ---------------------------------------------------------------------------- 5. harvest


def inventory_spec(paths, roots, probe: NodeProbe, options: DownOptions) -> dict:
    """Return what node_inventory.py lists: the harvest, the models a ``--wipe models``
    deletes, the size of the work folder a ``--wipe all`` deletes."""
    recorded = [str(m.get("dest")) for m in probe.state.get("models", []) if isinstance(m, dict)]
    return harvesting.inventory_spec(
        roots, models=paths.models if options.wipe == "models" else None, model_files=recorded,
        sizes=[paths.workdir] if options.wipe == "all" else [])


def list_and_harvest(node, spec: dict, roots, candidates: list[str], dest: Path, node_name: str,
                     options: DownOptions, on_event: TeardownSink
                     ) -> tuple[dict, HarvestReport, list[tuple[str, int]]]:
    """List the node (one round trip) and, unless dry, pull each file as soon as the node
    has hashed it. Returns the inventory, the harvest's report and the removable node files
    now safe on the laptop (path, bytes)."""
    started = time.monotonic()
    removable = {root.label for root in roots if root.removable}
    by_label = {root.label: root for root in roots}
    harvester = None if options.dry_run else harvesting.Harvester(
        node, dest, node_name=node_name,
        on_event=lambda event: on_event(TeardownEvent(kind="harvest", harvest=event)))

    def on_line(line: str) -> None:
        if harvester is None or not line.startswith('{"'):
            return
        try:
            record = json.loads(line)
        except ValueError:
            return
        if record.get("kind") == "file" and record.get("label") in by_label:
            harvester.offer(harvesting.remote_file(record, by_label[record["label"]]))

    try:
        result = run_program(node, "node_inventory.py", spec, candidates, on_output=on_line)
        if result.exit_code != 0:
            raise harvesting.HarvestError(f"cannot list the node's outputs: {result.tail(3)}",
                                          "the node needs a working python3")
        inventory = harvesting.parse_inventory(result.stdout, roots)
    except harvesting.HarvestError as error:
        inventory = {"files": [], "models": [], "sizes": {},
                     "problems": [Refused(file=roots[0].path, reason=str(error))]}
    finally:
        outcome = harvester.finish() if harvester is not None else None
    files = inventory["files"]
    if outcome is None:
        try:
            local = harvesting.local_view(dest, harvesting.read_manifest(dest), files)
        except OSError:
            local = {}
        plan = harvesting.plan_harvest(files, local)
        refused = list(plan.refused) + list(inventory["problems"])
        planned = [PlannedFile(file=item.dest, bytes=item.source.bytes, reason=item.reason)
                   for item in plan.to_pull]
        would = [(i.source.remote, i.source.bytes) for i in plan.items if i.source.label in removable]
        return inventory, HarvestReport(dest=str(dest), files_on_node=len(files),
                                        skipped=len(plan.to_skip), refused=refused,
                                        to_pull=planned, ok=not refused), would
    refused = list(outcome.plan.refused) + list(inventory["problems"])
    done = outcome.verified()
    verified = [(i.source.remote, i.source.bytes) for i in outcome.plan.items
                if i.source.label in removable and i.dest in done]
    report = HarvestReport(
        dest=str(dest), files_on_node=len(files), skipped=len(outcome.plan.to_skip),
        refused=refused, pulled=outcome.pulled, bytes_pulled=sum(p.bytes for p in outcome.pulled),
        failed=outcome.failed, manifest=outcome.manifest, seconds=time.monotonic() - started,
        ok=not outcome.failed and not refused)
    return inventory, report, verified


def harvest_problems(report: HarvestReport) -> list[str]:
    return [] if report.ok else [f"harvest failed: {harvest_summary(report)}"]


def harvest_summary(report: HarvestReport) -> str:
    bad = [*report.failed, *report.refused]
    first = bad[0] if bad else None
    detail = ""
    if isinstance(first, HarvestFailure):
        detail = f" (first: {first.file}: {first.error})"
    elif isinstance(first, Refused):
        detail = f" (first: {first.file}: {first.reason})"
    return f"{len(bad)} file(s) not copied to {report.dest}{detail}"


# ---------------------------------------------------------------------------- 6-7. delete, search


def clean(node, paths, removals: list[Removal], roots, plist: Optional[str], token: Optional[str],
          token_env: str, candidates: list[str],
          note: Callable[[str], None]) -> tuple[list[Removal], SecretsReport]:
    """Delete ``removals`` on the node, then search what remains for the token's hash."""
    scan = None
    if token:
        scan = dict(token_probe(token), roots=[paths.workdir] + ([plist] if plist else []),
                    skip=[paths.models], max_bytes=SCAN_MAX_BYTES)
    spec = {
        "workdir": paths.workdir, "plist": plist,
        "remove": [{"path": r.path, "tree": r.tree,
                    "keep_last": paths.state_dir if r.what == "workdir" else None} for r in removals],
        "prune": [root.path for root in roots if root.removable],
        "scan": scan,
    }
    if removals:
        total = sum(r.bytes for r in removals)
        note(f"deleting {len(removals)} item(s) on the node ({format_bytes(total)})")
    result = run_program(node, "node_clean.py", spec, candidates)
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise TeardownIncomplete(f"the node's clean-up did not finish: {result.tail(3)}",
                                 "re-run `provision down`: it finishes what is left") from None
    outcome = {item["path"]: item for item in data.get("removed", [])}
    done: list[Removal] = []
    for removal in removals:
        item = outcome.get(removal.path, {})
        if not item.get("existed") and not item.get("error"):
            continue  # already gone: nothing was removed, nothing to report
        done.append(removal.model_copy(update={"done": not item.get("error"),
                                               "bytes": int(item.get("bytes") or removal.bytes),
                                               "error": item.get("error")}))
    found = data.get("scan")
    if not token:
        secrets = SecretsReport(check="not-checked",
                                note=f"${token_env} is not set on this machine, so the node could "
                                     "not be searched for the token")
    else:
        hits = list(found.get("found", [])) if found else []
        secrets = SecretsReport(
            check="found" if hits else "clean", found_in=hits,
            files_searched=int(found.get("files", 0)) if found else 0,
            bytes_searched=int(found.get("bytes", 0)) if found else 0,
            not_searched=list(found.get("skipped", [])) if found else [],
            note="model files (downloaded from the Hub as they are) were not searched")
    return done, secrets
