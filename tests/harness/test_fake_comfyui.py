"""The ComfyUI / ComfyUI-GGUF stand-ins: real git, a real venv with real pip, real HTTP.

A node is prepared as the tool will prepare one: clone, check out v0.3.64 and the GGUF pin,
install the torch pins and both requirements.txt with a constraints file, start main.py with
the tool's flags, then talk to it over HTTP and WebSocket on 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.fake_comfyui import build_comfyui_repo, build_gguf_repo
from tests.harness.wheelhouse import build_wheelhouse, constraints_text, isolated_pip_env

TOOL_FLAGS = ["--fp32-vae", "--listen", "127.0.0.1", "--disable-auto-launch"]

WORKFLOW = {
    "1": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "flux1-dev-Q8_0.gguf"}},
    "2": {"class_type": "DualCLIPLoaderGGUF", "inputs": {
        "clip_name1": "clip_l.safetensors", "clip_name2": "t5-v1_1-xxl-encoder-Q8_0.gguf", "type": "flux"}},
    "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
    "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in the snow", "clip": ["2", 0]}},
    "5": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["4", 0], "guidance": 3.5}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 0]}},
    "7": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
    "8": {"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "seed": 42, "steps": 20, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
        "positive": ["5", 0], "negative": ["6", 0], "latent_image": ["7", 0], "denoise": 1.0}},
    "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["3", 0]}},
    "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "bench/flux-dev"}},
}


def _workflow(**changes: dict) -> dict:
    wf = json.loads(json.dumps(WORKFLOW))
    for node_id, inputs in changes.items():
        wf[node_id.lstrip("n")]["inputs"].update(inputs)
    return wf


def _git(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@dataclass(frozen=True)
class Origin:
    comfyui: Path
    gguf: Path
    pin: str


@dataclass(frozen=True)
class Node:
    comfyui: Path
    python: Path


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Origin:
    root = tmp_path_factory.mktemp("origin")
    comfyui = build_comfyui_repo(root / "ComfyUI")
    gguf, pin = build_gguf_repo(root / "ComfyUI-GGUF")
    return Origin(comfyui, gguf, pin)


@pytest.fixture(scope="module")
def node(tmp_path_factory, origin) -> Node:
    root = tmp_path_factory.mktemp("node")
    wheels = build_wheelhouse(root / "wheels")
    comfyui = root / "ComfyUI"
    _git("clone", "-q", origin.comfyui, comfyui)
    _git("-c", "advice.detachedHead=false", "checkout", "-q", "v0.3.64", cwd=comfyui)
    gguf = comfyui / "custom_nodes" / "ComfyUI-GGUF"
    _git("clone", "-q", origin.gguf, gguf)
    _git("-c", "advice.detachedHead=false", "checkout", "-q", origin.pin, cwd=gguf)

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    constraints = root / "constraints.txt"
    constraints.write_text(constraints_text())
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
           "--no-index", "--find-links", str(wheels), "-c", str(constraints)]
    for args in (["torch==2.3.1", "torchvision==0.18.1", "torchaudio==2.3.1"],
                 ["-r", str(comfyui / "requirements.txt"), "-r", str(gguf / "requirements.txt")]):
        done = subprocess.run(pip + args, capture_output=True, text=True, env=isolated_pip_env(), timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    models = comfyui / "models"
    for rel in ("unet/flux1-dev-Q8_0.gguf", "clip/clip_l.safetensors", "clip/t5-v1_1-xxl-encoder-Q8_0.gguf",
                "vae/ae.safetensors", "diffusion_models/flux1-dev.safetensors"):
        (models / rel).write_bytes(b"stand-in model bytes\n")
    return Node(comfyui, venv / "bin" / "python")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_", "PIP_"))}
    return {**env, "FAKE_MACOS_MPS": "0", **extra}


def _run_main(node: Node, *args: str, env: dict | None = None, cwd: Path | None = None,
              timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([str(node.python), "main.py", *args], cwd=cwd or node.comfyui, capture_output=True,
                          text=True, env=env or _env(), timeout=timeout)


class Server:
    def __init__(self, port: int, log: Path, proc: subprocess.Popen | None = None):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc = proc

    def request(self, path: str, body: object | None = None, raw: bytes | None = None):
        data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, ctype, payload = resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as e:
            status, ctype, payload = e.code, e.headers.get("Content-Type", ""), e.read()
        if ctype.startswith("application/json"):
            return status, json.loads(payload)
        return status, payload

    def get(self, path: str):
        return self.request(path)

    def wait_history(self, prompt_id: str, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, hist = self.get(f"/history/{prompt_id}")
            assert status == 200
            if hist:
                return hist[prompt_id]
            time.sleep(0.05)
        raise AssertionError(f"prompt {prompt_id} did not finish; log:\n{self.log.read_text()}")


@contextlib.contextmanager
def serving(node: Node, tmp_path: Path, *args: str, env: dict | None = None):
    port = _free_port()
    log = tmp_path / f"comfyui-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(node.python), "main.py", *args, "--port", str(port)], cwd=node.comfyui,
                                stdout=out, stderr=subprocess.STDOUT, env=env or _env())
    server = Server(port, log, proc)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()}"
            with contextlib.suppress(OSError):
                if server.get("/system_stats")[0] == 200:
                    break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class WebSocket:
    """A minimal RFC 6455 client: enough to read the server's text frames."""

    def __init__(self, port: int, client_id: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self.sock.recv(4096)
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
                                  .digest()).decode()
        assert f"Sec-WebSocket-Accept: {accept}".encode() in head

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            assert chunk, "websocket closed"
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def receive(self) -> dict:
        b1, b2 = self._take(2)
        length = b2 & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._take(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._take(8))[0]
        assert b1 == 0x81 and not b2 & 0x80  # FIN + text, unmasked from the server
        return json.loads(self._take(length))

    def until_done(self, prompt_id: str) -> list[dict]:
        messages = []
        while True:
            msg = self.receive()
            messages.append(msg)
            if msg["type"] == "executing" and msg["data"]["node"] is None and msg["data"].get("prompt_id") == prompt_id:
                return messages

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\x88\x82" + b"\x00\x00\x00\x00" + b"\x03\xe8")  # masked close 1000
        self.sock.close()


