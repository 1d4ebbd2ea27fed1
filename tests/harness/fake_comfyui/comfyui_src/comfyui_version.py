# This file is rewritten for every tagged commit by tests/harness/fake_comfyui/builder.py.
__version__ = "0.3.64"
