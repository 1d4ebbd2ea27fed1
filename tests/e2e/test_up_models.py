"""`provision up --no-launch`: model downloads on real sshd nodes from the local fake Hub.

The node's downloader (templates/hf_fetch.py) and the laptop's preflight (real
huggingface_hub) both talk to tests/harness/fake_hub.py on loopback; node.yaml points them
there with `hf: {endpoint: <hub.url>}`. Nothing is mocked: assertions read the node's disk
over SSH and the hub's own request log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import HF_TOKEN
from tests.harness.cli import cli_env, run_cli
from tests.harness.hub_files import make_gguf, make_safetensors, sha256_file

pytestmark = pytest.mark.e2e

MODELS = "~/provision/ComfyUI/models"
TOKEN_FILE = "~/provision/state/hf_token"
UNET = ("city96/FLUX.1-dev-gguf", "flux1-dev-Q8_0.gguf")
T5 = ("city96/t5-v1_1-xxl-encoder-gguf", "t5-v1_1-xxl-encoder-Q8_0.gguf")
CLIP = ("comfyanonymous/flux_text_encoders", "clip_l.safetensors")
VAE = ("black-forest-labs/FLUX.1-dev", "ae.safetensors")
# What a 64 GB Mac gets with quality: auto (q8), and where each file must land.
PLANNED = {UNET: "unet", T5: "clip", CLIP: "clip", VAE: "vae"}
LORA = ("XLabs-AI/flux-lora-collection", "realism_lora.safetensors")
CONTROLNET = ("XLabs-AI/flux-controlnet-canny-v3", "flux-canny-controlnet-v3.safetensors")


# -- helpers ------------------------------------------------------------------------------


def write_yaml(node, tmp_path, stand_ins, hub, **fields):
    fields.setdefault("downloads", {"retries": 1, "backoff_seconds": 0})
    return node.write_node_yaml(tmp_path / "n.yaml",
                                **stand_ins.node_fields(hf={"endpoint": hub.url}, **fields))


def up(node_yaml, home, *extra, token=HF_TOKEN, as_json=True, timeout=600):
    """Run `provision up --no-launch`; return (result, the --json report or None)."""
    args = ["up", node_yaml, "--no-launch", *(["--json"] if as_json else []), *extra]
    result = run_cli(*args, home=home, env={"HF_TOKEN": token} if token else None,
                     timeout=timeout)
    report = None
    if as_json and result.stdout.strip().startswith("{"):
        report = json.loads(result.stdout)
    return result, report


def statuses(report) -> dict[str, str]:
    return {step["name"]: step["status"] for step in report["steps"]}


def file_requests(hub, method=None, repo_file=None):
    """Requests for model file contents (`/resolve/`), optionally of one method and file."""
    def matches(path: str) -> bool:
        repo, _, tail = urllib.request.unquote(path)[1:].partition("/resolve/")
        return repo == repo_file[0] and tail.partition("/")[2] == repo_file[1]

    return [r for r in hub.requests
            if "/resolve/" in r.path and (method is None or r.method == method)
            and (repo_file is None or matches(r.path))]


def hub_sha256(hub, repo: str, file: str) -> str:
    """The sha256 the hub publishes for a file (its metadata API, as the real Hub's)."""
    with urllib.request.urlopen(f"{hub.url}/api/models/{repo}?blobs=true") as response:
        info = json.load(response)
    sibling = next(s for s in info["siblings"] if s["rfilename"] == file)
    return sibling["lfs"]["sha256"]


def hub_size(hub, repo: str, file: str) -> int:
    with urllib.request.urlopen(f"{hub.url}/api/models/{repo}?blobs=true") as response:
        info = json.load(response)
    return next(s for s in info["siblings"] if s["rfilename"] == file)["size"]


def dest(folder: str, file: str) -> str:
    return f"{MODELS}/{folder}/{file}"


def node_sha256(node, path: str) -> str:
    return node.ssh(f"sha256sum {path}").stdout.split()[0]


def node_size(node, path: str) -> int:
    return int(node.ssh(f"stat -c %s {path}").stdout)


def node_exists(node, path: str) -> bool:
    return node.ssh(f"test -e {path}", check=False).returncode == 0


def serve_big(hub, tmp_path, repo_file, size, quant="Q8_0"):
    """Replace a hub file with a valid one of about `size` bytes; return its path."""
    repo, file = repo_file
    path = tmp_path / f"big-{file}"
    if file.endswith(".gguf"):
        make_gguf(path, quant=quant, size_hint_bytes=size)
    else:
        make_safetensors(path, dtype="fp16", n_bytes=size)
    hub.add_file(repo, file, path)
    return path


def assert_verified(node, hub, planned=PLANNED):
    """Each file is in its folder with the hub's sha256, a matching record, no partial."""
    script = "; ".join(
        f"echo @@{index}; sha256sum {dest(folder, file)}; stat -c %s {dest(folder, file)}; "
        f"cat {dest(folder, file)}.verified; echo; ls {dest(folder, file)}.partial 2>&1"
        for index, ((_, file), folder) in enumerate(planned.items()))
    found = node.ssh(script, check=False).stdout.split("@@")[1:]
    for ((repo, file), folder), text in zip(planned.items(), found):
        lines = text.splitlines()[1:]
        want = hub_sha256(hub, repo, file)
        assert lines[0].split()[0] == want, (dest(folder, file), text)
        record = json.loads(lines[2])
        assert record["sha256"] == want and record["size"] == int(lines[1]), (file, record)
        assert "No such file" in lines[3], f"{file}.partial left behind"


# -- fresh download, no-op re-run ----------------------------------------------------------


def test_fresh_download_lands_verified_in_comfyui_folders_and_a_rerun_fetches_nothing(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub)
    result, _ = up(node_yaml, laptop_home, as_json=False)
    assert result.returncode == 0, result.stderr
    assert_verified(node, hub)
    # Every planned file was fetched once, whole, by the node.
    for repo_file in PLANNED:
        gets = file_requests(hub, "GET", repo_file)
        assert len(gets) == 1 and gets[0].range is None and not gets[0].dropped, gets
    # The gated VAE was fetched with a token; the others need none.
    assert file_requests(hub, "GET", VAE)[0].has_authorization
    assert "models" in result.stdout and "4 file(s) verified" in result.stdout, result.stdout
    for (_, file) in PLANNED:
        assert f"{file}: verified" in result.stdout
    assert not node_exists(node, TOKEN_FILE), "the token never goes to a file on the node"

    hub.clear_requests()
    again, report = up(node_yaml, laptop_home)
    assert again.returncode == 0, again.stderr
    changed = [(s["name"], s["detail"]) for s in report["steps"] if s["status"] == "changed"]
    assert changed == [] and statuses(report)["models"] == "ok", changed
    assert file_requests(hub) == [], "a verified file is neither re-checked on the Hub nor fetched"
    assert_verified(node, hub)


def test_loras_and_a_controlnet_from_node_yaml_land_in_their_folders(node_factory, laptop_home,
                                                                     tmp_path, stand_ins, hub):
    lora = make_safetensors(tmp_path / "lora.safetensors", dtype="bf16", n_bytes=300_000, seed=7)
    controlnet = make_safetensors(tmp_path / "cn.safetensors", dtype="fp16", n_bytes=200_000, seed=8)
    hub.add_file(*LORA, lora)
    hub.add_file(*CONTROLNET, controlnet)
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub,
                           loras=[{"repo": LORA[0], "file": LORA[1], "size_gb": 0.0003}],
                           controlnet={"repo": CONTROLNET[0], "file": CONTROLNET[1], "size_gb": 0.0002})
    result, report = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert_verified(node, hub, {**PLANNED, LORA: "loras", CONTROLNET: "controlnet"})
    assert node_sha256(node, dest("loras", LORA[1])) == sha256_file(lora)
    assert node_sha256(node, dest("controlnet", CONTROLNET[1])) == sha256_file(controlnet)


