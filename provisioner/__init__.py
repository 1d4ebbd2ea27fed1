"""provision: a rented Apple Silicon Mac -> a Flux.1 + ComfyUI node, and back."""

__version__ = "0.1.0"
