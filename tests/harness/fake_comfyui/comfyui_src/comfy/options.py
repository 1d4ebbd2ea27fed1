"""STAND-IN of comfy/options.py (kept for the upstream import order)."""