# -- resume --------------------------------------------------------------------------------


def test_a_cut_download_fails_keeping_the_partial_and_the_next_up_resumes_with_range(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    big = serve_big(hub, tmp_path, UNET, 8 * 1024 * 1024)
    cut = 3 * 1024 * 1024
    # retries: 1 -> two attempts in the run, both cut: the run gives up.
    hub.cut_after(*UNET, cut, times=2)
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub)
    failed, report = up(node_yaml, laptop_home)
    assert failed.returncode != 0
    assert UNET[1] in failed.stderr, failed.stderr
    assert "re-run" in failed.stderr and "resume" in failed.stderr, failed.stderr
    assert statuses(report)["models"] == "failed"
    partial = dest("unet", UNET[1]) + ".partial"
    assert node_size(node, partial) == 2 * cut, "both cut attempts kept their bytes"
    assert not node_exists(node, dest("unet", UNET[1]))
    attempts = file_requests(hub, "GET", UNET)
    assert [r.range for r in attempts] == [None, f"bytes={cut}-"], attempts
    # The other files were not held up by the one that failed.
    assert_verified(node, hub, {k: v for k, v in PLANNED.items() if k != UNET})

    hub.clear_requests()  # the hub is healed: cut_after's two cuts are spent
    result, report = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    gets = file_requests(hub, "GET", UNET)
    assert [r.range for r in gets] == [f"bytes={2 * cut}-"], gets
    assert gets[0].bytes_sent == big.stat().st_size - 2 * cut
    assert [r for r in file_requests(hub, "GET") if r not in gets] == [], "only the cut file is fetched"
    assert_verified(node, hub)
    assert "resuming" in next(s["detail"] for s in report["steps"] if s["name"] == "models")


