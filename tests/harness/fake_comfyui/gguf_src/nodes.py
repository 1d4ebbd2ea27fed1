"""STAND-IN of ComfyUI-GGUF's nodes.py: the node names, inputs and folder keys of city96's
ComfyUI-GGUF (795e451), and loaders that only check the file (tests only).
"""

import logging

import comfy.utils
import folder_paths
import gguf  # noqa: F401  (upstream's loader imports it: no gguf, no nodes)
import nodes


def update_folder_names_and_paths(key, targets=()):
    # As upstream: the new key shares the folder list of the first existing target.
    base = folder_paths.folder_names_and_paths.get(key, ([], {}))
    base = base[0] if isinstance(base[0], (list, set, tuple)) else []
    target = next((x for x in targets if x in folder_paths.folder_names_and_paths), targets[0])
    orig, _ = folder_paths.folder_names_and_paths.get(target, ([], {}))
    folder_paths.folder_names_and_paths[key] = (orig or base, {".gguf"})
    if base and base != orig:
        logging.warning("Unknown file list already present on key {}: {}".format(key, base))


update_folder_names_and_paths("unet_gguf", ["diffusion_models", "unet"])
update_folder_names_and_paths("clip_gguf", ["text_encoders", "clip"])


def _load(folder, name):
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        raise FileNotFoundError("Model in folder '{}' with filename '{}' not found.".format(folder, name))
    return comfy.utils.load_model_file(path)


class UnetLoaderGGUF:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"unet_name": (folder_paths.get_filename_list("unet_gguf"),)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_unet"
    CATEGORY = "bootleg"
    TITLE = "Unet Loader (GGUF)"

    def load_unet(self, unet_name, dequant_dtype=None, patch_dtype=None, patch_on_device=None):
        info = _load("unet", unet_name)
        return ({"kind": "model", "file": unet_name, "info": info},)


class UnetLoaderGGUFAdvanced(UnetLoaderGGUF):
    @classmethod
    def INPUT_TYPES(s):
        dtypes = ["default", "target", "float32", "float16", "bfloat16"]
        return {"required": {
            "unet_name": (folder_paths.get_filename_list("unet_gguf"),),
            "dequant_dtype": (dtypes, {"default": "default"}),
            "patch_dtype": (dtypes, {"default": "default"}),
            "patch_on_device": ("BOOLEAN", {"default": False}),
        }}

    TITLE = "Unet Loader (GGUF/Advanced)"


class CLIPLoaderGGUF:
    @classmethod
    def INPUT_TYPES(s):
        base = nodes.CLIPLoader.INPUT_TYPES()
        return {"required": {"clip_name": (s.get_filename_list(),), "type": base["required"]["type"]}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    CATEGORY = "bootleg"
    TITLE = "CLIPLoader (GGUF)"

    @classmethod
    def get_filename_list(s):
        files = []
        files += folder_paths.get_filename_list("clip")
        files += folder_paths.get_filename_list("clip_gguf")
        return sorted(files)

    def load_clip(self, clip_name, type="stable_diffusion"):
        return ({"kind": "clip", "files": [_load("clip", clip_name)["path"]]},)


class DualCLIPLoaderGGUF(CLIPLoaderGGUF):
    @classmethod
    def INPUT_TYPES(s):
        base = nodes.DualCLIPLoader.INPUT_TYPES()
        file_options = (s.get_filename_list(),)
        return {"required": {"clip_name1": file_options, "clip_name2": file_options,
                             "type": base["required"]["type"]}}

    TITLE = "DualCLIPLoader (GGUF)"

    def load_clip(self, clip_name1, clip_name2, type):
        return ({"kind": "clip", "files": [_load("clip", n)["path"] for n in (clip_name1, clip_name2)]},)


class TripleCLIPLoaderGGUF(CLIPLoaderGGUF):
    @classmethod
    def INPUT_TYPES(s):
        file_options = (s.get_filename_list(),)
        return {"required": {"clip_name1": file_options, "clip_name2": file_options, "clip_name3": file_options}}

    TITLE = "TripleCLIPLoader (GGUF)"

    def load_clip(self, clip_name1, clip_name2, clip_name3, type="sd3"):
        return ({"kind": "clip", "files": [_load("clip", n)["path"] for n in (clip_name1, clip_name2, clip_name3)]},)


class QuadrupleCLIPLoaderGGUF(CLIPLoaderGGUF):
    @classmethod
    def INPUT_TYPES(s):
        file_options = (s.get_filename_list(),)
        return {"required": {"clip_name1": file_options, "clip_name2": file_options, "clip_name3": file_options,
                             "clip_name4": file_options}}

    TITLE = "QuadrupleCLIPLoader (GGUF)"

    def load_clip(self, clip_name1, clip_name2, clip_name3, clip_name4, type="stable_diffusion"):
        names = (clip_name1, clip_name2, clip_name3, clip_name4)
        return ({"kind": "clip", "files": [_load("clip", n)["path"] for n in names]},)


NODE_CLASS_MAPPINGS = {
    "UnetLoaderGGUF": UnetLoaderGGUF,
    "CLIPLoaderGGUF": CLIPLoaderGGUF,
    "DualCLIPLoaderGGUF": DualCLIPLoaderGGUF,
    "TripleCLIPLoaderGGUF": TripleCLIPLoaderGGUF,
    "QuadrupleCLIPLoaderGGUF": QuadrupleCLIPLoaderGGUF,
    "UnetLoaderGGUFAdvanced": UnetLoaderGGUFAdvanced,
}
