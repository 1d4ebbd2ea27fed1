"""STAND-IN of ComfyUI's comfy/model_management.py: device choice and memory figures only.

As upstream: ``--cpu`` -> cpu; else MPS when ``torch.backends.mps.is_available()``; else a
CUDA device, which on a torch without CUDA (macOS, CPU wheels) raises
``AssertionError: Torch not compiled with CUDA enabled`` at start-up.

Stand-in switch ``FAKE_COMFYUI_DEVICE=cpu|mps`` (not upstream): forces the device, whatever
``--cpu`` and MPS say. ``cpu`` emulates a Mac whose background session lacks Metal and runs on
the CPU (no crash; ``/system_stats`` devices[0].type == "cpu"); ``mps`` reports MPS.
"""

import logging
import os

import torch

from comfy.cli_args import args

torch_version = torch.version.__version__

_forced_device = os.environ.get("FAKE_COMFYUI_DEVICE", "").strip().lower()
if _forced_device not in ("", "cpu", "mps"):
    raise ValueError("FAKE_COMFYUI_DEVICE must be 'cpu' or 'mps' (stand-in switch), not {!r}".format(_forced_device))

if _forced_device:
    cpu_state = _forced_device
    logging.info("FAKE_COMFYUI_DEVICE={}: device forced (stand-in switch)".format(_forced_device))
elif args.cpu:
    cpu_state = "cpu"
elif torch.backends.mps.is_available():
    cpu_state = "mps"
else:
    cpu_state = "gpu"


def get_torch_device():
    if cpu_state == "mps":
        return torch.device("mps")
    if cpu_state == "cpu":
        return torch.device("cpu")
    return torch.device(torch.cuda.current_device())


def get_torch_device_name(device):
    return "{}".format(device.type)


def _ram():
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):
        free = total // 2
    return total, free


def get_total_memory(dev=None, torch_total_too=False):
    total, _ = _ram()
    return (total, total) if torch_total_too else total


def get_free_memory(dev=None, torch_free_too=False):
    _, free = _ram()
    return (free, 0) if torch_free_too else free


total_vram = get_total_memory(get_torch_device()) / (1024 * 1024)
total_ram = get_total_memory(torch.device("cpu")) / (1024 * 1024)
logging.info("Total VRAM {:0.0f} MB, total RAM {:0.0f} MB".format(total_vram, total_ram))
logging.info("pytorch version: {}".format(torch_version))
vram_state = {"mps": "SHARED", "cpu": "DISABLED"}.get(cpu_state, "NORMAL_VRAM")
logging.info("Set vram state to: {}".format(vram_state))
logging.info("Device: {}".format(get_torch_device_name(get_torch_device())))


def unload_all_models():
    logging.info("Unloading all models (stand-in: nothing is loaded)")
