"""Playbooks: YAML steps rendered with jinja2 into typed steps.

The YAML is parsed first and each string is rendered on its own, so a value can never
change the structure of the playbook. A string that is exactly one ``{{ expression }}``
keeps the expression's type (a list stays a list). Every value that reaches a shell goes
through the ``q`` filter (shlex.quote). ``when:`` is an expression; ``for_each:`` repeats
a step for each item of a list (bound to ``item``).
"""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from ..core.config import SAFE_LOADER, NodeConfig
from ..core.config_errors import suggest
from ..core.errors import ConfigError
from ..core.rendering import environment
from ..core.resources import data_file
from ..node.facts import NodeFacts
from ..node.layout import node_paths
from .steps import STEP_KINDS, Step
from .toolchain import choose_git, choose_python

BUILTIN = "comfyui-flux.yaml"
_ONE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)
_RESERVED = {"for_each", "after", "before"}


def pip_options(cfg: NodeConfig) -> str:
    """Return the pip index options of node.yaml as one shell-quoted string."""
    parts: list[str] = []
    if cfg.pip.no_index:
        parts.append("--no-index")
    if cfg.pip.index_url:
        parts += ["--index-url", cfg.pip.index_url]
    for url in cfg.pip.extra_index_urls:
        parts += ["--extra-index-url", url]
    for link in cfg.pip.find_links:
        parts += ["--find-links", link]
    return " ".join(shlex.quote(part) for part in parts)


def device_for(facts: NodeFacts) -> str:
    """Return the torch device ComfyUI should report on this node."""
    if facts.platform == "macos":
        return "mps"
    return "cuda" if facts.gpus else "cpu"


DEFAULT_HUB = "https://huggingface.co"
SERVICE_LABEL = "dev.provision.comfyui"


def model_file_specs(plan, paths) -> list[dict[str, Any]]:
    """Return the download specs of the plan's files, each with its place on the node."""
    return [{"role": item.role, "repo": item.repo, "file": item.file, "revision": item.revision,
             "dest": f"{paths.models}/{item.folder}/{item.name}", "size": item.bytes,
             "sha256": item.sha256, "quant": item.quant, "gated": item.gated,
             "licence_url": item.licence_url, "resolved": not item.approximate,
             "url": item.url, "entry": item.entry}
            for item in plan.files]


def custom_node_specs(cfg: NodeConfig, paths) -> list[dict[str, str]]:
    """Return node.yaml's custom nodes, each with its folder on the node (``dest``)."""
    return [{"name": str(node.name), "repo": node.repo, "ref": node.ref,
             "dest": f"{paths.custom_nodes}/{node.name}"} for node in cfg.custom_nodes]


def comfyui_args(cfg: NodeConfig, paths, device: str) -> list[str]:
    """Return ComfyUI's command line after the interpreter.

    ``--fp32-vae`` is the real flag (the seed's ``--fp32vae`` is rejected by ComfyUI's
    argparse); ``--listen 127.0.0.1`` keeps it off the network (users come through the SSH
    tunnel). ``--output-directory`` names our own folder, which also lets the health check
    tell our ComfyUI from another process that answers on the same port.
    """
    args = ["main.py", "--fp32-vae", "--listen", "127.0.0.1", "--port", str(cfg.tunnel.remote_port),
            "--disable-auto-launch", "--output-directory", paths.output]
    if device == "cpu":
        args.append("--cpu")
    return args + list(cfg.comfyui.extra_args)


def build_context(cfg: NodeConfig, facts: NodeFacts, plan) -> dict[str, Any]:
    """Return the variables every playbook string and template sees."""
    paths = node_paths(cfg, facts)
    return {
        "cfg": cfg,
        "facts": facts,
        "plan": plan,
        "paths": paths,
        "model_files": model_file_specs(plan, paths),
        "model_names": {item.role: item.name for item in plan.files},
        "custom_nodes": custom_node_specs(cfg, paths),
        "service_label": SERVICE_LABEL,
        "hub_endpoint": (cfg.hf.endpoint or DEFAULT_HUB).rstrip("/"),
        "python": choose_python(cfg, facts, pip_options(cfg)),
        "git": choose_git(facts),
        "pip_options": pip_options(cfg),
        "device": device_for(facts),
        "comfyui_args": comfyui_args(cfg, paths, device_for(facts)),
        "local_outputs": str(cfg.outputs_dir()),
        "skip_models": False,
        "skip_launch": False,
        "skip_smoke": False,
    }


def load_steps(cfg: NodeConfig, facts: NodeFacts, plan,
               extra_context: Optional[dict[str, Any]] = None) -> list[Step]:
    """Render the built-in playbook (extended by node.yaml's ``playbook:``) into steps."""
    context = build_context(cfg, facts, plan)
    context.update(extra_context or {})
    env = environment()
    builtin_path = data_file("playbooks", BUILTIN)
    raw_steps = _read_steps(builtin_path)
    if cfg.playbook:
        raw_steps = _extend(raw_steps, Path(cfg.playbook))
    _check_joins(raw_steps)
    steps: list[Step] = []
    for index, raw, source in raw_steps:
        steps.extend(_render_step(env, context, raw, source, index))
    return steps


def _check_joins(raw_steps: list[tuple[int, dict, Path]]) -> None:
    """Refuse a ``join`` that names no step before it (it would wait for nothing, silently)."""
    before: list[str] = []
    for _, raw, source in raw_steps:
        if raw.get("kind") == "join" and raw.get("step") not in before:
            raise ConfigError(f"{source}: step {raw['name']} (join): step: no step called "
                              f"{raw.get('step')!r} before it{suggest(str(raw.get('step')), before)}",
                              "a join waits for a background step placed before it")
        before.append(str(raw["name"]))


