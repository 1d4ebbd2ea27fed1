"""STAND-IN of ComfyUI's ``comfy`` package (tests only; see README.md)."""
