"""Stand-ins for ComfyUI and city96/ComfyUI-GGUF: local git repositories for tests.

See README.md beside this file for what is emulated and what is not.
"""

from .builder import COMFYUI_GITIGNORE, MODEL_FOLDERS, build_comfyui_repo, build_gguf_repo

__all__ = ["COMFYUI_GITIGNORE", "MODEL_FOLDERS", "build_comfyui_repo", "build_gguf_repo"]
