"""Turn one API-format workflow and ``provision run``'s sweeps into jobs. Pure: no node.

A sweep sets one input of one node to each of several values: ``--set NODE.INPUT=VALUES``
(``a,b,c``; ``1..8``; ``0.5..1.0:0.25``; ``[json, list]``; ``@file``, one value per line),
``--prompts FILE`` (the positive prompt's text, found by following the sampler's links) and
``--seeds N`` (every seed input). Jobs are the product of the sweeps, prompts outermost and
seeds innermost. A job's key is the sha256 of its workflow, so the same command always makes
the same jobs, which is what lets a re-run skip the ones already done.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from ..core.errors import UsageError

SEED_INPUTS = ("seed", "noise_seed")
# Text encoders and the inputs a prompt goes to.
TEXT_INPUTS = {"CLIPTextEncode": ("text",), "CLIPTextEncodeFlux": ("clip_l", "t5xxl"),
               "CLIPTextEncodeSD3": ("clip_l", "clip_g", "t5xxl"),
               "CLIPTextEncodeSDXL": ("text_g", "text_l")}
# The inputs conditioning travels through between a text encoder and the sampler.
CONDITIONING_INPUTS = ("positive", "guider", "conditioning", "conditioning_1", "conditioning_2",
                       "conditioning_to", "conditioning_from")
SAMPLERS_POSITIVE = {"KSampler": "positive", "KSamplerAdvanced": "positive",
                     "SamplerCustom": "positive", "SamplerCustomAdvanced": "guider"}
OUTPUT_PREFIX = "run"  # SaveImage writes run/<key>..., so a job's files are known by name
KEY_IN_NAMES = 12
MAX_JOBS = 100_000
_RANGE = re.compile(r"^(-?[0-9.]+)\.\.(-?[0-9.]+)(?::([0-9.]+))?$")


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The values one input of one node takes, and where they came from (for errors)."""

    node_id: str
    input: str
    values: tuple[Any, ...]
    source: str  # e.g. "--set 6.text=@prompts.txt"

    @property
    def target(self) -> str:
        return f"{self.node_id}.{self.input}"


@dataclasses.dataclass(frozen=True, eq=False)
class Job:
    """One prompt to queue: the values it sets, its key and the workflow to submit."""

    index: int  # 1-based, in batch order
    key: str  # sha256 of the workflow with the values set, before the output prefix
    values: tuple[tuple[str, Any], ...]  # ("6.text", "a fox"), in sweep order
    workflow: dict  # what is submitted: the values set, SaveImage writing run/<key>

    @property
    def short_key(self) -> str:
        return self.key[:KEY_IN_NAMES]

    @property
    def seed(self) -> Optional[int]:
        """The job's seed: a swept seed input, else the first seed input of the workflow."""
        for target, value in self.values:
            if target.rsplit(".", 1)[1] in SEED_INPUTS:
                return int(value)
        for node in self.workflow.values():
            for name in SEED_INPUTS:
                value = (node.get("inputs") or {}).get(name)
                if isinstance(value, int) and not isinstance(value, bool):
                    return value
        return None


# ---------------------------------------------------------------------------- sweeps


def parse_set(spec: str, workflow: Mapping[str, Any], base_dir: Path = Path(".")) -> Sweep:
    """Parse ``NODE.INPUT=VALUES`` against ``workflow``; NODE is an id, a unique class or title."""
    source = f"--set {spec}"
    target, sep, raw = spec.partition("=")
    if not sep or "." not in target or not raw:
        raise UsageError(f"{source}: expected NODE.INPUT=VALUES, e.g. 6.text=@prompts.txt or 31.seed=1..8",
                         "NODE is a node id of the workflow (or its class or title)")
    node_ref, input_name = target.rsplit(".", 1)
    node_id = resolve_node(workflow, node_ref, source)
    current = (workflow[node_id].get("inputs") or {}).get(input_name)
    if isinstance(current, list):
        raise UsageError(f"{source}: input {input_name!r} of node {node_id} is a link to node "
                         f"{current[0]!r}, not a value", "set an input that holds a value")
    texts = split_values(raw, base_dir, source)
    values = tuple(coerce(text, current, source) for text in texts)
    return Sweep(node_id, input_name, values, source)


