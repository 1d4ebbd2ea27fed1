"""Bench workflows: rendering per model and quality, checked against node classes and inputs
transcribed from FACTS.md ("Flux text-to-image workflow", read from a running ComfyUI
v0.3.64 + ComfyUI-GGUF)."""

from __future__ import annotations

import copy

import pytest

from provisioner.comfy.workflows import (
    WorkflowFiles,
    check_workflow,
    node_ids,
    render_workflow,
    validate_workflow,
    workflow_classes,
)
from provisioner.core.errors import WorkflowError
from provisioner.install.catalog import QUALITIES, load_catalog

# -- object_info as ComfyUI serves it, from FACTS.md's table ------------------------------

SAMPLERS = ("euler euler_cfg_pp euler_ancestral euler_ancestral_cfg_pp heun heunpp2 dpm_2 "
            "dpm_2_ancestral lms dpm_fast dpm_adaptive dpmpp_2s_ancestral dpmpp_2s_ancestral_cfg_pp "
            "dpmpp_sde dpmpp_sde_gpu dpmpp_2m dpmpp_2m_cfg_pp dpmpp_2m_sde dpmpp_2m_sde_gpu "
            "dpmpp_2m_sde_heun dpmpp_2m_sde_heun_gpu dpmpp_3m_sde dpmpp_3m_sde_gpu ddpm lcm ipndm "
            "ipndm_v deis res_multistep res_multistep_cfg_pp res_multistep_ancestral "
            "res_multistep_ancestral_cfg_pp gradient_estimation gradient_estimation_cfg_pp er_sde "
            "seeds_2 seeds_3 sa_solver sa_solver_pece ddim uni_pc uni_pc_bh2").split()
SCHEDULERS = ("simple sgm_uniform karras exponential ddim_uniform beta normal linear_quadratic "
              "kl_optimal").split()
DUAL_TYPES = ["sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image"]
CLIP_TYPES = ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart",
              "cosmos", "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image",
              "hunyuan_image"]
DTYPES = ["default", "target", "float32", "float16", "bfloat16"]


def node(required, output, optional=None, output_node=False):
    return {"input": {"required": required, **({"optional": optional} if optional else {})},
            "output": output, "output_node": output_node}


