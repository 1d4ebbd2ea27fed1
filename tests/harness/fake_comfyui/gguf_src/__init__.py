# STAND-IN of city96/ComfyUI-GGUF (tests only; see README.md).
# only import if running as a custom node
try:
    import comfy.utils  # noqa: F401
except ImportError:
    pass
else:
    from .nodes import NODE_CLASS_MAPPINGS
    NODE_DISPLAY_NAME_MAPPINGS = {k: v.TITLE for k, v in NODE_CLASS_MAPPINGS.items()}
    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
