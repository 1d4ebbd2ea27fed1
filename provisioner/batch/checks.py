"""Check every job against each node's ``/object_info`` before any is queued. Pure.

ComfyUI would refuse a prompt naming a class it lacks or a model file it does not list, but
only when that prompt's turn comes, and on one node; checking every job on every node first
turns a batch that would fail at job 37 into one error that names the fix.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping

from ..comfy.workflows import GGUF_CLASSES, validate_workflow
from ..core.errors import WorkflowError

# Classes of well-known custom nodes, and the repository that provides them.
KNOWN_CUSTOM_NODES = {
    **{name: "https://github.com/XLabs-AI/x-flux-comfyui" for name in (
        "XlabsSampler", "LoadFluxLora", "LoadFluxControlNet", "ApplyFluxControlNet",
        "LoadFluxIPAdapter", "ApplyFluxIPAdapter")},
    "Power Lora Loader (rgthree)": "https://github.com/rgthree/rgthree-comfy",
    "FaceDetailer": "https://github.com/ltdrdata/ComfyUI-Impact-Pack",
    "AIO_Preprocessor": "https://github.com/Fannovel16/comfyui_controlnet_aux",
    "CannyEdgePreprocessor": "https://github.com/Fannovel16/comfyui_controlnet_aux",
    "ImageResize+": "https://github.com/cubiq/ComfyUI_essentials",
    "ShowText|pysssss": "https://github.com/pythongosssss/ComfyUI-Custom-Scripts",
}
# The node.yaml field that puts the file a model input names on the node.
MODEL_FIELDS = {
    "lora_name": "loras: (a {repo, file} on the Hub, or {url, sha256})",
    "control_net_name": "controlnet: (a {repo, file} on the Hub, or {url, sha256})",
    "unet_name": "model: / quality: (the Flux files `up` plans)",
    "clip_name": "model: / quality: (the Flux files `up` plans)",
    "clip_name1": "model: / quality: (the Flux files `up` plans)",
    "clip_name2": "model: / quality: (the Flux files `up` plans)",
    "vae_name": "model: (the Flux VAE `up` plans)",
}
SHOWN = 4


def check_targets(node: str, workflow: Mapping[str, Any], targets: Iterable[str],
                  object_info: Mapping[str, Any]) -> None:
    """Refuse a swept ``NODE.INPUT`` whose class has no such input: ComfyUI would ignore it,
    and the batch would make the same image under every value."""
    for target in targets:
        node_id, name = target.rsplit(".", 1)
        class_type = str(workflow[node_id].get("class_type"))
        spec = (object_info.get(class_type) or {}).get("input")
        if spec is None:
            continue  # a missing class: check_jobs names it
        known = [*(spec.get("required") or {}), *(spec.get("optional") or {})]
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise WorkflowError(
                f"{node}: {target}: {class_type} has no input {name!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + ", nothing was queued", f"its inputs: {', '.join(known)}")


def check_jobs(node: str, workflows: list[Mapping[str, Any]], object_info: Mapping[str, Any]) -> None:
    """Raise ``WorkflowError`` naming what ``node`` lacks for any job's workflow, with the fix."""
    problems: dict[str, tuple[str, str]] = {}  # message -> (kind, input or class)
    failing = 0
    for graph in workflows:
        found = validate_workflow(graph, object_info)
        failing += bool(found)
        for problem in found:
            detail = problem.input if problem.kind == "missing_model" else problem.class_type
            problems.setdefault(problem.message, (problem.kind, detail))
    if not problems:
        return
    listed = list(problems.items())
    text = "; ".join(message for message, _ in listed[:SHOWN])
    if len(listed) > SHOWN:
        text += f"; and {len(listed) - SHOWN} more"
    jobs_text = "every job" if failing == len(workflows) else f"{failing} of {len(workflows)} jobs"
    raise WorkflowError(f"{node} cannot run {jobs_text}, nothing was queued: {text}",
                        _hint([value for _, value in listed]))


def _hint(problems: list[tuple[str, str]]) -> str:
    kind, detail = problems[0]
    if kind == "missing_class":
        if detail in GGUF_CLASSES:
            return ("it comes from ComfyUI-GGUF, which `provision up NODE.yaml` installs; "
                    "`provision logs NODE.yaml` shows a custom node that failed to import")
        repo = KNOWN_CUSTOM_NODES.get(detail)
        where = f"it comes from {repo}: add " if repo else "add the custom node that provides it to "
        return (f"{where}custom_nodes: [{{repo: ..., ref: ...}}] in node.yaml and run "
                "`provision up NODE.yaml`; `provision logs NODE.yaml` shows one that failed to import")
    if kind == "missing_model":
        field = MODEL_FIELDS.get(detail, "the model entries")
        return f"add the file with {field} in node.yaml, then run `provision up NODE.yaml`"
    return "fix the workflow (or the --set values) so ComfyUI would accept it"

