"""Every job checked against a node's ``/object_info`` before anything is queued."""

from __future__ import annotations

import pytest

from provisioner.batch.checks import check_jobs
from provisioner.batch.sweep import expand_jobs, parse_set
from provisioner.core.errors import WorkflowError
from tests.unit.batch.cases import flux, object_info


def with_lora(lora: str = "style.safetensors") -> dict:
    workflow = flux()
    workflow["11"] = {"class_type": "LoraLoader", "inputs": {
        "model": ["1", 0], "clip": ["2", 0], "lora_name": lora, "strength_model": 1.0,
        "strength_clip": 1.0}}
    workflow["8"]["inputs"]["model"] = ["11", 0]
    return workflow


def refusal(workflows: list, info: dict) -> WorkflowError:
    with pytest.raises(WorkflowError) as raised:
        check_jobs("n1", workflows, info)
    return raised.value


def test_jobs_the_node_can_run_pass():
    check_jobs("n1", [flux(), with_lora()], object_info(loras=["style.safetensors"]))


def test_a_known_custom_node_names_its_repository():
    workflow = flux()
    workflow["11"] = {"class_type": "LoadFluxLora", "inputs": {}}
    error = refusal([workflow], object_info())
    assert error.message == ("n1 cannot run every job, nothing was queued: "
                             "node 11: ComfyUI has no node class 'LoadFluxLora'")
    assert error.hint.startswith("it comes from https://github.com/XLabs-AI/x-flux-comfyui: add "
                                 "custom_nodes: [{repo: ..., ref: ...}] in node.yaml")
    assert "`provision up NODE.yaml`" in error.hint


def test_an_unknown_custom_node_says_to_add_the_one_that_provides_it():
    workflow = flux()
    workflow["11"] = {"class_type": "MysteryNode", "inputs": {}}
    error = refusal([workflow], object_info())
    assert "'MysteryNode'" in error.message
    assert error.hint.startswith("add the custom node that provides it to custom_nodes: ")


def test_missing_gguf_classes_point_at_provision_up():
    error = refusal([flux()], object_info(gguf=False))
    assert "'UnetLoaderGGUF'" in error.message and "'DualCLIPLoaderGGUF'" in error.message
    assert error.hint.startswith("it comes from ComfyUI-GGUF, which `provision up NODE.yaml` installs")


@pytest.mark.parametrize(("node_id", "name", "field"), [
    ("11", "lora_name", "loras: (a {repo, file} on the Hub, or {url, sha256})"),
    ("1", "unet_name", "model: / quality: (the Flux files `up` plans)"),
    ("3", "vae_name", "model: (the Flux VAE `up` plans)"),
])
def test_a_missing_model_file_names_the_file_and_the_node_yaml_field(node_id, name, field):
    workflow = with_lora()
    workflow[node_id]["inputs"][name] = "gone.safetensors"
    error = refusal([workflow], object_info(loras=["style.safetensors"]))
    assert error.message.startswith(f"n1 cannot run every job, nothing was queued: node {node_id} (")
    assert f"model file 'gone.safetensors' is not on the node ({name} is read from models/" in error.message
    assert error.hint == f"add the file with {field} in node.yaml, then run `provision up NODE.yaml`"


def test_a_missing_controlnet_names_the_controlnet_field():
    workflow = flux()
    workflow["11"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "canny.safetensors"}}
    info = object_info()
    info["ControlNetLoader"] = {"input": {"required": {"control_net_name": [["depth.safetensors"]]}},
                                "output": ["CONTROL_NET"], "output_node": False}
    error = refusal([workflow], info)
    assert "'canny.safetensors'" in error.message
    assert error.hint.startswith("add the file with controlnet: ")


def test_the_count_says_how_many_jobs_would_fail():
    workflow = with_lora()
    jobs = expand_jobs(workflow, [[parse_set("11.lora_name=a.safetensors,gone.safetensors,b.safetensors",
                                             workflow)]])
    error = refusal([job.workflow for job in jobs], object_info(loras=["a.safetensors", "b.safetensors"]))
    assert error.message.startswith("n1 cannot run 1 of 3 jobs, nothing was queued: node 11 (LoraLoader): "
                                    "model file 'gone.safetensors' is not on the node")


def test_more_than_four_problems_are_counted_not_listed():
    workflows = [with_lora(f"gone-{number}.safetensors") for number in range(6)]
    error = refusal(workflows, object_info())
    assert error.message.count("model file 'gone-") == 4
    assert error.message.endswith("; and 2 more")


def test_a_swept_input_the_class_lacks_is_refused_with_the_close_name():
    from provisioner.batch.checks import check_targets

    info = object_info()
    with pytest.raises(WorkflowError) as caught:
        check_targets("m4", flux(), ["8.step"], info)
    assert "m4: 8.step: KSampler has no input 'step' (did you mean 'steps'?)" in str(caught.value)
    assert "steps" in caught.value.hint and "seed" in caught.value.hint
    check_targets("m4", flux(), ["8.steps", "4.text"], info)  # real inputs pass
