"""STAND-IN of comfy/ops.py at ComfyUI v0.3.64: nothing here needs torch >= 2.4."""