def resolve_node(workflow: Mapping[str, Any], ref: str, source: str) -> str:
    """Return the id of the node ``ref`` names: its id, else its class or title if unique."""
    if ref in workflow:
        return ref
    for field in ("class_type", "title"):
        found = [node_id for node_id, node in workflow.items()
                 if (node.get("class_type") if field == "class_type"
                     else (node.get("_meta") or {}).get("title")) == ref]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise UsageError(f"{source}: {len(found)} nodes are {ref!r} (ids {', '.join(found)})",
                             "name the node by its id")
    ids = ", ".join(sorted(workflow, key=_id_order)[:20])
    raise UsageError(f"{source}: the workflow has no node {ref!r} (its ids: {ids})",
                     "NODE is a node id of the API-format workflow, its class or its title")


def split_values(raw: str, base_dir: Path, source: str) -> list[str]:
    """Expand VALUES: ``@file`` lines, a ``[json list]``, a range, or a comma list."""
    if raw.startswith("@"):
        return read_lines(base_dir / raw[1:], source)
    if raw.startswith("["):
        try:
            items = json.loads(raw)
        except ValueError as error:
            raise UsageError(f"{source}: not a JSON list: {error}",
                             'write it as ["a, b", "c"] (quote the whole option for the shell)') from None
        if not isinstance(items, list) or not items:
            raise UsageError(f"{source}: the JSON list is empty", "give at least one value")
        return [item if isinstance(item, str) else json.dumps(item) for item in items]
    match = _RANGE.match(raw)
    if match:
        return expand_range(*match.groups(), source=source)
    values = [part.strip() for part in raw.split(",")]
    if any(value == "" for value in values):
        raise UsageError(f"{source}: an empty value in the list",
                         "separate values with single commas; a value with a comma goes in @file")
    return values


def read_lines(path: Path, source: str) -> list[str]:
    """Read one value per non-empty line of ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{source}: cannot read {path}: {error.strerror or error}",
                         "check the path (relative to the current folder)") from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise UsageError(f"{source}: {path} has no values", "write one value per line")
    return lines


def expand_range(start: str, end: str, step: Optional[str], *, source: str) -> list[str]:
    """``1..8`` -> 1..8 inclusive; ``0.5..1:0.25`` -> 0.5, 0.75, 1.0 (exact decimals)."""
    try:
        first, last = Decimal(start), Decimal(end)
        stride = Decimal(step) if step else Decimal(1)
    except InvalidOperation:
        raise UsageError(f"{source}: {start}..{end} is not a range of numbers",
                         "write START..END or START..END:STEP, e.g. 1..8 or 0.5..1.0:0.25") from None
    if stride <= 0 or last < first:
        raise UsageError(f"{source}: the range {start}..{end} is empty or its step is not positive",
                         "write START..END with START <= END and a positive STEP")
    count = int((last - first) / stride) + 1
    if count > MAX_JOBS:
        raise UsageError(f"{source}: the range has {count} values", f"keep a sweep under {MAX_JOBS}")
    return [str(first + stride * index) for index in range(count)]


def coerce(text: str, current: Any, source: str) -> Any:
    """Give ``text`` the type of the input's value in the workflow (JSON's guess if absent)."""
    if isinstance(current, bool):
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise UsageError(f"{source}: {text!r} is not true or false", "write true or false")
    if isinstance(current, int):
        try:
            number: Optional[Decimal] = Decimal(text)
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite() or number != number.to_integral_value():
            raise UsageError(f"{source}: {text!r} is not a whole number (the workflow's value is one)",
                             "write whole numbers, e.g. 1..8")
        return int(number)
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"{source}: {text!r} is not a number", "write a number") from None
    if isinstance(current, str):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, bool)) else text


def prompt_sweep(workflow: Mapping[str, Any], prompts: list[str], source: str) -> list[Sweep]:
    """Sweep the positive prompt's text inputs (one sweep per input, moved in step)."""
    encoders = positive_encoders(workflow)
    if len(encoders) != 1:
        found = (f"{len(encoders)} text encoders (ids {', '.join(encoders)}) feed the positive "
                 "conditioning" if encoders else "no CLIPTextEncode feeds a sampler's positive input")
        raise UsageError(f"{source}: cannot tell which node the prompts go to: {found}",
                         "name it: --set NODE.text=@prompts.txt")
    node_id = encoders[0]
    names = TEXT_INPUTS[str(workflow[node_id].get("class_type"))]
    return [Sweep(node_id, name, tuple(prompts), source) for name in names]


