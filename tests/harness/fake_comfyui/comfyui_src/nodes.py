"""STAND-IN of ComfyUI's nodes.py: the core node classes a Flux workflow uses, and the loader of
custom_nodes/. Input specs (types, defaults, ranges, combo lists) follow ComfyUI v0.3.64; the
node functions only pass small descriptors along, and SaveImage writes a real PNG.
"""

import importlib.util
import json
import logging
import os
import struct
import sys
import time
import traceback
import zlib

import comfy.utils
import folder_paths

MAX_RESOLUTION = 16384
SEED_MAX = 0xFFFFFFFFFFFFFFFF

SAMPLERS = [
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
]
SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
              "linear_quadratic", "kl_optimal"]
CLIP_TYPES = ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
              "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image"]
DUAL_CLIP_TYPES = ["sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image"]


class InterruptProcessingException(Exception):
    pass


_interrupted = False


def interrupt_processing(value=True):
    global _interrupted
    _interrupted = value


def processing_interrupted():
    return _interrupted


class Context:
    """What a running node may use: progress reports and the interrupt check (set by execution)."""

    progress = staticmethod(lambda value, total: None)


# What macOS prints (then SIGABRT) when a Metal buffer is too small: ComfyUI-GGUF issue #107.
MPS_ASSERTION = (
    "/AppleInternal/Library/BuildRoots/5a8a3fcc-55cb-11ef-848e-8a553ba56670/Library/Caches/com.apple.xbs/"
    "Sources/MetalPerformanceShaders/MPSCore/Types/MPSNDArray.mm:891: failed assertion `[MPSNDArray, "
    "initWithBufferImpl:offset:descriptor:isForNDArrayAlias:isUserBuffer:] Error: buffer is not large enough. "
    "Must be 63700992 bytes\n'\n"
)


