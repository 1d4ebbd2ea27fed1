"""STAND-IN of ComfyUI's folder_paths.py: model folder keys, listings and the save-path rule."""

import logging
import os
import time

supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}

base_path = os.path.dirname(os.path.realpath(__file__))
models_dir = os.path.join(base_path, "models")

folder_names_and_paths = {}


def _models(*names):
    return [os.path.join(models_dir, n) for n in names]


folder_names_and_paths["checkpoints"] = (_models("checkpoints"), supported_pt_extensions)
folder_names_and_paths["configs"] = (_models("configs"), [".yaml"])
folder_names_and_paths["loras"] = (_models("loras"), supported_pt_extensions)
folder_names_and_paths["vae"] = (_models("vae"), supported_pt_extensions)
folder_names_and_paths["text_encoders"] = (_models("text_encoders", "clip"), supported_pt_extensions)
folder_names_and_paths["diffusion_models"] = (_models("unet", "diffusion_models"), supported_pt_extensions)
folder_names_and_paths["clip_vision"] = (_models("clip_vision"), supported_pt_extensions)
folder_names_and_paths["style_models"] = (_models("style_models"), supported_pt_extensions)
folder_names_and_paths["embeddings"] = (_models("embeddings"), supported_pt_extensions)
folder_names_and_paths["diffusers"] = (_models("diffusers"), ["folder"])
folder_names_and_paths["vae_approx"] = (_models("vae_approx"), supported_pt_extensions)
folder_names_and_paths["controlnet"] = (_models("controlnet", "t2i_adapter"), supported_pt_extensions)
folder_names_and_paths["gligen"] = (_models("gligen"), supported_pt_extensions)
folder_names_and_paths["upscale_models"] = (_models("upscale_models"), supported_pt_extensions)
folder_names_and_paths["custom_nodes"] = ([os.path.join(base_path, "custom_nodes")], set())
folder_names_and_paths["hypernetworks"] = (_models("hypernetworks"), supported_pt_extensions)
folder_names_and_paths["photomaker"] = (_models("photomaker"), supported_pt_extensions)
folder_names_and_paths["classifiers"] = (_models("classifiers"), {""})
folder_names_and_paths["model_patches"] = (_models("model_patches"), supported_pt_extensions)
folder_names_and_paths["audio_encoders"] = (_models("audio_encoders"), supported_pt_extensions)

output_directory = os.path.join(base_path, "output")
temp_directory = os.path.join(base_path, "temp")
input_directory = os.path.join(base_path, "input")
user_directory = os.path.join(base_path, "user")


def map_legacy(folder_name):
    return {"unet": "diffusion_models", "clip": "text_encoders"}.get(folder_name, folder_name)


def set_output_directory(path):
    global output_directory
    output_directory = path


def set_input_directory(path):
    global input_directory
    input_directory = path


def set_temp_directory(path):
    global temp_directory
    temp_directory = path


def get_output_directory():
    return output_directory


def get_input_directory():
    return input_directory


def get_temp_directory():
    return temp_directory


def get_directory_by_type(type_name):
    return {"output": output_directory, "temp": temp_directory, "input": input_directory}.get(type_name)


def add_model_folder_path(folder_name, full_folder_path, is_default=False):
    folder_name = map_legacy(folder_name)
    if folder_name in folder_names_and_paths:
        paths = folder_names_and_paths[folder_name][0]
        if full_folder_path in paths:
            paths.remove(full_folder_path)
        if is_default:
            paths.insert(0, full_folder_path)
        else:
            paths.append(full_folder_path)
    else:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())


def get_folder_paths(folder_name):
    return folder_names_and_paths[map_legacy(folder_name)][0][:]


def _walk(directory):
    out = []
    if not os.path.isdir(directory):
        return out
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs[:] = [d for d in dirs if d != ".git"]
        for f in files:
            out.append(os.path.relpath(os.path.join(root, f), directory))
    return out


def get_filename_list(folder_name):
    """List the model files of a folder key, filtered by its extensions (read fresh each call)."""
    folder_name = map_legacy(folder_name)
    paths, extensions = folder_names_and_paths[folder_name]
    found = set()
    for directory in paths:
        for f in _walk(directory):
            if len(extensions) == 0 or os.path.splitext(f)[-1].lower() in extensions:
                found.add(f)
    return sorted(found)


def get_full_path(folder_name, filename):
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        return None
    filename = os.path.relpath(os.path.join("/", filename), "/")
    for directory in folder_names_and_paths[folder_name][0]:
        full = os.path.join(directory, filename)
        if os.path.isfile(full):
            return full
    return None


def get_save_image_path(filename_prefix, output_dir, image_width=0, image_height=0):
    """Return (folder, filename, counter, subfolder, prefix) as upstream: ``a/b`` -> ``a``, ``b_00001_``."""
    if "%" in filename_prefix:
        now = time.localtime()
        for key, value in (("%width%", str(image_width)), ("%height%", str(image_height)),
                           ("%year%", str(now.tm_year)), ("%month%", str(now.tm_mon).zfill(2)),
                           ("%day%", str(now.tm_mday).zfill(2)), ("%hour%", str(now.tm_hour).zfill(2)),
                           ("%minute%", str(now.tm_min).zfill(2)), ("%second%", str(now.tm_sec).zfill(2))):
            filename_prefix = filename_prefix.replace(key, value)
    subfolder = os.path.dirname(os.path.normpath(filename_prefix))
    filename = os.path.basename(os.path.normpath(filename_prefix))
    full_output_folder = os.path.join(output_dir, subfolder)
    if os.path.commonpath((output_dir, os.path.abspath(full_output_folder))) != output_dir:
        err = ("**** ERROR: Saving image outside the output folder is not allowed."
               "\n full_output_folder: " + os.path.abspath(full_output_folder) +
               "\n         output_dir: " + output_dir)
        logging.error(err)
        raise Exception(err)

    def counter_of(name):
        stem = name[:len(filename) + 1]
        try:
            digits = int(name[len(filename) + 1:].split("_")[0])
        except ValueError:
            digits = 0
        return digits, stem

    try:
        counter = max(d for d, stem in map(counter_of, os.listdir(full_output_folder))
                      if stem[:-1] == filename and stem[-1:] == "_") + 1
    except ValueError:
        counter = 1
    except FileNotFoundError:
        os.makedirs(full_output_folder, exist_ok=True)
        counter = 1
    return full_output_folder, filename, counter, subfolder, filename_prefix
