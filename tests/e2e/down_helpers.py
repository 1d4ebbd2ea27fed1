"""Shared by the teardown tests: a node with outputs on it, and reading both sides' files."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from pathlib import Path

import yaml

from tests.e2e.conftest import HF_TOKEN
from tests.harness.cli import run_cli
from tests.harness.sshd import free_port

WORK = "provision"  # the default workdir, relative to the node's home
OUTPUT = f"{WORK}/ComfyUI/output"
MODELS = f"{WORK}/ComfyUI/models"
TOKEN_FILE = f"{WORK}/state/hf_token"
OLD_MTIME = "2024-03-04 05:06:07"

# The fake ComfyUI only checks that model files exist and are not empty.
PLACEHOLDERS = ("unet/x.gguf", "clip/clip_l.safetensors", "clip/t5.gguf", "vae/ae.safetensors")

_GENERATE = r"""
import json, sys, time, urllib.error, urllib.request
port, prefix, steps, wait = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
prompt = {
 "1": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "x.gguf"}},
 "2": {"class_type": "DualCLIPLoaderGGUF", "inputs": {"clip_name1": "clip_l.safetensors", "clip_name2": "t5.gguf", "type": "flux"}},
 "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
 "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in the snow", "clip": ["2", 0]}},
 "5": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["4", 0], "guidance": 3.5}},
 "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 0]}},
 "7": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
 "8": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": int(time.time() * 1000) % 100000, "steps": steps, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "positive": ["5", 0], "negative": ["6", 0], "latent_image": ["7", 0], "denoise": 1.0}},
 "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["3", 0]}},
 "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": prefix}}}
base = "http://127.0.0.1:%d" % port
request = urllib.request.Request(base + "/prompt", data=json.dumps({"prompt": prompt, "client_id": "t"}).encode(),
                                 headers={"Content-Type": "application/json"})
try:
    prompt_id = json.load(urllib.request.urlopen(request))["prompt_id"]
except urllib.error.HTTPError as error:
    sys.exit("ComfyUI refused the prompt: %s" % error.read().decode())
print(prompt_id)
deadline = time.time() + 60
while wait and time.time() < deadline:
    history = json.load(urllib.request.urlopen(base + "/history/" + prompt_id))
    if history:
        assert history[prompt_id]["status"]["status_str"] == "success", history
        break
    time.sleep(0.1)
"""


def node_yaml_for(node, tmp_path, stand_ins, **fields):
    """Write node.yaml with ports of its own: every test node shares this machine's loopback,
    so a ComfyUI on the default 8188 could be another test's."""
    fields.setdefault("tunnel", {"remote_port": free_port(), "local_port": free_port()})
    return node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(**fields))


def comfy_port(node_yaml) -> int:
    return yaml.safe_load(Path(node_yaml).read_text())["tunnel"]["remote_port"]


def up(node_yaml, home, *extra, timeout=300):
    result = run_cli("up", node_yaml, "--no-models", "--no-tunnel", *extra, home=home, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result


def down(node_yaml, home, *extra, token=HF_TOKEN, timeout=300):
    return run_cli("down", node_yaml, *extra, home=home, timeout=timeout,
                   env={"HF_TOKEN": token} if token else None)


def place_model_stand_ins(node) -> None:
    node.ssh(" && ".join(f"mkdir -p {shlex.quote(os.path.dirname(f'{MODELS}/{p}'))} && "
                         f"printf 'stand-in model\\n' > {shlex.quote(f'{MODELS}/{p}')}"
                         for p in PLACEHOLDERS))


def generate(node, port: int, prefix: str, steps: int = 3, wait: bool = True) -> str:
    """Queue a prompt through ComfyUI's HTTP API on the node; return its prompt id."""
    command = "python3 - " + " ".join(shlex.quote(str(a)) for a in (port, prefix, steps, int(wait)))
    return node.ssh(command, input=_GENERATE, timeout=90).stdout.strip().splitlines()[0]


def write_outputs(node) -> None:
    """Put outputs where ComfyUI keeps them: images (one in a subfolder) and a workflow."""
    node.ssh(
        f"cd {OUTPUT} && mkdir -p portraits/2024 && "
        "head -c 300000 /dev/urandom > ComfyUI_00001_.png && "
        "head -c 120000 /dev/urandom > portraits/2024/fox_00001_.png && "
        "printf 'a name with spaces' > 'my image 1.png' && "
        f"mkdir -p ../user/default/workflows && printf '{{\"nodes\": []}}' > "
        "../user/default/workflows/flow.json && printf '{}' > ../user/default/comfy.settings.json && "
        f"touch -d {shlex.quote(OLD_MTIME)} ComfyUI_00001_.png portraits/2024/fox_00001_.png")


def place_token_file(node) -> None:
    """What a download left by an interrupted `up` leaves: the 0600 token file."""
    node.ssh(f"umask 077 && printf '%s\\n' {shlex.quote(HF_TOKEN)} > {TOKEN_FILE}")


def place_downloaded_model(node, folder: str = "unet", name: str = "flux1-dev-Q8_0.gguf") -> str:
    path = f"{MODELS}/{folder}/{name}"
    node.ssh(f"mkdir -p {MODELS}/{folder} && head -c 5000 /dev/urandom > {path} && "
             f"printf '{{\"size\": 5000}}' > {path}.verified")
    return path


_LIST = r"""
import hashlib, json, os, sys
base = os.path.expanduser(sys.argv[1])
out = {}
for folder, dirs, files in os.walk(base):
    for name in files:
        full = os.path.join(folder, name)
        if os.path.islink(full):
            continue
        with open(full, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        info = os.stat(full)
        out[os.path.relpath(full, base)] = [info.st_size, digest, info.st_mtime_ns]
print(json.dumps(out))
"""


def node_files(node, folder: str) -> dict[str, tuple[int, str, int]]:
    """Every regular file under the node's ``~/folder``: {relative path: (size, sha256, mtime_ns)}."""
    result = node.ssh(f"python3 - {shlex.quote(folder)}", input=_LIST)
    return {path: tuple(value) for path, value in json.loads(result.stdout).items()}


def local_files(folder: Path) -> dict[str, tuple[int, str, int]]:
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found[str(path.relative_to(folder))] = (len(data), hashlib.sha256(data).hexdigest(),
                                                    path.stat().st_mtime_ns)
    return found


def home_listing(node) -> set[str]:
    """Every path under the node's home but the harness's own (.ssh)."""
    lines = node.ssh("cd ~ && find . -mindepth 1 ! -path './.ssh' ! -path './.ssh/*'").stdout
    return set(lines.split("\n")) - {""}


def files_containing(root: Path, needle: bytes) -> set[str]:
    found = set()
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            try:
                if not path.is_symlink() and path.is_file() and needle in path.read_bytes():
                    found.add(str(path))
            except OSError:
                continue
    return found