def object_info(unet_dir=(), clip_dir=(), vae_dir=(), gguf=True) -> dict:
    """Build /object_info for the FACTS.md classes, with combos listing these files."""
    gguf_unets = [f for f in unet_dir if f.endswith(".gguf")]
    other_unets = [f for f in unet_dir if not f.endswith(".gguf")]
    clips = list(clip_dir)
    core_clips = [f for f in clips if not f.endswith(".gguf")]
    info = {
        "UNETLoader": node({"unet_name": [other_unets],
                            "weight_dtype": [["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]]},
                           ["MODEL"]),
        "DualCLIPLoader": node({"clip_name1": [core_clips], "clip_name2": [core_clips],
                                "type": [DUAL_TYPES]}, ["CLIP"],
                               optional={"device": [["default", "cpu"], {"advanced": True}]}),
        "VAELoader": node({"vae_name": [list(vae_dir) + ["pixel_space"]]}, ["VAE"]),
        "CLIPTextEncode": node({"text": ["STRING", {"multiline": True, "dynamicPrompts": True}],
                                "clip": ["CLIP"]}, ["CONDITIONING"]),
        "CLIPTextEncodeFlux": node({"clip": ["CLIP"], "clip_l": ["STRING", {"multiline": True}],
                                    "t5xxl": ["STRING", {"multiline": True}],
                                    "guidance": ["FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0,
                                                           "step": 0.1}]}, ["CONDITIONING"]),
        "FluxGuidance": node({"conditioning": ["CONDITIONING"],
                              "guidance": ["FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0,
                                                     "step": 0.1}]}, ["CONDITIONING"]),
        "EmptySD3LatentImage": node({"width": ["INT", {"default": 1024, "min": 16, "max": 16384, "step": 16}],
                                     "height": ["INT", {"default": 1024, "min": 16, "max": 16384, "step": 16}],
                                     "batch_size": ["INT", {"default": 1, "min": 1, "max": 4096}]},
                                    ["LATENT"]),
        "KSampler": node({"model": ["MODEL"],
                          "seed": ["INT", {"default": 0, "min": 0, "max": 2**64 - 1}],
                          "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
                          "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0}],
                          "sampler_name": [SAMPLERS], "scheduler": [SCHEDULERS],
                          "positive": ["CONDITIONING"], "negative": ["CONDITIONING"],
                          "latent_image": ["LATENT"],
                          "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0}]}, ["LATENT"]),
        "VAEDecode": node({"samples": ["LATENT"], "vae": ["VAE"]}, ["IMAGE"]),
        "SaveImage": node({"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
                          [], output_node=True),
    }
    if gguf:
        info.update({
            "UnetLoaderGGUF": node({"unet_name": [gguf_unets]}, ["MODEL"]),
            "UnetLoaderGGUFAdvanced": node({"unet_name": [gguf_unets], "dequant_dtype": [DTYPES],
                                            "patch_dtype": [DTYPES],
                                            "patch_on_device": ["BOOLEAN", {"default": False}]}, ["MODEL"]),
            "DualCLIPLoaderGGUF": node({"clip_name1": [clips], "clip_name2": [clips],
                                        "type": [DUAL_TYPES]}, ["CLIP"]),
            "CLIPLoaderGGUF": node({"clip_name": [clips], "type": [CLIP_TYPES]}, ["CLIP"]),
        })
    return info


def files_of(model: str, quality: str) -> WorkflowFiles:
    catalog = load_catalog()
    names = {entry.role: entry.name for entry in catalog.tier_files(model, quality)}
    return WorkflowFiles(unet=names["unet"], t5=names["t5"], clip_l=names["clip_l"], vae=names["vae"])


def info_with(files: WorkflowFiles, **overrides) -> dict:
    dirs = {"unet_dir": [files.unet, "other.gguf"], "clip_dir": [files.clip_l, files.t5],
            "vae_dir": [files.vae]}
    dirs.update(overrides)
    return object_info(**dirs)


def by_class(workflow: dict, class_type: str) -> dict:
    (node_id,) = node_ids(workflow, [class_type])
    return workflow[node_id]["inputs"]


# -- rendering: every model and quality the catalog offers is accepted ------------------


@pytest.mark.parametrize("model", ["dev", "schnell"])
@pytest.mark.parametrize("quality", QUALITIES)
def test_each_model_and_quality_renders_a_workflow_the_node_accepts(model, quality):
    files = files_of(model, quality)
    workflow = render_workflow(model, files, seed=42)
    assert validate_workflow(workflow, info_with(files)) == []
    check_workflow(workflow, info_with(files))  # does not raise
    unet_loader = "UNETLoader" if quality == "bf16" else "UnetLoaderGGUF"
    assert by_class(workflow, unet_loader)["unet_name"] == files.unet
    clip_loader = "DualCLIPLoader" if quality == "bf16" else "DualCLIPLoaderGGUF"
    clip = by_class(workflow, clip_loader)
    assert (clip["clip_name1"], clip["clip_name2"], clip["type"]) == (files.clip_l, files.t5, "flux")
    assert by_class(workflow, "VAELoader")["vae_name"] == files.vae


def test_bf16_uses_the_core_loader_which_never_lists_gguf_files():
    files = files_of("dev", "bf16")
    workflow = render_workflow("dev", files, seed=1)
    assert by_class(workflow, "UNETLoader") == {"unet_name": "flux1-dev.safetensors",
                                                "weight_dtype": "default"}
    assert "UnetLoaderGGUF" not in workflow_classes(workflow)


def test_dev_follows_the_facts_workflow():
    workflow = render_workflow("dev", files_of("dev", "q8"), seed=7, prompt="a red fox in the snow")
    sampler = by_class(workflow, "KSampler")
    assert (sampler["seed"], sampler["steps"], sampler["cfg"], sampler["sampler_name"],
            sampler["scheduler"], sampler["denoise"]) == (7, 20, 1.0, "euler", "simple", 1.0)
    assert by_class(workflow, "EmptySD3LatentImage") == {"width": 1024, "height": 1024, "batch_size": 1}
    guidance = by_class(workflow, "FluxGuidance")
    assert guidance["guidance"] == 3.5
    assert workflow[sampler["positive"][0]]["class_type"] == "FluxGuidance"
    assert by_class(workflow, "SaveImage")["filename_prefix"] == "bench/flux-dev"
    texts = sorted(inputs["text"] for inputs in (workflow[i]["inputs"]
                                                 for i in node_ids(workflow, ["CLIPTextEncode"])))
    assert texts == ["", "a red fox in the snow"]


def test_schnell_takes_four_steps_and_no_guidance_node():
    workflow = render_workflow("schnell", files_of("schnell", "q4"), seed=3)
    assert by_class(workflow, "KSampler")["steps"] == 4
    assert "FluxGuidance" not in workflow_classes(workflow)


def test_only_the_seed_changes_between_runs():
    files = files_of("dev", "q8")
    first, second = (render_workflow("dev", files, seed=s, steps=5) for s in (100, 101))
    changed = [node_id for node_id in first if first[node_id] != second[node_id]]
    assert changed == node_ids(first, ["KSampler"])
    assert by_class(second, "KSampler")["seed"] == 101


def test_a_hostile_prompt_stays_one_string():
    prompt = 'a "quoted" }, "99": {"class_type": "X"}, {{ 7 * 7 }} </script>\nnew line \\ end'
    workflow = render_workflow("dev", files_of("dev", "q8"), seed=1, prompt=prompt,
                               filename_prefix='bench/"odd"')
    assert set(workflow) == {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}
    assert workflow["4"]["inputs"]["text"] == prompt
    assert by_class(workflow, "SaveImage")["filename_prefix"] == 'bench/"odd"'


# -- validation: what ComfyUI would refuse is caught before submission --------------------


def test_an_unknown_node_class_is_named():
    files = files_of("dev", "q8")
    workflow = render_workflow("dev", files, seed=1)
    workflow["8"]["class_type"] = "KSamplerX"
    problems = validate_workflow(workflow, info_with(files))
    assert [(p.node_id, p.kind) for p in problems] == [("8", "missing_class")]
    assert "KSamplerX" in problems[0].message


def test_a_missing_gguf_custom_node_says_so():
    files = files_of("dev", "q8")
    workflow = render_workflow("dev", files, seed=1)
    problems = validate_workflow(workflow, object_info([files.unet], [files.clip_l, files.t5],
                                                       [files.vae], gguf=False))
    assert {p.class_type for p in problems} == {"UnetLoaderGGUF", "DualCLIPLoaderGGUF"}
    assert all("ComfyUI-GGUF" in p.message for p in problems)
    with pytest.raises(WorkflowError) as raised:
        check_workflow(workflow, object_info([files.unet], [files.clip_l, files.t5], [files.vae],
                                             gguf=False))
    assert "ComfyUI-GGUF" in raised.value.hint


def test_a_model_file_not_on_the_node_is_a_clear_error():
    files = files_of("dev", "q8")
    workflow = render_workflow("dev", files, seed=1)
    info = info_with(files, unet_dir=["flux1-dev-Q4_K_S.gguf"])
    problems = validate_workflow(workflow, info)
    assert [(p.node_id, p.kind) for p in problems] == [("1", "missing_model")]
    assert "flux1-dev-Q8_0.gguf" in problems[0].message
    assert "models/unet" in problems[0].message and "flux1-dev-Q4_K_S.gguf" in problems[0].message
    with pytest.raises(WorkflowError) as raised:
        check_workflow(workflow, info, model="dev")
    assert "nothing was submitted" in str(raised.value)
    assert "provision up" in raised.value.hint


def test_a_missing_text_encoder_and_vae_are_each_named():
    files = files_of("schnell", "q8")
    workflow = render_workflow("schnell", files, seed=1)
    problems = validate_workflow(workflow, info_with(files, clip_dir=[files.clip_l], vae_dir=[]))
    messages = " | ".join(p.message for p in problems)
    assert {p.kind for p in problems} == {"missing_model"}
    assert files.t5 in messages and "models/clip" in messages
    assert "ae.safetensors" in messages and "models/vae" in messages


def test_a_missing_required_input_is_named():
    files = files_of("dev", "q8")
    workflow = render_workflow("dev", files, seed=1)
    del workflow["8"]["inputs"]["seed"]
    problems = validate_workflow(workflow, info_with(files))
    assert [(p.node_id, p.kind) for p in problems] == [("8", "missing_input")]
    assert "'seed'" in problems[0].message


def test_a_misspelled_input_shows_up_as_the_real_one_missing():
    files = files_of("dev", "q8")
    workflow = render_workflow("dev", files, seed=1)
    workflow["8"]["inputs"]["sampler"] = workflow["8"]["inputs"].pop("sampler_name")
    problems = validate_workflow(workflow, info_with(files))
    assert [p.kind for p in problems] == ["missing_input"]
    assert "sampler_name" in problems[0].message


@pytest.mark.parametrize("node_id, name, value, kind", [
    ("7", "width", 8, "bad_value"),  # below the minimum of 16
    ("8", "steps", "abc", "bad_value"),
    ("8", "sampler_name", "euler_x", "bad_value"),
    ("9", "vae", ["2", 0], "bad_link"),  # a CLIP where a VAE belongs
    ("9", "samples", ["42", 0], "bad_link"),  # no such node
    ("9", "samples", ["8", 3], "bad_link"),  # KSampler has one output
    ("10", "filename_prefix", 5, "bad_value"),
])
def test_bad_values_and_links_are_caught(node_id, name, value, kind):
    files = files_of("dev", "q8")
    workflow = render_workflow("dev", files, seed=1)
    workflow[node_id]["inputs"][name] = value
    problems = validate_workflow(workflow, info_with(files))
    assert [(p.node_id, p.kind) for p in problems] == [(node_id, kind)]
    assert name in problems[0].message


def test_a_workflow_without_an_output_node_is_refused():
    files = files_of("dev", "q8")
    workflow = render_workflow("dev", files, seed=1)
    del workflow["10"]
    assert [p.kind for p in validate_workflow(workflow, info_with(files))] == ["no_output"]


def test_the_newer_combo_spec_form_is_understood():
    files = files_of("dev", "q8")
    workflow = render_workflow("dev", files, seed=1)
    info = copy.deepcopy(info_with(files))
    info["UnetLoaderGGUF"]["input"]["required"]["unet_name"] = ["COMBO", {"options": ["x.gguf"]}]
    assert [p.kind for p in validate_workflow(workflow, info)] == ["missing_model"]
    info["UnetLoaderGGUF"]["input"]["required"]["unet_name"] = ["COMBO", {"options": [files.unet]}]
    assert validate_workflow(workflow, info) == []