def test_a_killed_downloader_leaves_its_partial_and_the_next_up_resumes(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    serve_big(hub, tmp_path, UNET, 6 * 1024 * 1024)
    cut = 2 * 1024 * 1024
    hub.cut_after(*UNET, cut, times=1)
    node = node_factory(platform="linux")
    # After the cut the downloader waits out a long backoff: it is killed during that wait.
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub, quality="q8",
                           downloads={"retries": 3, "backoff_seconds": 120})
    partial = dest("unet", UNET[1]) + ".partial"
    running = subprocess.Popen(
        [sys.executable, "-m", "provisioner", "up", str(node_yaml), "--no-launch"],
        env=cli_env(laptop_home, {"HF_TOKEN": HF_TOKEN}), cwd=laptop_home,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (node_exists(node, partial) and node_size(node, partial) == cut):
            assert running.poll() is None, running.communicate()
            assert time.monotonic() < deadline, "the download never reached the cut"
            time.sleep(0.2)
        # The fetcher itself, not the shells around it (their arguments name it too).
        pids = node.ssh("ps -u $(id -u) -o pid=,args= | "
                        "awk '$2 ~ /python/ && /[h]f_fetch\\.py/ {print $1}'").stdout.split()
        assert len(pids) == 1, pids
        node.ssh(f"kill -9 {pids[0]}")
        out, err = running.communicate(timeout=120)
    finally:
        if running.poll() is None:
            running.kill()
            running.communicate()
    assert running.returncode != 0
    assert "models" in err and "re-run" in err, err
    assert node_size(node, partial) == cut, "the bytes fetched before the kill are kept"
    assert not node_exists(node, TOKEN_FILE), "no token file, even when the step fails"

    hub.clear_requests()
    result, _ = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert [r.range for r in file_requests(hub, "GET", UNET)] == [f"bytes={cut}-"]
    assert_verified(node, hub)


def test_a_complete_partial_left_by_a_killed_run_is_verified_and_moved_into_place(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    """A run killed after the last byte arrived but before the rename: nothing is left to
    fetch (a Range request past the end would get 416 forever), only to verify."""
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub)
    assert up(node_yaml, laptop_home)[0].returncode == 0
    path = dest("unet", UNET[1])
    node.ssh(f"mv {path} {path}.partial && rm {path}.verified")
    hub.clear_requests()
    result, report = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert statuses(report)["models"] == "changed"
    assert file_requests(hub, "GET") == [], "every byte was already on the node"
    assert_verified(node, hub)


def test_a_single_cut_is_retried_with_range_in_the_same_run(node_factory, laptop_home, tmp_path,
                                                          stand_ins, hub):
    serve_big(hub, tmp_path, T5, 4 * 1024 * 1024)
    cut = 1_500_000
    hub.cut_after(*T5, cut, times=1)
    node = node_factory(platform="linux")
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub, quality="q8")
    result, report = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    gets = file_requests(hub, "GET", T5)
    assert [r.range for r in gets] == [None, f"bytes={cut}-"], gets
    assert gets[0].dropped and gets[0].bytes_sent == cut
    assert_verified(node, hub)


# -- corruption, quantization ----------------------------------------------------------------


