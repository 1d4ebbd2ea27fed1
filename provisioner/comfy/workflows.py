"""Bench workflows: render ComfyUI API-format graphs from templates, check them against
``/object_info`` before anything is submitted. Pure: no node, no network.

The templates are ``templates/workflows/flux-<model>.json.j2`` (data, not code); the node
classes, input names and validation rules they must satisfy are FACTS.md's "Flux
text-to-image workflow" (read from a running ComfyUI v0.3.64 + ComfyUI-GGUF).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Optional

from pydantic import BaseModel, ConfigDict

from ..core.errors import WorkflowError

# Per model: the template, the step count the seed's table was measured with, and the guidance.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {"template": "workflows/flux-dev.json.j2", "steps": 20, "guidance": 3.5},
    "schnell": {"template": "workflows/flux-schnell.json.j2", "steps": 4, "guidance": 3.5},
}
DEFAULT_PROMPT = ("a red fox standing in fresh snow at dawn, soft golden light, "
                  "detailed fur, shallow depth of field")
DEFAULT_SIZE = 1024
SAMPLER = "euler"
SCHEDULER = "simple"
# Input names whose combo lists are model files, and the models/ folder they are read from.
MODEL_INPUT_FOLDERS = {"unet_name": "models/unet (or models/diffusion_models)",
                       "clip_name": "models/clip (or models/text_encoders)",
                       "clip_name1": "models/clip (or models/text_encoders)",
                       "clip_name2": "models/clip (or models/text_encoders)",
                       "vae_name": "models/vae",
                       "lora_name": "models/loras",
                       "control_net_name": "models/controlnet"}
# The classes whose progress is the sampling, and the decode that follows it.
SAMPLER_CLASSES = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
DECODE_CLASSES = ("VAEDecode", "VAEDecodeTiled")
GGUF_CLASSES = {"UnetLoaderGGUF", "UnetLoaderGGUFAdvanced", "CLIPLoaderGGUF", "DualCLIPLoaderGGUF"}
LINK_TYPES = {"MODEL", "CLIP", "VAE", "CONDITIONING", "LATENT", "IMAGE", "NOISE", "GUIDER",
              "SAMPLER", "SIGMAS"}


class WorkflowFiles(BaseModel):
    """The model file names a workflow loads (names in their ComfyUI folders)."""

    model_config = ConfigDict(frozen=True)

    unet: str
    t5: str
    clip_l: str
    vae: str

    @classmethod
    def from_plan(cls, plan) -> "WorkflowFiles":
        """Take the UNet, T5, CLIP-L and VAE names of a ``ModelPlan``."""
        names = {item.role: item.name for item in plan.files}
        return cls(unet=names["unet"], t5=names["t5"], clip_l=names["clip_l"], vae=names["vae"])


class WorkflowProblem(BaseModel):
    """One reason ComfyUI would refuse a workflow; ``kind`` says which fix applies."""

    model_config = ConfigDict(frozen=True)

    node_id: str
    class_type: str
    kind: str  # missing_class | missing_model | missing_input | bad_value | bad_link | no_output
    message: str
    input: str = ""  # the input at fault, when one is


def unet_loader_for(unet: str) -> str:
    """Return the UNet loader class for a file: GGUF's for .gguf, core UNETLoader otherwise."""
    return "UnetLoaderGGUF" if unet.lower().endswith(".gguf") else "UNETLoader"


def clip_loader_for(files: WorkflowFiles) -> str:
    """Return DualCLIPLoaderGGUF when a text encoder is .gguf, else core DualCLIPLoader."""
    if any(name.lower().endswith(".gguf") for name in (files.t5, files.clip_l)):
        return "DualCLIPLoaderGGUF"
    return "DualCLIPLoader"