def _read_steps(path: Path) -> list[tuple[int, dict, Path]]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read playbook: {error.strerror}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{path}: {where}not valid YAML: {error.problem}") from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise ConfigError(f"{path}: a playbook is a mapping with a steps: list",
                          "see docs/playbooks.md")
    unknown = set(data) - {"steps", "skip"}
    if unknown:
        raise ConfigError(f"{path}: {sorted(unknown)[0]}: unknown key", "a playbook has steps: and skip:")
    steps = []
    for index, raw in enumerate(data["steps"]):
        if not isinstance(raw, dict) or "name" not in raw:
            raise ConfigError(f"{path}: steps[{index}]: each step is a mapping with a name:",
                              "add name: and kind:")
        steps.append((index, raw, path))
    return steps


def _extend(builtin: list[tuple[int, dict, Path]], path: Path) -> list[tuple[int, dict, Path]]:
    """Merge a user's playbook: same name replaces, ``after:``/``before:`` place, else append."""
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER) or {}
    skip = set(data.get("skip") or []) if isinstance(data, dict) else set()
    # A skipped step takes the joins that wait for it along.
    merged = [entry for entry in builtin if entry[1]["name"] not in skip
              and not (entry[1].get("kind") == "join" and entry[1].get("step") in skip)]
    names = [entry[1]["name"] for entry in merged]
    unknown = sorted(skip - {entry[1]["name"] for entry in builtin})
    if unknown:
        raise ConfigError(f"{path}: skip: no built-in step is called {unknown[0]!r}"
                          f"{suggest(unknown[0], names)}")
    for index, raw, source in _read_steps(path):
        entry = (index, raw, source)
        names = [item[1]["name"] for item in merged]
        anchor = raw.get("after") or raw.get("before")
        if raw["name"] in names and not anchor:
            merged[names.index(raw["name"])] = entry
        elif anchor:
            if anchor not in names:
                raise ConfigError(f"{path}: step {raw['name']}: after/before: no step called "
                                  f"{anchor!r}{suggest(anchor, names)}")
            position = names.index(anchor) + (1 if raw.get("after") else 0)
            merged.insert(position, entry)
        else:
            merged.append(entry)
    return merged


def _render_step(env, context: dict[str, Any], raw: dict, source: Path, index: int) -> list[Step]:
    name = str(raw.get("name"))
    kind = raw.get("kind")
    where = f"{source}: step {name}"
    if kind not in STEP_KINDS:
        raise ConfigError(f"{where}: kind: unknown kind {kind!r}{suggest(str(kind), list(STEP_KINDS))}",
                          f"valid kinds: {', '.join(STEP_KINDS)}")
    items: list[Any] = [None]
    if "for_each" in raw:
        items = _evaluate(env, context, str(raw["for_each"]), where, "for_each")
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{where}: for_each: must evaluate to a list")
    steps = []
    for item in items:
        local = dict(context, item=item) if item is not None else context
        fields = {key: value for key, value in raw.items() if key not in _RESERVED}
        if "when" in fields:
            fields["when"] = bool(_evaluate(env, local, str(fields["when"]), where, "when"))
        rendered = {key: (value if key == "when" else _render_value(env, local, value, where, key))
                    for key, value in fields.items()}
        if kind == "template" and "content" not in rendered:
            rendered["content"] = _render_template(env, local, rendered.get("src"), where)
        try:
            steps.append(STEP_KINDS[kind].model_validate(rendered))
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "(step)"
            message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
            valid = ", ".join(STEP_KINDS[kind].model_fields)
            raise ConfigError(f"{where} ({kind}): {field}: {message}",
                              f"fields of a {kind} step: {valid}") from None
    return steps


def _render_value(env, context: dict[str, Any], value: Any, where: str, key: str,
                  native: bool = True) -> Any:
    """Render a field; only a whole field keeps an expression's type, nested strings stay strings."""
    import jinja2

    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        try:
            match = _ONE_EXPRESSION.match(value) if native else None
            if match:
                return _expression(env, match.group("expr"))(**context)
            return _template(env, value).render(**context)
        except jinja2.TemplateError as error:
            raise ConfigError(f"{where}: {key}: {error.message or error}",
                              "playbook variables: cfg, facts, plan, paths, python, git, pip_options, "
                              "device (and item in for_each)") from None
    if isinstance(value, list):
        return [_render_value(env, context, item, where, key, native=False) for item in value]
    if isinstance(value, dict):
        return {k: _render_value(env, context, v, where, f"{key}.{k}", native=False)
                for k, v in value.items()}
    return value


@functools.lru_cache(maxsize=512)
def _expression(env, source: str):
    return env.compile_expression(source, undefined_to_none=False)


@functools.lru_cache(maxsize=512)
def _template(env, source: str):
    return env.from_string(source)


def _evaluate(env, context: dict[str, Any], expression: str, where: str, key: str) -> Any:
    import jinja2

    try:
        return _expression(env, expression)(**context)
    except jinja2.TemplateError as error:
        raise ConfigError(f"{where}: {key}: {error.message or error}") from None


def _render_template(env, context: dict[str, Any], src: Any, where: str) -> str:
    import jinja2

    if not src:
        raise ConfigError(f"{where}: src: a template step needs src: (a file in templates/)")
    try:
        return env.get_template(str(src)).render(**context)
    except jinja2.TemplateNotFound:
        raise ConfigError(f"{where}: src: no template called {src!r} in templates/") from None
    except jinja2.TemplateError as error:
        raise ConfigError(f"{where}: src {src}: {error.message or error}") from None
