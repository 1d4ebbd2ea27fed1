"""Workflows and ``/object_info`` as the batch tests use them, after FACTS.md's "Flux
text-to-image workflow" (ComfyUI v0.3.64 + ComfyUI-GGUF)."""

from __future__ import annotations

import copy

from provisioner.batch.sweep import Job

UNET = "flux1-dev-Q8_0.gguf"
CLIP_L = "clip_l.safetensors"
T5 = "t5-v1_1-xxl-encoder-Q8_0.gguf"
VAE = "ae.safetensors"

# FACTS.md's minimal Flux dev workflow (KSampler form), verbatim.
_FLUX = {
    "1": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": UNET}},
    "2": {"class_type": "DualCLIPLoaderGGUF", "inputs": {"clip_name1": CLIP_L, "clip_name2": T5,
                                                          "type": "flux"}},
    "3": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
    "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in the snow", "clip": ["2", 0]}},
    "5": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["4", 0], "guidance": 3.5}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 0]}},
    "7": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
    "8": {"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "seed": 42, "steps": 20, "cfg": 1.0, "sampler_name": "euler",
        "scheduler": "simple", "positive": ["5", 0], "negative": ["6", 0], "latent_image": ["7", 0],
        "denoise": 1.0}},
    "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["3", 0]}},
    "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "bench/flux-dev"}},
}

# FACTS.md's custom-sampler form: CLIPTextEncodeFlux -> BasicGuider -> SamplerCustomAdvanced.
_CUSTOM = {
    "1": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": UNET}},
    "2": {"class_type": "DualCLIPLoaderGGUF", "inputs": {"clip_name1": CLIP_L, "clip_name2": T5,
                                                          "type": "flux"}},
    "3": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
    "4": {"class_type": "CLIPTextEncodeFlux", "inputs": {"clip": ["2", 0], "clip_l": "a fox",
                                                          "t5xxl": "a fox", "guidance": 3.5}},
    "5": {"class_type": "ModelSamplingFlux", "inputs": {"model": ["1", 0], "max_shift": 1.15,
                                                         "base_shift": 0.5, "width": 1024, "height": 1024}},
    "6": {"class_type": "RandomNoise", "inputs": {"noise_seed": 7}},
    "7": {"class_type": "BasicGuider", "inputs": {"model": ["5", 0], "conditioning": ["4", 0]}},
    "8": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
    "9": {"class_type": "BasicScheduler", "inputs": {"model": ["5", 0], "scheduler": "simple",
                                                      "steps": 20, "denoise": 1.0}},
    "10": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
    "11": {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["6", 0], "guider": ["7", 0], "sampler": ["8", 0], "sigmas": ["9", 0],
        "latent_image": ["10", 0]}},
    "12": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["3", 0]}},
    "13": {"class_type": "SaveImage", "inputs": {"images": ["12", 0], "filename_prefix": "flux"}},
}


def flux() -> dict:
    """A fresh copy of the KSampler workflow (tests may change it)."""
    return copy.deepcopy(_FLUX)


def custom() -> dict:
    """A fresh copy of the SamplerCustomAdvanced workflow."""
    return copy.deepcopy(_CUSTOM)


def job(index: int) -> Job:
    return Job(index=index, key=f"k{index}", values=(), workflow={})


# -- /object_info, as ComfyUI serves it, for the classes above --------------------------------


def _node(required: dict, output: list, output_node: bool = False) -> dict:
    return {"input": {"required": required}, "output": output, "output_node": output_node}


def _float(default: float) -> list:
    return ["FLOAT", {"default": default, "min": 0.0, "max": 100.0, "step": 0.1}]


def object_info(unets=(UNET,), clips=(CLIP_L, T5), vaes=(VAE,), loras=(), gguf: bool = True) -> dict:
    """``/object_info`` for FACTS.md's classes (plus LoraLoader), listing these model files."""
    size = ["INT", {"default": 1024, "min": 16, "max": 16384, "step": 16}]
    info = {
        "VAELoader": _node({"vae_name": [list(vaes) + ["pixel_space"]]}, ["VAE"]),
        "CLIPTextEncode": _node({"text": ["STRING", {"multiline": True}], "clip": ["CLIP"]},
                                ["CONDITIONING"]),
        "FluxGuidance": _node({"conditioning": ["CONDITIONING"], "guidance": _float(3.5)},
                              ["CONDITIONING"]),
        "EmptySD3LatentImage": _node({"width": size, "height": size,
                                      "batch_size": ["INT", {"default": 1, "min": 1, "max": 4096}]},
                                     ["LATENT"]),
        "KSampler": _node({"model": ["MODEL"], "seed": ["INT", {"default": 0, "min": 0, "max": 2**64 - 1}],
                           "steps": ["INT", {"default": 20, "min": 1, "max": 10000}], "cfg": _float(8.0),
                           "sampler_name": [["euler", "heun"]], "scheduler": [["simple", "karras"]],
                           "positive": ["CONDITIONING"], "negative": ["CONDITIONING"],
                           "latent_image": ["LATENT"],
                           "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0}]}, ["LATENT"]),
        "VAEDecode": _node({"samples": ["LATENT"], "vae": ["VAE"]}, ["IMAGE"]),
        "SaveImage": _node({"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
                           [], output_node=True),
        "LoraLoader": _node({"model": ["MODEL"], "clip": ["CLIP"], "lora_name": [list(loras)],
                             "strength_model": _float(1.0), "strength_clip": _float(1.0)},
                            ["MODEL", "CLIP"]),
    }
    if gguf:
        info["UnetLoaderGGUF"] = _node({"unet_name": [list(unets)]}, ["MODEL"])
        info["DualCLIPLoaderGGUF"] = _node({"clip_name1": [list(clips)], "clip_name2": [list(clips)],
                                            "type": [["sdxl", "sd3", "flux"]]}, ["CLIP"])
    return info
