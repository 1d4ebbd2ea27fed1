"""The test harness: real services on loopback, and NAMED emulations of what Linux lacks.

- ``sshd.py``: ``start_node()`` -> ``SshNode``, a real OpenSSH sshd on 127.0.0.1 with a
  throwaway user per node. SSH is never mocked.
- ``fake_macos/``: EMULATION of the macOS userland (``sysctl``, ``sw_vers``, ``uname``,
  ``vm_stat``, ``memory_pressure``, ``xcode-select``) as PATH shims on "macOS" nodes;
  see fake_macos/README.md.
- ``cli.py``: ``run_cli()`` runs ``python -m provisioner`` with a test HOME.
- ``fake_hub.py``, ``hub_files.py``, ``wheelhouse.py``, ``fake_comfyui/``: stand-ins for the
  Hugging Face Hub, model files, PyPI wheels and ComfyUI (see each module).

This package imports nothing on purpose: import the module you need.
"""