def _mps_abort():
    """FAKE_COMFYUI_MPS_ABORT=1: the Metal assertion on stderr (fd 2, as the OS writes it), then SIGABRT."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:  # no core file in the checkout (macOS writes a crash report instead)
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    except (ImportError, OSError, ValueError):
        pass
    os.write(2, MPS_ASSERTION.encode("utf-8"))
    os.abort()


def _sampler_steps(steps):
    """Sleep per step like a (very fast) sampler; report progress; honour /interrupt."""
    delay = float(os.environ.get("FAKE_COMFYUI_STEP_SECONDS", "0.02"))
    for i in range(1, steps + 1):
        if processing_interrupted():
            interrupt_processing(False)
            raise InterruptProcessingException()
        if i == 1 and os.environ.get("FAKE_COMFYUI_MPS_ABORT") == "1":
            _mps_abort()
        time.sleep(delay)
        Context.progress(i, steps)


def _load(folder, name):
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        raise FileNotFoundError("Model in folder '{}' with filename '{}' not found.".format(folder, name))
    return comfy.utils.load_model_file(path)


# ---------------------------------------------------------------- loaders

class UNETLoader:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "unet_name": (folder_paths.get_filename_list("diffusion_models"),),
            "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"],),
        }}
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_unet"
    CATEGORY = "advanced/loaders"

    def load_unet(self, unet_name, weight_dtype):
        info = _load("diffusion_models", unet_name)
        return ({"kind": "model", "file": unet_name, "info": info},)


class CLIPLoader:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "clip_name": (folder_paths.get_filename_list("text_encoders"),),
            "type": (CLIP_TYPES,),
        }, "optional": {"device": (["default", "cpu"], {"advanced": True})}}
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    CATEGORY = "advanced/loaders"

    def load_clip(self, clip_name, type="stable_diffusion", device="default"):
        return ({"kind": "clip", "files": [_load("text_encoders", clip_name)["path"]]},)


class DualCLIPLoader:
    @classmethod
    def INPUT_TYPES(s):
        names = folder_paths.get_filename_list("text_encoders")
        return {"required": {
            "clip_name1": (names,),
            "clip_name2": (names,),
            "type": (DUAL_CLIP_TYPES,),
        }, "optional": {"device": (["default", "cpu"], {"advanced": True})}}
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    CATEGORY = "advanced/loaders"

    def load_clip(self, clip_name1, clip_name2, type, device="default"):
        files = [_load("text_encoders", n)["path"] for n in (clip_name1, clip_name2)]
        return ({"kind": "clip", "files": files},)


class VAELoader:
    @staticmethod
    def vae_list():
        return folder_paths.get_filename_list("vae") + ["pixel_space"]

    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"vae_name": (s.vae_list(),)}}
    RETURN_TYPES = ("VAE",)
    FUNCTION = "load_vae"
    CATEGORY = "loaders"

    def load_vae(self, vae_name):
        if vae_name == "pixel_space":
            return ({"kind": "vae", "file": None},)
        return ({"kind": "vae", "file": _load("vae", vae_name)["path"]},)


class LoraLoaderModelOnly:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "model": ("MODEL",),
            "lora_name": (folder_paths.get_filename_list("loras"),),
            "strength_model": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}),
        }}
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_lora_model_only"
    CATEGORY = "loaders"

    def load_lora_model_only(self, model, lora_name, strength_model):
        _load("loras", lora_name)
        return (dict(model, lora=lora_name),)


class ControlNetLoader:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"control_net_name": (folder_paths.get_filename_list("controlnet"),)}}
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"
    CATEGORY = "loaders"

    def load_controlnet(self, control_net_name):
        return ({"kind": "controlnet", "file": _load("controlnet", control_net_name)["path"]},)


# ---------------------------------------------------------------- conditioning / latents

class CLIPTextEncode:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "clip": ("CLIP",),
        }}
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "conditioning"

    def encode(self, clip, text):
        return ({"kind": "conditioning", "text": text, "guidance": None},)


class CLIPTextEncodeFlux:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "clip": ("CLIP",),
            "clip_l": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "t5xxl": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "guidance": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1}),
        }}
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "advanced/conditioning/flux"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_flux"

    def encode(self, clip, clip_l, t5xxl, guidance):
        return ({"kind": "conditioning", "text": t5xxl, "guidance": guidance},)


class FluxGuidance:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "conditioning": ("CONDITIONING",),
            "guidance": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1}),
        }}
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "advanced/conditioning/flux"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_flux"

    def append(self, conditioning, guidance):
        return (dict(conditioning, guidance=guidance),)


class EmptyLatentImage:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "width": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
            "height": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
        }}
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"
    CATEGORY = "latent"

    def generate(self, width, height, batch_size=1):
        return ({"kind": "latent", "width": width, "height": height, "batch_size": batch_size, "seed": None},)


class EmptySD3LatentImage(EmptyLatentImage):
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "width": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
            "height": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
        }}
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_sd3"
    CATEGORY = "latent/sd3"


class ModelSamplingFlux:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "model": ("MODEL",),
            "max_shift": ("FLOAT", {"default": 1.15, "min": 0.0, "max": 100.0, "step": 0.01}),
            "base_shift": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 100.0, "step": 0.01}),
            "width": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
            "height": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
        }}
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_model_advanced"

    def patch(self, model, max_shift, base_shift, width, height):
        return (dict(model, shift=(max_shift, base_shift)),)


# ---------------------------------------------------------------- sampling

def _sample(model, latent, seed, steps):
    _sampler_steps(steps)
    return dict(latent, seed=seed, model=model, steps=steps)


class KSampler:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "model": ("MODEL",),
            "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "sampler_name": (SAMPLERS,),
            "scheduler": (SCHEDULERS,),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "latent_image": ("LATENT",),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "sampling"

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
               denoise=1.0):
        return (_sample(model, latent_image, seed, steps),)


class RandomNoise:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "noise_seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}),
        }}
    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"
    CATEGORY = "sampling/custom_sampling/noise"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_custom_sampler"

    def get_noise(self, noise_seed):
        return ({"kind": "noise", "seed": noise_seed},)


class BasicGuider:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"model": ("MODEL",), "conditioning": ("CONDITIONING",)}}
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"
    CATEGORY = "sampling/custom_sampling/guiders"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_custom_sampler"

    def get_guider(self, model, conditioning):
        return ({"kind": "guider", "model": model, "conditioning": conditioning},)


class KSamplerSelect:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"sampler_name": (SAMPLERS,)}}
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    CATEGORY = "sampling/custom_sampling/samplers"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_custom_sampler"

    def get_sampler(self, sampler_name):
        return ({"kind": "sampler", "name": sampler_name},)


class BasicScheduler:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "model": ("MODEL",),
            "scheduler": (SCHEDULERS,),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_custom_sampler"

    def get_sigmas(self, model, scheduler, steps, denoise):
        return ({"kind": "sigmas", "steps": steps},)


class SamplerCustomAdvanced:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "noise": ("NOISE",),
            "guider": ("GUIDER",),
            "sampler": ("SAMPLER",),
            "sigmas": ("SIGMAS",),
            "latent_image": ("LATENT",),
        }}
    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("output", "denoised_output")
    FUNCTION = "sample"
    CATEGORY = "sampling/custom_sampling"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_custom_sampler"

    def sample(self, noise, guider, sampler, sigmas, latent_image):
        out = _sample(guider["model"], latent_image, noise["seed"], sigmas["steps"])
        return (out, out)


# ---------------------------------------------------------------- images

class VAEDecode:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"samples": ("LATENT",), "vae": ("VAE",)}}
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"
    CATEGORY = "latent"

    def decode(self, vae, samples):
        model = samples.get("model") or {}
        black = os.environ.get("FAKE_COMFYUI_BLACK_IMAGE") == "1" or "black" in str(model.get("file", "")).lower()
        return ({"kind": "image", "width": samples["width"], "height": samples["height"],
                 "batch_size": samples["batch_size"], "seed": samples.get("seed") or 0, "black": black},)


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path, width, height, seed, black, text=None):
    """Write an 8-bit RGB PNG: a seed-dependent gradient, or all black."""
    if black:
        row = b"\x00" + bytes(3 * width)
        raw = row * height
    else:
        base = bytearray(3 * width)
        for x in range(width):
            base[3 * x] = (x * 255) // max(width - 1, 1)
            base[3 * x + 1] = (x * 7 + seed) & 0xFF
            base[3 * x + 2] = 255 - base[3 * x]
        base = bytes(base)
        rows = []
        for y in range(height):
            shift = (y * 255 // max(height - 1, 1) + seed) & 0xFF
            table = bytes(((v + shift) % 224) + 16 for v in range(256))
            rows.append(b"\x00" + base.translate(table))
        raw = b"".join(rows)
    chunks = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    for key, value in (text or {}).items():
        chunks.append(_png_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace")))
    chunks.append(_png_chunk(b"IDAT", zlib.compress(raw, 4)))
    chunks.append(_png_chunk(b"IEND", b""))
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"".join(chunks))
    os.replace(tmp, path)


class SaveImage:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The images to save."}),
            "filename_prefix": ("STRING", {"default": "ComfyUI", "tooltip": "The prefix for the file to save."}),
        }, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"
    DESCRIPTION = "Saves the input images to your ComfyUI output directory."

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        output_dir = folder_paths.get_output_directory()
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, output_dir, images["width"], images["height"])
        results = []
        for i in range(images["batch_size"]):
            file = "{}_{:05}_.png".format(filename, counter)
            text = {"prompt": json.dumps(prompt)} if prompt is not None else None
            write_png(os.path.join(folder, file), images["width"], images["height"],
                      (images["seed"] + i) & 0xFFFFFFFF, images["black"], text)
            results.append({"filename": file, "subfolder": subfolder, "type": "output"})
            counter += 1
        return {"ui": {"images": results}}


NODE_CLASS_MAPPINGS = {
    "UNETLoader": UNETLoader,
    "CLIPLoader": CLIPLoader,
    "DualCLIPLoader": DualCLIPLoader,
    "VAELoader": VAELoader,
    "LoraLoaderModelOnly": LoraLoaderModelOnly,
    "ControlNetLoader": ControlNetLoader,
    "CLIPTextEncode": CLIPTextEncode,
    "CLIPTextEncodeFlux": CLIPTextEncodeFlux,
    "FluxGuidance": FluxGuidance,
    "EmptyLatentImage": EmptyLatentImage,
    "EmptySD3LatentImage": EmptySD3LatentImage,
    "ModelSamplingFlux": ModelSamplingFlux,
    "KSampler": KSampler,
    "RandomNoise": RandomNoise,
    "BasicGuider": BasicGuider,
    "KSamplerSelect": KSamplerSelect,
    "BasicScheduler": BasicScheduler,
    "SamplerCustomAdvanced": SamplerCustomAdvanced,
    "VAEDecode": VAEDecode,
    "SaveImage": SaveImage,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "UNETLoader": "Load Diffusion Model",
    "CLIPLoader": "Load CLIP",
    "DualCLIPLoader": "DualCLIPLoader",
    "VAELoader": "Load VAE",
    "LoraLoaderModelOnly": "LoraLoaderModelOnly",
    "ControlNetLoader": "Load ControlNet Model",
    "CLIPTextEncode": "CLIP Text Encode (Prompt)",
    "EmptyLatentImage": "Empty Latent Image",
    "KSampler": "KSampler",
    "VAEDecode": "VAE Decode",
    "SaveImage": "Save Image",
}
# Nodes from comfy_extras report display_name null (FACTS.md).
for _name, _cls in NODE_CLASS_MAPPINGS.items():
    if getattr(_cls, "RELATIVE_PYTHON_MODULE", "nodes").startswith("comfy_extras"):
        NODE_DISPLAY_NAME_MAPPINGS.setdefault(_name, None)


def load_custom_node(module_path):
    """Import one custom node (a package directory or a .py file); True when it loaded."""
    module_name = os.path.basename(module_path)
    if os.path.isfile(module_path):
        module_name = os.path.splitext(module_name)[0]
        spec = importlib.util.spec_from_file_location(module_name, module_path)
    else:
        spec = importlib.util.spec_from_file_location(
            module_name, os.path.join(module_path, "__init__.py"), submodule_search_locations=[module_path])
    try:
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except Exception as e:
        logging.warning(traceback.format_exc())
        logging.warning("Cannot import {} module for custom nodes: {}".format(module_path, e))
        return False
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
    if mappings is None:
        logging.warning("Skip {} module for custom nodes due to the lack of NODE_CLASS_MAPPINGS.".format(module_path))
        return False
    for name, cls in mappings.items():
        if name not in NODE_CLASS_MAPPINGS:
            cls.RELATIVE_PYTHON_MODULE = "custom_nodes.{}".format(module_name)
            NODE_CLASS_MAPPINGS[name] = cls
    NODE_DISPLAY_NAME_MAPPINGS.update(getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", {}) or {})
    return True


def init_extra_nodes(disable_all=False):
    """Load custom_nodes/ as upstream does: import each package/.py, log the import times."""
    if disable_all:
        logging.info("Skipping loading of custom nodes")
        return
    times = []
    for custom_node_path in folder_paths.get_folder_paths("custom_nodes"):
        if not os.path.isdir(custom_node_path):
            continue
        for entry in sorted(os.listdir(custom_node_path)):
            module_path = os.path.join(custom_node_path, entry)
            if os.path.isfile(module_path) and not entry.endswith(".py"):
                continue
            if entry.endswith(".disabled") or entry == "__pycache__" or entry.startswith("."):
                continue
            if os.path.isdir(module_path) and not os.path.isfile(os.path.join(module_path, "__init__.py")):
                continue
            start = time.perf_counter()
            ok = load_custom_node(module_path)
            times.append((time.perf_counter() - start, module_path, ok))
    if times:
        logging.info("\nImport times for custom nodes:")
        for elapsed, path, ok in sorted(times):
            logging.info("{:6.1f} seconds{}: {}".format(elapsed, "" if ok else " (IMPORT FAILED)", path))
        logging.info("")
