"""``provision down``: hand the node back without losing work or leaving secrets behind.

In order, each step safe to repeat, so a run cut anywhere is finished by the next one:

1. read the node's state in one round trip (``probe.py``); a node ``up`` never touched has
   nothing to do;
2. take the node lock;
3. let ComfyUI's queue drain (or, forced, drop what waits and interrupt what runs)
   (``drain.py``);
4. stop the service and prove its port is free (``service.py``);
5. harvest the outputs (``outputs.py``, ``harvest.py``), each file verified by sha256 on
   both sides;
6. delete, in one round trip (templates/node_clean.py): the token file, the outputs now
   safe on the laptop (unless kept), then the wipe level's models or the whole work folder
   and LaunchAgent plist (``cleanup.py`` decides, ``scrub.py`` does it); a failed harvest
   refuses the wipe unless outputs may be discarded;
7. search what remains for the token by its sha256 (it is never sent to the node).

This module holds the order of things; each step lives in the module named beside it.
"""

from __future__ import annotations

import contextlib
import time
from typing import Optional

from ..comfy.client import ComfyClient
from ..core.errors import ConfigError
from ..node.programs import interpreters
from ..node.shell import q
from .cleanup import Removal, plan_removals, plist_problem, workdir_problem
from .drain import settle_queue
from .inventory import harvest_roots
from .options import DownOptions
from .outputs import harvest_problems, harvest_summary, inventory_spec, list_and_harvest
from .probe import parse_probe, probe_script
from .report import DownReport, SecretsReport, TeardownEvent, TeardownIncomplete, TeardownSink
from .scrub import clean
from .service import stop


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
        roots = harvest_roots(paths)
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
