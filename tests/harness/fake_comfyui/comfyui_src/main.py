"""STAND-IN of ComfyUI v0.3.64's main.py, for tests of `provision` (see README.md).

Same flags (comfy/cli_args.py), same start-up order (paths, torch, device, custom nodes,
server), same HTTP/WebSocket API shapes; no models are run. Behaviour switches
(environment variables):
  FAKE_COMFYUI_CRASH=1            raise a RuntimeError at start-up (a Python traceback, exit 1)
  FAKE_COMFYUI_STARTUP_DELAY=S    sleep S seconds before binding the port
  FAKE_COMFYUI_STEP_SECONDS=S     sampler time per step (default 0.02)
  FAKE_COMFYUI_BLACK_IMAGE=1      VAEDecode yields all-black images (also: a UNet file
                                  name containing "black")
  FAKE_COMFYUI_MPS_ABORT=1        at a sampler's first step, write macOS's MPSNDArray "failed
                                  assertion" (ComfyUI-GGUF issue #107) to stderr and os.abort()
                                  the whole process (SIGABRT, 134 in a shell)
  FAKE_COMFYUI_FAIL_CLASS=NAME    nodes of class NAME raise when executed (execution_error; the
                                  server keeps serving); FAKE_COMFYUI_FAIL_EXCEPTION=TYPE (default
                                  RuntimeError), FAKE_COMFYUI_FAIL_MESSAGE=TEXT (default
                                  "stand-in failure in NAME")
  FAKE_MACOS_MPS=1|0              read by the stand-in torch: MPS available or not
  FAKE_COMFYUI_DEVICE=cpu|mps     force the device /system_stats reports (cpu: a Mac whose
                                  background session lacks Metal runs on the CPU, no crash)
"""

import itertools
import logging
import os
import sys
import threading
import time

import comfy.options  # noqa: F401  (kept for the upstream import order)
from comfy.cli_args import args


def setup_logger(level, use_stdout):
    handler = logging.StreamHandler(sys.stdout if use_stdout else sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


setup_logger(args.verbose, args.log_stdout)

import folder_paths  # noqa: E402
import utils.extra_config  # noqa: E402


def apply_custom_paths():
    default_config = os.path.join(os.path.dirname(os.path.realpath(__file__)), "extra_model_paths.yaml")
    if os.path.isfile(default_config):
        utils.extra_config.load_extra_path_config(default_config)
    if args.extra_model_paths_config:
        for config_path in itertools.chain(*args.extra_model_paths_config):
            utils.extra_config.load_extra_path_config(config_path)
    if args.output_directory:
        output_dir = os.path.abspath(args.output_directory)
        logging.info("Setting output directory to: {}".format(output_dir))
        folder_paths.set_output_directory(output_dir)
    folder_paths.add_model_folder_path("checkpoints", os.path.join(folder_paths.get_output_directory(), "checkpoints"))
    folder_paths.add_model_folder_path("clip", os.path.join(folder_paths.get_output_directory(), "clip"))
    folder_paths.add_model_folder_path("vae", os.path.join(folder_paths.get_output_directory(), "vae"))
    folder_paths.add_model_folder_path("diffusion_models",
                                       os.path.join(folder_paths.get_output_directory(), "diffusion_models"))
    folder_paths.add_model_folder_path("loras", os.path.join(folder_paths.get_output_directory(), "loras"))
    if args.input_directory:
        folder_paths.set_input_directory(os.path.abspath(args.input_directory))
    if args.temp_directory:
        folder_paths.set_temp_directory(os.path.join(os.path.abspath(args.temp_directory), "temp"))


apply_custom_paths()

if os.environ.get("FAKE_COMFYUI_CRASH") == "1":
    raise RuntimeError("FAKE_COMFYUI_CRASH=1: the ComfyUI stand-in was asked to crash at start-up")

logging.info("Checkpoint files will always be loaded safely.")

# Upstream imports torch (and torchvision) here; a missing or mismatched torch fails the same way.
import comfy.model_management  # noqa: E402
import comfy.ops  # noqa: E402,F401
import comfyui_version  # noqa: E402

# What the stand-in requirements.txt installs, imported like upstream's modules import them:
# a skipped `pip install -r requirements.txt` is an ImportError here, as with the real thing.
import einops  # noqa: E402,F401
import execution  # noqa: E402
import kornia  # noqa: E402,F401
import nodes  # noqa: E402
import numpy  # noqa: E402,F401
import safetensors  # noqa: E402,F401
import sentencepiece  # noqa: E402,F401
import server  # noqa: E402
import spandrel  # noqa: E402,F401
import tokenizers  # noqa: E402,F401
import torch  # noqa: E402,F401
import torchaudio  # noqa: E402,F401
import torchsde  # noqa: E402,F401
import torchvision  # noqa: E402,F401
import tqdm  # noqa: E402,F401
import transformers  # noqa: E402,F401

logging.info("Python version: {}".format(sys.version))
logging.info("ComfyUI version: {}".format(comfyui_version.__version__))


def prompt_worker(q, server_instance):
    executor = execution.PromptExecutor(server_instance, cache=not args.cache_none)
    while True:
        item = q.get(timeout=0.5)
        if item is not None:
            q.wait_answered(item[1])
            start = time.perf_counter()
            server_instance.client_id = item[3].get("client_id")
            outputs, status = executor.execute(item[2], item[1], item[3], item[4])
            q.task_done(item, outputs, status)
            if server_instance.client_id is not None:
                server_instance.send_sync("executing", {"node": None, "prompt_id": item[1]},
                                          server_instance.client_id)
            server_instance.last_node_id = None
            logging.info("Prompt executed in {:.2f} seconds".format(time.perf_counter() - start))
        flags = q.pop_flags()
        if flags.get("unload_models", flags.get("free_memory", False)):
            comfy.model_management.unload_all_models()
        if flags.get("free_memory", False):
            executor.reset()


def start_comfyui():
    delay = float(os.environ.get("FAKE_COMFYUI_STARTUP_DELAY", "0") or 0)
    nodes.init_extra_nodes(disable_all=args.disable_all_custom_nodes)
    if args.quick_test_for_ci:
        sys.exit(0)
    if delay:
        time.sleep(delay)
    prompt_server = server.PromptServer()
    threading.Thread(target=prompt_worker, args=(prompt_server.prompt_queue, prompt_server), daemon=True,
                     name="prompt_worker").start()
    logging.info("Starting server\n")
    addresses = [a.strip() for a in args.listen.split(",") if a.strip()]
    prompt_server.start(addresses, args.port)
    return prompt_server


if __name__ == "__main__":
    start_comfyui()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        logging.info("\nStopped server")