def positive_encoders(workflow: Mapping[str, Any]) -> list[str]:
    """Return the ids of the text encoders whose conditioning reaches a sampler's positive."""
    starts = []
    for node in workflow.values():
        name = SAMPLERS_POSITIVE.get(str(node.get("class_type")))
        link = (node.get("inputs") or {}).get(name) if name else None
        if _is_link(link):
            starts.append(str(link[0]))
    found, seen = [], set()
    while starts:
        node_id = starts.pop()
        if node_id in seen or node_id not in workflow:
            continue
        seen.add(node_id)
        node = workflow[node_id]
        if node.get("class_type") in TEXT_INPUTS:
            found.append(node_id)
            continue
        inputs = node.get("inputs") or {}
        starts.extend(str(inputs[name][0]) for name in CONDITIONING_INPUTS
                      if _is_link(inputs.get(name)))
    return sorted(found, key=_id_order)


def seed_sweep(workflow: Mapping[str, Any], count: int, first: int, source: str) -> list[Sweep]:
    """Sweep every seed input (KSampler.seed, RandomNoise.noise_seed...) over first..first+count-1."""
    targets = [(node_id, name) for node_id, node in sorted(workflow.items(), key=lambda i: _id_order(i[0]))
               for name in SEED_INPUTS if not _is_link((node.get("inputs") or {}).get(name, []))
               and name in (node.get("inputs") or {})]
    if not targets:
        raise UsageError(f"{source}: the workflow has no seed input (seed, noise_seed)",
                         "set the input that seeds it: --set NODE.INPUT=1..N")
    values = tuple(range(first, first + count))
    return [Sweep(node_id, name, values, source) for node_id, name in targets]


# ---------------------------------------------------------------------------- jobs


def expand_jobs(workflow: Mapping[str, Any], groups: Iterable[list[Sweep]]) -> list[Job]:
    """Return the product of the sweep groups (first outermost); sweeps in one group move
    together (a prompt's clip_l and t5xxl; every seed input)."""
    groups = [group for group in groups if group]
    _refuse_overlaps(groups)
    sizes = [len(group[0].values) for group in groups]
    total = 1
    for size in sizes:
        total *= size
    if total > MAX_JOBS:
        raise UsageError(f"the sweeps make {total} jobs", f"keep a batch under {MAX_JOBS} jobs")
    jobs = []
    for index, choice in enumerate(itertools.product(*(range(size) for size in sizes)), start=1):
        values = tuple((sweep.target, sweep.values[position])
                       for group, position in zip(groups, choice) for sweep in group)
        graph = set_values(workflow, values)
        key = workflow_key(graph)
        jobs.append(Job(index=index, key=key, values=values,
                        workflow=with_output_prefix(graph, key[:KEY_IN_NAMES])))
    return jobs


def job_workflow(job: Job, base: Optional[Mapping[str, Any]] = None) -> dict:
    """Return what to submit for ``job`` on a node whose workflow is ``base`` (the built-in
    workflow names each node's own model files); the job's workflow when ``base`` is None."""
    if base is None:
        return job.workflow
    return with_output_prefix(set_values(base, job.values), job.short_key)


def set_values(workflow: Mapping[str, Any], values: Iterable[tuple[str, Any]]) -> dict:
    """Return a copy of ``workflow`` with each ``("NODE.INPUT", value)`` set."""
    graph = copy.deepcopy(dict(workflow))
    for target, value in values:
        node_id, name = target.rsplit(".", 1)
        graph[node_id].setdefault("inputs", {})[name] = value
    return graph


def workflow_key(workflow: Mapping[str, Any]) -> str:
    """Return the sha256 of the workflow's canonical JSON: what identifies a job. The
    ``filename_prefix`` inputs are left out: ``run`` replaces them anyway."""
    graph = copy.deepcopy(dict(workflow))
    for node in graph.values():
        if isinstance((node.get("inputs") or {}).get("filename_prefix"), str):
            node["inputs"]["filename_prefix"] = ""
    text = json.dumps(graph, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def with_output_prefix(workflow: dict, short_key: str) -> dict:
    """Make every node that saves files write ``run/<key>``, so its files are the job's."""
    savers = [node_id for node_id, node in workflow.items()
              if isinstance((node.get("inputs") or {}).get("filename_prefix"), str)]
    for node_id in savers:
        suffix = "" if len(savers) == 1 else f"-{node_id}"
        workflow[node_id]["inputs"]["filename_prefix"] = f"{OUTPUT_PREFIX}/{short_key}{suffix}"
    return workflow


def _refuse_overlaps(groups: list[list[Sweep]]) -> None:
    seen: dict[str, str] = {}
    for group in groups:
        for sweep in group:
            if sweep.target in seen:
                raise UsageError(f"{sweep.source}: {sweep.target} is already set by {seen[sweep.target]}",
                                 "set each input once")
            seen[sweep.target] = sweep.source


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))


def _id_order(node_id: str) -> tuple:
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)
