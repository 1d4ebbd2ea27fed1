"""STAND-IN of comfy/utils.py: "loading" a model file means checking it exists and is not empty."""

import os


class ModelFileError(RuntimeError):
    """A model file that the stand-in refuses, as the real loaders would (empty or unreadable)."""


def load_model_file(path):
    """Return a small descriptor of a model file; raise like a failed load when it is empty."""
    size = os.path.getsize(path)
    if size == 0:
        if path.endswith((".safetensors", ".sft")):
            raise ModelFileError("Error while deserializing header: HeaderTooSmall")
        raise ModelFileError("Could not load model file (0 bytes): {}".format(path))
    with open(path, "rb") as f:
        head = f.read(64)
    return {"path": path, "size": size, "head": head}