def _read_png(data: bytes) -> tuple[int, int, bytes, dict[str, str]]:
    """Decode an 8-bit RGB, unfiltered PNG; return (width, height, pixels, text chunks)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, text = 8, b"", {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert (depth, color) == (8, 2)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"tEXt":
            key, _, value = body.partition(b"\x00")
            text[key.decode()] = value.decode("latin-1")
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = 1 + 3 * width
    assert len(raw) == stride * height
    assert all(raw[y * stride] == 0 for y in range(height))
    pixels = b"".join(raw[y * stride + 1:(y + 1) * stride] for y in range(height))
    return width, height, pixels, text


# ------------------------------------------------------------------------------ repos

def test_repos_are_deterministic_world_readable_and_pinned(tmp_path, origin):
    again = build_comfyui_repo(tmp_path / "ComfyUI")
    _, pin_again = build_gguf_repo(tmp_path / "gguf")
    for ref in ("v0.3.63^{commit}", "v0.3.64^{commit}", "master"):
        assert _git("rev-parse", ref, cwd=origin.comfyui) == _git("rev-parse", ref, cwd=again)
    assert pin_again == origin.pin and len(origin.pin) == 40
    assert _git("rev-parse", "HEAD", cwd=origin.gguf) != origin.pin  # HEAD moved past the pin
    assert _git("cat-file", "-t", "v0.3.64", cwd=origin.comfyui) == "tag"  # annotated
    assert _git("show", "v0.3.64:comfyui_version.py", cwd=origin.comfyui).endswith('__version__ = "0.3.64"')
    assert _git("show", "v0.3.63:comfyui_version.py", cwd=origin.comfyui).endswith('__version__ = "0.3.63"')
    for root in (origin.comfyui, origin.gguf):
        for path in [root, *root.rglob("*")]:
            mode = stat.S_IMODE(path.lstat().st_mode)
            assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))


def test_checkout_is_at_the_pins_and_stays_clean(node, origin):
    assert _git("describe", "--tags", "--exact-match", cwd=node.comfyui) == "v0.3.64"
    gguf = node.comfyui / "custom_nodes" / "ComfyUI-GGUF"
    assert _git("rev-parse", "HEAD", cwd=gguf) == origin.pin
    assert "UnetLoaderGGUFAdvanced" in (gguf / "nodes.py").read_text()
    # Models, the GGUF clone and __pycache__ are ignored, as upstream's .gitignore does.
    assert _run_main(node, "--cpu", "--quick-test-for-ci").returncode == 0
    assert _git("status", "--porcelain", cwd=node.comfyui) == ""
    assert _git("status", "--porcelain", cwd=gguf) == ""


# ------------------------------------------------------------------------------ start-up

def test_misspelled_flag_is_an_argparse_error(node):
    done = _run_main(node, "--fp32vae", "--listen", "127.0.0.1", "--port", "1", "--disable-auto-launch")
    assert done.returncode == 2
    assert "main.py: error: unrecognized arguments: --fp32vae" in done.stderr


def test_start_up_failures_are_tracebacks(node, tmp_path):
    no_device = _run_main(node, *TOOL_FLAGS, "--port", "1")  # no MPS, no CUDA, no --cpu
    assert no_device.returncode == 1
    assert "AssertionError: Torch not compiled with CUDA enabled" in no_device.stderr

    crash = _run_main(node, *TOOL_FLAGS, "--port", "1", env=_env(FAKE_COMFYUI_CRASH="1", FAKE_MACOS_MPS="1"))
    assert crash.returncode == 1 and "Traceback (most recent call last)" in crash.stderr
    assert "RuntimeError: FAKE_COMFYUI_CRASH=1" in crash.stderr

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        in_use = _run_main(node, *TOOL_FLAGS, "--port", str(port), env=_env(FAKE_MACOS_MPS="1"))
    assert in_use.returncode == 1 and "Traceback" in in_use.stderr
    assert f"OSError: [Errno 98] error while attempting to bind on address ('127.0.0.1', {port}): " \
           "address already in use" in in_use.stderr

    head = tmp_path / "head"  # master is past the tag and needs torch >= 2.4
    _git("clone", "-q", node.comfyui.parent / "ComfyUI", head)
    _git("checkout", "-q", "master", cwd=head)
    at_head = _run_main(node, "--cpu", "--quick-test-for-ci", cwd=head)
    assert at_head.returncode == 1
    assert "ImportError: cannot import name 'custom_op' from 'torch.library'" in at_head.stderr


def test_a_custom_node_that_fails_to_import_is_skipped(node, tmp_path):
    shadow = tmp_path / "shadow" / "gguf"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'gguf'\")\n")
    env = _env(PYTHONPATH=str(shadow.parent))
    with serving(node, tmp_path, "--cpu", "--listen", "127.0.0.1", env=env) as server:
        assert server.get("/object_info/UnetLoaderGGUF") == (200, {})
        assert server.get("/object_info/VAELoader")[1]["VAELoader"]["name"] == "VAELoader"
        log = server.log.read_text()
    assert "(IMPORT FAILED)" in log and "ComfyUI-GGUF" in log


# ------------------------------------------------------------------------------ serving

def test_serves_the_comfyui_api_like_a_mac_node(node, tmp_path):
    with serving(node, tmp_path, *TOOL_FLAGS, env=_env(FAKE_MACOS_MPS="1")) as server:
        status, stats = server.get("/system_stats")
        assert status == 200
        assert stats["devices"][0]["type"] == "mps" and stats["devices"][0]["index"] is None
        assert stats["system"]["comfyui_version"] == "0.3.64"
        assert stats["system"]["pytorch_version"] == "2.3.1"
        assert stats["system"]["argv"][-1] == str(server.port) and "--fp32-vae" in stats["system"]["argv"]
        assert server.get("/api/system_stats")[1]["devices"][0]["type"] == "mps"

        info = server.get("/object_info/UnetLoaderGGUF")[1]["UnetLoaderGGUF"]
        assert info["input"]["required"]["unet_name"] == [["flux1-dev-Q8_0.gguf"]]
        assert info["category"] == "bootleg" and info["output"] == ["MODEL"]
        (node.comfyui / "models" / "diffusion_models" / "flux1-schnell-Q4_K_S.gguf").write_bytes(b"x")
        assert server.get("/object_info/UnetLoaderGGUF")[1]["UnetLoaderGGUF"]["input"]["required"][
            "unet_name"] == [["flux1-dev-Q8_0.gguf", "flux1-schnell-Q4_K_S.gguf"]]
        clip = server.get("/object_info/DualCLIPLoaderGGUF")[1]["DualCLIPLoaderGGUF"]["input"]["required"]
        assert clip["clip_name1"] == [["clip_l.safetensors", "t5-v1_1-xxl-encoder-Q8_0.gguf"]]
        assert "flux" in clip["type"][0]
        assert "flux" not in server.get("/object_info/CLIPLoaderGGUF")[1]["CLIPLoaderGGUF"]["input"][
            "required"]["type"][0]
        assert server.get("/object_info/UNETLoader")[1]["UNETLoader"]["input"]["required"]["unet_name"] == [
            ["flux1-dev.safetensors"]]
        assert server.get("/object_info/VAELoader")[1]["VAELoader"]["input"]["required"]["vae_name"] == [
            ["ae.safetensors", "pixel_space"]]
        assert server.get("/object_info/NoSuchNode") == (200, {})
        everything = server.get("/object_info")[1]
        assert {"KSampler", "SaveImage", "SamplerCustomAdvanced", "UnetLoaderGGUFAdvanced"} <= set(everything)
        assert everything["ModelSamplingFlux"]["display_name"] is None

        keys = server.get("/models")[1]
        assert {"diffusion_models", "text_encoders", "vae", "unet_gguf", "clip_gguf"} <= set(keys)
        assert server.get("/models/unet")[0] == 404
        assert server.get("/api/models/clip_gguf") == (200, ["t5-v1_1-xxl-encoder-Q8_0.gguf"])

        ws = WebSocket(server.port, "bench-client")
        try:
            hello = ws.receive()
            assert hello["type"] == "status" and hello["data"]["sid"] == "bench-client"
            status, accepted = server.request("/prompt", {"prompt": WORKFLOW, "client_id": "bench-client"})
            assert status == 200 and accepted["node_errors"] == {}
            pid = accepted["prompt_id"]
            messages = ws.until_done(pid)
        finally:
            ws.close()
        types = [m["type"] for m in messages]
        for expected in ("execution_start", "execution_cached", "executing", "progress", "executed",
                         "execution_success"):
            assert expected in types, types
        progress = [m["data"] for m in messages if m["type"] == "progress"]
        assert [p["value"] for p in progress] == list(range(1, 21)) and progress[0]["node"] == "8"
        image = {"filename": "flux-dev_00001_.png", "subfolder": "bench", "type": "output"}
        executed = next(m["data"] for m in messages if m["type"] == "executed")
        assert executed["node"] == "10" and executed["output"]["images"] == [image]

        hist = server.wait_history(pid)
        assert hist["status"]["status_str"] == "success" and hist["status"]["completed"] is True
        assert hist["outputs"]["10"]["images"] == [image]
        assert hist["prompt"][1] == pid and hist["prompt"][4] == ["10"]
        status, png = server.get("/view?filename=flux-dev_00001_.png&subfolder=bench&type=output")
        assert status == 200
        width, height, pixels, text = _read_png(png)
        assert (width, height) == (1024, 1024) and pixels.count(0) < len(pixels) // 2
        assert json.loads(text["prompt"])["8"]["inputs"]["seed"] == 42
        assert (node.comfyui / "output" / "bench" / "flux-dev_00001_.png").read_bytes() == png
        assert server.get("/view?filename=nope.png&subfolder=bench&type=output")[0] == 404
        assert server.get("/view?filename=../main.py&type=output")[0] == 400

        # Identical prompt: cached, no new file. New seed: a new file, counter 2.
        again = server.wait_history(server.request("/prompt", {"prompt": WORKFLOW})[1]["prompt_id"])
        assert again["outputs"]["10"]["images"] == [image]
        assert len(again["status"]["messages"][1][1]["nodes"]) == 10
        reseeded = server.wait_history(server.request("/prompt", {"prompt": _workflow(n8={"seed": 43})})[1][
            "prompt_id"])
        assert reseeded["outputs"]["10"]["images"][0]["filename"] == "flux-dev_00002_.png"
        assert set(reseeded["status"]["messages"][1][1]["nodes"]) == {"1", "2", "3", "4", "5", "6", "7"}

        status, rejected = server.request("/prompt", {"prompt": _workflow(n1={"unet_name": "nope.gguf"})})
        assert status == 400 and rejected["error"]["type"] == "prompt_outputs_failed_validation"
        error = rejected["node_errors"]["1"]["errors"][0]
        assert error["type"] == "value_not_in_list"
        assert error["details"] == "unet_name: 'nope.gguf' not in ['flux1-dev-Q8_0.gguf', 'flux1-schnell-Q4_K_S.gguf']"
        assert rejected["node_errors"]["1"]["dependent_outputs"] == ["10"]

        missing = _workflow()
        del missing["8"]["inputs"]["seed"]
        missing["8"]["inputs"]["steps"] = "20"  # converted, accepted
        missing["7"]["inputs"]["width"] = 8
        status, rejected = server.request("/prompt", {"prompt": missing})
        assert status == 400
        assert [e["type"] for e in rejected["node_errors"]["8"]["errors"]] == ["required_input_missing"]
        assert [e["type"] for e in rejected["node_errors"]["7"]["errors"]] == ["value_smaller_than_min"]
        unknown = _workflow()
        unknown["8"]["class_type"] = "KSamplerX"
        assert server.request("/prompt", {"prompt": unknown}) == (400, {"error": {
            "type": "invalid_prompt", "message": "Cannot execute because node KSamplerX does not exist.",
            "details": "Node ID '#8'", "extra_info": {}}, "node_errors": {}})
        assert server.request("/prompt", {"prompt": {}})[1]["error"]["type"] == "prompt_no_outputs"
        assert server.request("/prompt", {"client_id": "x"})[1]["error"]["type"] == "no_prompt"
        assert server.request("/prompt", raw=b"{not json")[0] == 500
        assert server.get("/queue") == (200, {"queue_running": [], "queue_pending": []})
    log = server.log.read_text()
    assert f"To see the GUI go to: http://127.0.0.1:{server.port}" in log
    assert "Device: mps" in log and "Failed to validate prompt for output 10:" in log
    assert "  - Value not in list: unet_name: 'nope.gguf'" in log and "Prompt executed in" in log


def test_cpu_extra_model_paths_black_images_failures_and_interrupt(node, tmp_path):
    shared = tmp_path / "shared-models"
    (shared / "unet").mkdir(parents=True)
    (shared / "vae").mkdir()
    (shared / "unet" / "flux1-black-Q4_K_S.gguf").write_bytes(b"x")
    (shared / "vae" / "empty.safetensors").write_bytes(b"")
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text(f"# written by the test\nprovision:\n    base_path: {shared}\n    is_default: true\n"
                      "    unet: unet/\n    vae: |\n        vae/\n")
    outputs = tmp_path / "outputs"
    env = _env(FAKE_COMFYUI_STEP_SECONDS="0.01")
    with serving(node, tmp_path, "--cpu", "--listen", "127.0.0.1", "--extra-model-paths-config", str(config),
                 "--output-directory", str(outputs), env=env) as server:
        assert server.get("/system_stats")[1]["devices"][0]["type"] == "cpu"
        assert "flux1-black-Q4_K_S.gguf" in server.get("/models/unet_gguf")[1]

        black = server.wait_history(server.request("/prompt", {"prompt": _workflow(
            n1={"unet_name": "flux1-black-Q4_K_S.gguf"}, n7={"width": 64, "height": 48})})[1]["prompt_id"])
        assert black["status"]["status_str"] == "success"
        png = (outputs / "bench" / "flux-dev_00001_.png").read_bytes()
        width, height, pixels, _ = _read_png(png)
        assert (width, height) == (64, 48) and pixels == bytes(len(pixels))

        failed = server.wait_history(server.request("/prompt", {"prompt": _workflow(
            n3={"vae_name": "empty.safetensors"})})[1]["prompt_id"])
        assert failed["status"]["status_str"] == "error" and failed["status"]["completed"] is False
        event, data = failed["status"]["messages"][-1]
        assert event == "execution_error" and data["node_type"] == "VAELoader" and data["node_id"] == "3"
        assert "HeaderTooSmall" in data["exception_message"] and failed["outputs"] == {}

        slow = server.request("/prompt", {"prompt": _workflow(n8={"seed": 7, "steps": 2000})})[1]["prompt_id"]
        deadline = time.monotonic() + 10
        while slow not in json.dumps(server.get("/queue")[1]["queue_running"]):
            assert time.monotonic() < deadline, "the slow prompt never started"
            time.sleep(0.02)
        assert server.request("/interrupt", {})[0] == 200
        stopped = server.wait_history(slow)
        assert stopped["status"]["messages"][-1][0] == "execution_interrupted"
        assert stopped["status"]["status_str"] == "error"
    assert "!!! Exception during processing !!!" in server.log.read_text()


MPS_ASSERTION = (
    "/AppleInternal/Library/BuildRoots/5a8a3fcc-55cb-11ef-848e-8a553ba56670/Library/Caches/com.apple.xbs/Sources/"
    "MetalPerformanceShaders/MPSCore/Types/MPSNDArray.mm:891: failed assertion `[MPSNDArray, initWithBufferImpl:"
    "offset:descriptor:isForNDArrayAlias:isUserBuffer:] Error: buffer is not large enough. Must be 63700992 bytes\n"
    "'\n"
)


def test_mps_abort_kills_the_process_mid_prompt(node, tmp_path):
    env = _env(FAKE_MACOS_MPS="1", FAKE_COMFYUI_MPS_ABORT="1")
    with serving(node, tmp_path, *TOOL_FLAGS, env=env) as server:
        ws = WebSocket(server.port, "bench-client")
        messages = []
        try:
            assert ws.receive()["type"] == "status"
            status, accepted = server.request("/prompt", {"prompt": WORKFLOW, "client_id": "bench-client"})
            assert status == 200
            with contextlib.suppress(AssertionError, OSError):  # the socket closes under the reader
                while True:
                    messages.append(ws.receive())
        finally:
            ws.close()
        try:
            returncode = server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after the abort; log:\n{server.log.read_text()}") from None
        assert returncode in (-signal.SIGABRT, 134), returncode
        with pytest.raises(OSError):  # URLError is an OSError: nobody listens any more
            server.get("/system_stats")
    types = [m["type"] for m in messages]
    executing = [m["data"]["node"] for m in messages if m["type"] == "executing"]
    assert executing[-1] == "8", messages  # died in the sampler, before its first step finished
    assert "progress" not in types and "execution_error" not in types and "execution_success" not in types
    assert accepted["prompt_id"] in json.dumps(messages)
    log = server.log.read_text()
    assert "failed assertion" in log and "buffer is not large enough" in log
    assert log.endswith(MPS_ASSERTION), log[-600:]
    assert "Traceback" not in log and not list(node.comfyui.glob("core*"))


def test_failing_node_class_is_an_execution_error_and_the_server_lives_on(node, tmp_path):
    message = "MPS backend out of memory (MPS allocated: 17.84 GB, other allocations: 1.02 GB, max allowed: 18.13 GB)"
    env = _env(FAKE_COMFYUI_FAIL_CLASS="KSampler", FAKE_COMFYUI_FAIL_MESSAGE=message,
               FAKE_COMFYUI_STEP_SECONDS="0.005")
    with serving(node, tmp_path, "--cpu", "--listen", "127.0.0.1", env=env) as server:
        ws = WebSocket(server.port, "bench-client")
        try:
            assert ws.receive()["type"] == "status"
            status, accepted = server.request("/prompt", {"prompt": WORKFLOW, "client_id": "bench-client"})
            assert status == 200
            pid = accepted["prompt_id"]
            messages = ws.until_done(pid)
        finally:
            ws.close()
        types = [m["type"] for m in messages]
        assert "execution_error" in types and "execution_success" not in types and "executed" not in types
        error = next(m["data"] for m in messages if m["type"] == "execution_error")
        assert set(error) >= {"prompt_id", "node_id", "node_type", "executed", "exception_message",
                              "exception_type", "traceback", "current_inputs", "current_outputs"}
        assert (error["prompt_id"], error["node_id"], error["node_type"]) == (pid, "8", "KSampler")
        assert error["exception_message"] == message + "\n" and error["exception_type"] == "RuntimeError"
        assert {"1", "2", "7"} <= set(error["executed"]) and "8" not in error["executed"]
        assert error["current_inputs"]["seed"] == [42] and error["current_outputs"] == []
        assert error["traceback"] and all(isinstance(line, str) for line in error["traceback"])

        hist = server.wait_history(pid)
        assert hist["status"]["status_str"] == "error" and hist["status"]["completed"] is False
        assert hist["outputs"] == {}
        event, data = hist["status"]["messages"][-1]
        assert event == "execution_error" and data["node_type"] == "KSampler"
        assert data["exception_message"] == message + "\n"

        # Still serving: stats, an empty queue, and a prompt that avoids the failing class runs.
        assert server.get("/system_stats")[0] == 200
        assert server.get("/queue") == (200, {"queue_running": [], "queue_pending": []})
        custom = {k: v for k, v in _workflow().items() if k != "8"}
        custom.update({
            "11": {"class_type": "RandomNoise", "inputs": {"noise_seed": 42}},
            "12": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["5", 0]}},
            "13": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
            "14": {"class_type": "BasicScheduler", "inputs": {
                "model": ["1", 0], "scheduler": "simple", "steps": 4, "denoise": 1.0}},
            "15": {"class_type": "SamplerCustomAdvanced", "inputs": {
                "noise": ["11", 0], "guider": ["12", 0], "sampler": ["13", 0], "sigmas": ["14", 0],
                "latent_image": ["7", 0]}},
        })
        custom["9"]["inputs"]["samples"] = ["15", 0]
        custom["10"]["inputs"]["filename_prefix"] = "failing-class/after"
        status, accepted = server.request("/prompt", {"prompt": custom})
        assert status == 200, accepted
        after = server.wait_history(accepted["prompt_id"])
        assert after["status"]["status_str"] == "success", after["status"]
        assert after["outputs"]["10"]["images"][0]["subfolder"] == "failing-class"
    log = server.log.read_text()
    assert f"!!! Exception during processing !!! {message}" in log
    assert "Traceback (most recent call last)" in log and f"RuntimeError: {message}" in log