def render_workflow(model: str, files: WorkflowFiles, *, seed: int, steps: Optional[int] = None,
                    prompt: str = DEFAULT_PROMPT, width: int = DEFAULT_SIZE,
                    height: int = DEFAULT_SIZE, filename_prefix: Optional[str] = None) -> dict:
    """Render the API-format workflow of ``model`` ("dev" or "schnell") as a dict."""
    from ..core.rendering import render_template

    defaults = MODEL_DEFAULTS[model]
    text = render_template(
        defaults["template"],
        unet_loader=unet_loader_for(files.unet), unet=files.unet,
        clip_loader=clip_loader_for(files), clip_l=files.clip_l, t5=files.t5, vae=files.vae,
        prompt=prompt, guidance=defaults["guidance"], width=width, height=height, seed=seed,
        steps=steps if steps is not None else defaults["steps"], sampler=SAMPLER,
        scheduler=SCHEDULER, filename_prefix=filename_prefix or f"bench/flux-{model}",
    )
    return json.loads(text)


def default_steps(model: str) -> int:
    """Return the step count the seed's table used for ``model``."""
    return int(MODEL_DEFAULTS[model]["steps"])


def node_ids(workflow: Mapping[str, Any], class_types: Iterable[str]) -> list[str]:
    """Return the ids of the nodes whose class is one of ``class_types``, in id order."""
    wanted = set(class_types)
    return [node_id for node_id, node in workflow.items() if node.get("class_type") in wanted]


def workflow_classes(workflow: Mapping[str, Any]) -> list[str]:
    """Return the node classes a workflow uses, sorted (what to ask /object_info for)."""
    return sorted({str(node.get("class_type")) for node in workflow.values()})


def validate_workflow(workflow: Mapping[str, Any], object_info: Mapping[str, Any]) -> list[WorkflowProblem]:
    """Check ``workflow`` as ComfyUI's POST /prompt would; return every problem found.

    ``object_info`` maps class names to ``/object_info/{class}`` entries; a class that is
    absent (or maps to nothing) does not exist on the node. Unlike ComfyUI, every node's
    inputs are checked, not only those feeding an output (a bench workflow has no others).
    """
    problems: list[WorkflowProblem] = []
    outputs = 0
    for node_id, node in workflow.items():
        class_type = str(node.get("class_type"))
        info = object_info.get(class_type)
        if not info:
            extra = (" (it comes from ComfyUI-GGUF, which is not installed or failed to import)"
                     if class_type in GGUF_CLASSES else "")
            problems.append(WorkflowProblem(
                node_id=node_id, class_type=class_type, kind="missing_class",
                message=f"node {node_id}: ComfyUI has no node class {class_type!r}{extra}"))
            continue
        if info.get("output_node"):
            outputs += 1
        inputs = node.get("inputs") or {}
        spec = info.get("input") or {}
        for name, input_spec in (spec.get("required") or {}).items():
            where = f"node {node_id} ({class_type})"
            if name not in inputs:
                problems.append(WorkflowProblem(
                    node_id=node_id, class_type=class_type, kind="missing_input",
                    message=f"{where}: required input {name!r} is missing"))
                continue
            problem = _check_input(workflow, object_info, where, name, input_spec, inputs[name])
            if problem is not None:
                kind, message = problem
                problems.append(WorkflowProblem(node_id=node_id, class_type=class_type,
                                                kind=kind, message=message, input=name))
        for name, input_spec in (spec.get("optional") or {}).items():
            if name in inputs:
                problem = _check_input(workflow, object_info, f"node {node_id} ({class_type})",
                                       name, input_spec, inputs[name])
                if problem is not None:
                    problems.append(WorkflowProblem(node_id=node_id, class_type=class_type,
                                                    kind=problem[0], message=problem[1], input=name))
    if outputs == 0 and not any(p.kind == "missing_class" for p in problems):
        problems.append(WorkflowProblem(node_id="", class_type="", kind="no_output",
                                        message="the workflow has no output node (e.g. SaveImage)"))
    return problems