def test_a_corrupted_file_is_detected_and_fetched_again(node_factory, laptop_home, tmp_path,
                                                       stand_ins, hub):
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub)
    assert up(node_yaml, laptop_home)[0].returncode == 0
    path = dest("unet", UNET[1])
    size = node_size(node, path)
    record = json.loads(node.ssh(f"cat {path}.verified").stdout)
    # The record keeps whole seconds: let the clock pass it so the overwrite gets a new mtime.
    while time.time() < record["mtime"] + 1.05:
        time.sleep(0.05)
    node.ssh(f"printf 'CORRUPTED' | dd of={path} bs=1 seek=4000 conv=notrunc status=none")
    assert node_size(node, path) == size
    assert node_sha256(node, path) != hub_sha256(hub, *UNET)

    hub.clear_requests()
    result, report = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert statuses(report)["models"] == "changed"
    assert [r.range for r in file_requests(hub, "GET", UNET)] == [None], "fetched again, whole"
    assert len(file_requests(hub, "GET")) == 1, "the untouched files are not fetched again"
    assert_verified(node, hub)


def test_a_gguf_of_the_wrong_quantization_fails_clearly(node_factory, laptop_home, tmp_path,
                                                       stand_ins, hub):
    # A Q4_K_S file served under the Q8_0 name: the sha256 matches what the hub says, the
    # quantization does not match what the catalog says.
    hub.add_file(*UNET, make_gguf(tmp_path / "q4.gguf", quant="Q4_K_S"))
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub)
    result, report = up(node_yaml, laptop_home)
    assert result.returncode != 0
    assert UNET[1] in result.stderr and "Q4_K" in result.stderr and "Q8_0" in result.stderr, result.stderr
    assert statuses(report)["models"] == "failed"
    path = dest("unet", UNET[1])
    assert not node_exists(node, path) and not node_exists(node, path + ".partial")
    assert not node_exists(node, path + ".verified")


# -- gated repos -------------------------------------------------------------------------------


def test_gated_without_a_token_fails_before_any_download_naming_the_licence_page(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub)
    result, _ = up(node_yaml, laptop_home, token=None)
    assert result.returncode != 0
    assert VAE[0] in result.stderr, result.stderr
    assert f"{hub.url}/{VAE[0]}" in result.stderr, "the page where the licence is accepted"
    assert "HF_TOKEN" in result.stderr
    assert file_requests(hub, "GET") == [], "no byte of any model file moved"
    assert not node_exists(node, "~/provision/venv"), "failed before any step ran"


def test_gated_with_a_wrong_token_fails_before_any_download_naming_the_repo(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    wrong = "hf_wrongTokenWrongToken0123456789abcd"
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub)
    result, _ = up(node_yaml, laptop_home, token=wrong)
    assert result.returncode != 0
    assert VAE[0] in result.stderr and "gated" in result.stderr, result.stderr
    assert f"{hub.url}/{VAE[0]}" in result.stderr
    assert wrong not in result.stdout + result.stderr
    assert file_requests(hub, "GET") == [], "no byte of any model file moved"
    assert any(r.method == "HEAD" and r.status == 403 for r in file_requests(hub, repo_file=VAE))
    assert not node_exists(node, "~/provision/venv")

    result, _ = up(node_yaml, laptop_home, token=HF_TOKEN)
    assert result.returncode == 0, result.stderr
    assert_verified(node, hub)


# -- disk ----------------------------------------------------------------------------------------


def test_too_little_disk_fails_in_preflight_with_the_numbers(node_factory, laptop_home, tmp_path,
                                                            stand_ins, hub):
    from provisioner.core.units import format_bytes

    node = node_factory(platform="macos", memory_gb=64)
    # The hub's files are small; the check adds 10% and a fixed headroom (2 GB) to the exact
    # bytes still to fetch, so 1 GB free is too little.
    free_kb = 1_000_000
    node.fake_macos_set(disk_free_kb=free_kb)
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub)
    result, _ = up(node_yaml, laptop_home)
    assert result.returncode != 0
    assert "not enough free disk" in result.stderr, result.stderr
    assert f"have {format_bytes(free_kb * 1024)}" in result.stderr, result.stderr
    exact = sum(hub_size(hub, *repo_file) for repo_file in PLANNED)
    assert f"{format_bytes(exact)} still to fetch" in result.stderr, "the Hub's exact sizes"
    assert "need " in result.stderr and "short by " in result.stderr
    assert file_requests(hub, "GET") == [], "nothing was downloaded"
    assert not node_exists(node, "~/provision/venv"), "nothing was installed"