def check_workflow(workflow: Mapping[str, Any], object_info: Mapping[str, Any], *,
                   model: str = "dev") -> None:
    """Raise ``WorkflowError`` naming every problem ``validate_workflow`` finds."""
    problems = validate_workflow(workflow, object_info)
    if not problems:
        return
    kinds = {problem.kind for problem in problems}
    if "missing_class" in kinds:
        hint = ("re-run `provision up NODE.yaml` to (re)install ComfyUI-GGUF; `provision logs "
                "NODE.yaml` shows a custom node that failed to import")
    elif "missing_model" in kinds:
        hint = ("install the files with `provision up NODE.yaml`"
                + (f" (model: {model} in node.yaml)" if model else "")
                + "; `provision status NODE.yaml` lists the files ComfyUI sees")
    else:
        hint = "the bench workflow templates (templates/workflows/) no longer match this ComfyUI"
    listed = "; ".join(problem.message for problem in problems)
    raise WorkflowError(f"the bench workflow would be refused by ComfyUI, nothing was submitted: "
                        f"{listed}", hint)


# ------------------------------------------------------------------------------ pieces


def _combo_choices(input_spec: Any) -> Optional[list]:
    """Return the choices of a combo input spec, or None when it is not a combo."""
    if not isinstance(input_spec, (list, tuple)) or not input_spec:
        return None
    head = input_spec[0]
    if isinstance(head, list):
        return head
    if head == "COMBO" and len(input_spec) > 1 and isinstance(input_spec[1], dict):
        return list(input_spec[1].get("options") or [])
    return None


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _check_input(workflow: Mapping[str, Any], object_info: Mapping[str, Any], where: str,
                 name: str, input_spec: Any, value: Any) -> Optional[tuple[str, str]]:
    """Return (kind, message) when ``value`` does not fit ``input_spec``, else None."""
    choices = _combo_choices(input_spec)
    kind = input_spec[0] if isinstance(input_spec, (list, tuple)) and input_spec else None
    options = input_spec[1] if (isinstance(input_spec, (list, tuple)) and len(input_spec) > 1
                                and isinstance(input_spec[1], dict)) else {}
    if _is_link(value):
        return _check_link(workflow, object_info, where, name, kind, value)
    if choices is not None:
        if value in choices:
            return None
        listed = ", ".join(map(str, choices[:20])) + (f" ... ({len(choices)} in all)"
                                                      if len(choices) > 20 else "")
        if name in MODEL_INPUT_FOLDERS:
            return ("missing_model",
                    f"{where}: model file {value!r} is not on the node ({name} is read from "
                    f"{MODEL_INPUT_FOLDERS[name]}; ComfyUI lists: {listed or 'nothing'})")
        return "bad_value", f"{where}: {name} {value!r} is not one of: {listed}"
    if kind in LINK_TYPES:
        return "bad_link", f"{where}: {name} must be a link to a {kind} output, got {value!r}"
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (kind == "INT" and isinstance(value, float) and not value.is_integer()):
            return "bad_value", f"{where}: {name} must be {kind}, got {value!r}"
        if "min" in options and value < options["min"]:
            return "bad_value", f"{where}: {name} {value} is below the minimum {options['min']}"
        if "max" in options and value > options["max"]:
            return "bad_value", f"{where}: {name} {value} is above the maximum {options['max']}"
    if kind == "STRING" and not isinstance(value, str):
        return "bad_value", f"{where}: {name} must be a string, got {value!r}"
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return "bad_value", f"{where}: {name} must be true or false, got {value!r}"
    return None


def _check_link(workflow: Mapping[str, Any], object_info: Mapping[str, Any], where: str,
                name: str, kind: Any, value: list) -> Optional[tuple[str, str]]:
    source_id, slot = value
    source = workflow.get(source_id)
    if source is None:
        return "bad_link", f"{where}: {name} links to node {source_id!r}, which does not exist"
    source_class = str(source.get("class_type"))
    source_info = object_info.get(source_class)
    if not source_info:
        return None  # reported as a missing class on the source node
    produced = list(source_info.get("output") or [])
    if not isinstance(slot, int) or not 0 <= slot < len(produced):
        return ("bad_link", f"{where}: {name} links to output {slot!r} of node {source_id} "
                            f"({source_class}), which has {len(produced)} output(s)")
    if isinstance(kind, str) and kind != "*" and produced[slot] != kind:
        return ("bad_link", f"{where}: {name} wants {kind}, but node {source_id} ({source_class}) "
                            f"output {slot} is {produced[slot]}")
    return None