def test_a_rerun_after_the_download_filled_the_disk_is_still_a_no_op(node_factory, laptop_home,
                                                                    tmp_path, stand_ins, hub):
    """The disk check counts what is still to fetch, not the files already on the node."""
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub)
    assert up(node_yaml, laptop_home)[0].returncode == 0
    # As on a real node after ~18 GB of models landed on a 30 GB disk.
    node.fake_macos_set(disk_free_kb=12_000_000)
    hub.clear_requests()
    result, report = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert report["changed"] == 0


# -- the token never leaks -------------------------------------------------------------------


class NodeWatcher(threading.Thread):
    """Sample the node while `up` runs: the node user's command lines over SSH, whether a
    token file exists (it never should: the token reaches the fetcher on its stdin), and (as
    root, on this machine) the environment of that user's processes and its files.

    Only the node user's processes: other tests on this machine plant the token on purpose
    (``down`` must find and remove it) under their own node users."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node = node
        self.stop_event = threading.Event()
        self.ps_samples: list[str] = []
        self.token_file_modes: set[str] = set()  # of any token file seen: there must be none
        self.environ_hits: list[int] = []
        self.files_with_token: set[str] = set()
        self.samples_with_fetcher = 0

    def run(self):
        script = (f"ps -u \"$(id -u)\" -o args; echo @@mode; "
                  f"stat -c %a {TOKEN_FILE} 2>/dev/null; true")
        while not self.stop_event.is_set():
            try:
                out = self.node.ssh(script, check=False, timeout=30).stdout
            except Exception:  # noqa: BLE001 - a sample lost to load is not a finding
                continue
            # The script itself shows in ps: its marker is found last, after the listing.
            ps, _, mode = out.rpartition("@@mode")
            self.ps_samples.append(ps)
            if "hf_fetch.py" in ps:
                self.samples_with_fetcher += 1
                self.scan_environ()
                if self.samples_with_fetcher <= 3:  # the token is in the fetcher's memory now
                    self.files_with_token |= files_containing(Path(self.node.home), HF_TOKEN.encode())
            if mode.strip():
                self.token_file_modes.add(mode.strip())
            self.stop_event.wait(0.1)

    def scan_environ(self):
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.stat(f"/proc/{pid}").st_uid != self.node.uid:
                    continue
                with open(f"/proc/{pid}/environ", "rb") as handle:
                    environ = handle.read()
            except OSError:
                continue
            if HF_TOKEN.encode() in environ:
                self.environ_hits.append(int(pid))


def files_containing(root: Path, needle: bytes, skip=frozenset()) -> set[str]:
    found = set()
    for folder, dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if name in skip and path.parent.name == "state":
                continue
            try:
                if path.is_symlink() or not path.is_file():
                    continue
                if needle in path.read_bytes():
                    found.add(str(path))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_the_token_never_appears_in_ps_files_or_output(node_factory, laptop_home, tmp_path,
                                                       stand_ins, hub, as_json):
    # A slow download: a big gated file, cut twice and retried after a backoff, keeps the
    # downloader (and the token in its memory) alive long enough to be sampled many times.
    serve_big(hub, tmp_path, VAE, 64 * 1024 * 1024)
    hub.cut_after(*VAE, 8 * 1024 * 1024, times=2)
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub,
                           downloads={"retries": 3, "backoff_seconds": 1.5})
    watcher = NodeWatcher(node)
    watcher.start()
    try:
        result, _ = up(node_yaml, laptop_home, as_json=as_json)
    finally:
        watcher.stop_event.set()
        watcher.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert_verified(node, hub)
    gated = file_requests(hub, "GET", VAE)
    assert len(gated) == 3 and all(r.has_authorization for r in gated), "the token was used"

    assert watcher.samples_with_fetcher >= 3, "the download was sampled while it ran"
    assert not any(HF_TOKEN in sample for sample in watcher.ps_samples), "token in a command line"
    assert watcher.environ_hits == [], "token in a process environment"
    assert watcher.token_file_modes == set(), "a token file appeared on the node during up"
    assert watcher.files_with_token == set(), "token in a file on the node during the download"

    assert not node_exists(node, TOKEN_FILE), "no token file after up"
    assert files_containing(Path(node.home), HF_TOKEN.encode()) == set()
    assert HF_TOKEN not in result.stdout and HF_TOKEN not in result.stderr
    assert files_containing(laptop_home, HF_TOKEN.encode()) == set(), "nor in the laptop's files"
