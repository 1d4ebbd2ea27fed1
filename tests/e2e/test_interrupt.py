"""Kill `provision up` anywhere, run it again: it converges (issue 14).

Each case starts a bare node and a full `up` (models from the fake Hub, ComfyUI launched),
stops it at one point with one signal, then runs `up` again. To land *during* a step that
takes milliseconds here (and minutes on a real node), a watcher on the node freezes (SIGSTOP)
the step's process the moment it appears; the client is then signalled while that process is
stopped mid-way. The models case instead waits for half the UNet on disk (the Hub is
throttled) and the health case for ComfyUI started but not answering (a slow start-up).

After each case: the killed run leaves no process of its own on the node; the second `up`
succeeds without --break-lock, refetches (almost) nothing already on disk, and exactly one
ComfyUI runs. The figures go to docs/interruptions.md.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.e2e.conftest import HF_TOKEN
from tests.e2e.launch_helpers import listeners_of_node_user
from tests.e2e.test_up_models import UNET, VAE, dest, file_requests, node_exists, node_size, serve_big
from tests.harness.cli import cli_env

pytestmark = pytest.mark.e2e

# Freezes the first process of the node user whose command line matches: the step it belongs
# to is then stopped mid-way, however short it is.
FREEZER = r"""
import os, re, signal, sys, time
pattern, deadline, me = re.compile(sys.argv[2]), time.time() + float(sys.argv[3]), os.getpid()
uid = os.getuid()
while time.time() < deadline:
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (me, os.getppid()):
            continue
        try:
            if os.stat("/proc/" + name).st_uid != uid:
                continue
            with open("/proc/%s/cmdline" % name, "rb") as handle:
                args = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "provision-freezer" not in args and pattern.search(args.strip()):
            os.kill(int(name), signal.SIGSTOP)
            print(name, args, flush=True)
            sys.exit(0)
sys.exit(1)
"""
# What a step of `up` runs on the node, and what the killed run must not leave behind.
# (Anchored at the program: the shells around a command hold its text too.)
POINTS = {
    "venv": r"^\S*/uv venv |^\S*python\S* -m venv ",
    "torch": r"^\S*/uv pip install .*torch==|^\S*python\S* -m pip install .*torch==",
    "clone": r"^\S*git (-c \S+ )*clone .*/ComfyUI\.partial",
    "launch": r"^\S*launchctl bootstrap |^\S*python\S* (-\S+ )*\S*/launchctl bootstrap ",
}
# launch and health on an emulated Mac (launchd's bootstrap is the launch; on Linux the
# supervisor is started in the background and the step's command ends at once).
ON_A_MAC = ("launch", "health")
LEFTOVERS = r"provision-leash|hf_fetch|uv |pip |git |launchctl bootstrap"
SIGNALS = {"KILL": signal.SIGKILL, "INT": signal.SIGINT, "TERM": signal.SIGTERM}
UNET_BYTES = 24 * 1024 * 1024
VAE_BYTES = 3 * 1024 * 1024  # below the 4 MB range threshold: one stream


class Freezer:
    """Runs FREEZER on the node over its own SSH session, in a thread."""

    def __init__(self, node, pattern: str, seconds: float = 240) -> None:
        self.result: subprocess.CompletedProcess | None = None
        command = f"python3 - provision-freezer {shlex.quote(pattern)} {seconds}"
        self.thread = threading.Thread(target=self._run, args=(node, command, seconds), daemon=True)
        self.thread.start()

    def _run(self, node, command: str, seconds: float) -> None:
        self.result = node.ssh(command, check=False, input=FREEZER, timeout=seconds + 30)

    @property
    def froze(self) -> bool:
        return self.result is not None and self.result.returncode == 0


def leftovers(node) -> list[str]:
    out = node.ssh("ps -u $(id -u) -o pid=,stat=,args=", check=False).stdout
    return [line for line in out.splitlines()
            if re.search(LEFTOVERS, line) and "ps -u" not in line and "provision-freezer" not in line]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def start_up(node_yaml, home) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "provisioner", "up", str(node_yaml), "--no-tunnel"],
                            env=cli_env(home, {"HF_TOKEN": HF_TOKEN}), cwd=home, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def listed_spans(node) -> list[list[int]]:
    """The spans the UNet's range record says are on disk."""
    text = node.ssh(f"cat {dest('unet', UNET[1])}.partial.ranges", check=False).stdout
    return json.loads(text)["done"] if text.strip() else []


def range_start(request) -> int:
    return int(request.range.split("=")[1].split("-")[0]) if request.range else 0


@pytest.mark.parametrize("signame", list(SIGNALS))
@pytest.mark.parametrize("point", ["venv", "torch", "clone", "models", "stream", "launch", "health"])
def test_up_killed_anywhere_converges_on_the_next_run(point, signame, node_factory, laptop_home,
                                                      tmp_path, stand_ins, hub, record_property):
    node = node_factory(platform="macos" if point in ON_A_MAC else "linux", memory_gb=64)
    env = {"FAKE_COMFYUI_STARTUP_DELAY": "6"} if point == "health" else {}
    if point == "models":
        serve_big(hub, tmp_path, UNET, UNET_BYTES)
        hub.throttle(2 * 1024 * 1024)  # 8 connections: about 1.5 s for the UNet
    if point == "stream":
        serve_big(hub, tmp_path, VAE, VAE_BYTES)
        hub.throttle(512 * 1024)  # one connection: about 6 s for the VAE
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
        hf={"endpoint": hub.url}, quality="q8",
        # ranged above 4 MB, as the real UNet (12.7 GB) is above the default 256 MB
        downloads={"retries": 2, "backoff_seconds": 0, "range_threshold_mb": 4},
        comfyui={"repo": str(stand_ins.comfyui_repo), "ref": "v0.3.64", "env": env}))
    freezer = Freezer(node, POINTS[point]) if point in POINTS else None
    running = start_up(node_yaml, laptop_home)
    try:
        if freezer is not None:
            wait_for(lambda: freezer.froze or running.poll() is not None, 240, "never reached")
            assert freezer.froze, f"{point} never ran: {running.communicate()}"
        elif point == "models":
            wait_for(lambda: hub_sent(hub) > UNET_BYTES // 2 or running.poll() is not None, 240,
                     "the UNet never got half way")
        elif point == "stream":
            wait_for(lambda: hub_sent(hub, VAE) > VAE_BYTES // 3 or running.poll() is not None, 240,
                     "the VAE never got a third of the way")
        else:  # health: ComfyUI started, not answering yet
            wait_for(lambda: "main.py" in node.ssh("ps -u $(id -u) -o args=", check=False).stdout
                     or running.poll() is not None, 240, "ComfyUI never started")
        assert running.poll() is None, f"up ended before the {point} cut: {running.communicate()}"
        running.send_signal(SIGNALS[signame])
        out, err = running.communicate(timeout=90)
    finally:
        if running.poll() is None:
            running.kill()
            running.communicate()
    if signame == "KILL":
        assert running.returncode == -signal.SIGKILL
    else:
        assert running.returncode == (130 if signame == "INT" else 143), err
        assert "interrupted" in err and "re-run `provision up" in err, err
    # Nothing of the killed run goes on writing (the keeper stops it when the channel ends).
    wait_for(lambda: not leftovers(node), 20, f"left running: {leftovers(node)}")
    listed = listed_spans(node) if point == "models" else []
    kept = node_size(node, dest("vae", VAE[1]) + ".partial") if point == "stream" else 0
    assert not node_exists(node, "~/provision/state/hf_token"), "no token file, ever"

    hub.clear_requests()
    hub.throttle(None)
    again = subprocess.run([sys.executable, "-m", "provisioner", "up", str(node_yaml), "--no-tunnel",
                            "--json"], env=cli_env(laptop_home, {"HF_TOKEN": HF_TOKEN}),
                           cwd=laptop_home, text=True, capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert all(step["status"] in ("ok", "changed") for step in report["steps"]), report["steps"]
    assert len(listeners_of_node_user(node)) == 1, "exactly one ComfyUI"
    if point == "models":
        # Not one byte the killed run listed as on disk is asked for again (the unit tests
        # show the list holds all but what was in the air: tests/unit/node/test_hf_fetch_guard.py).
        asked = [(range_start(r), range_start(r) + r.bytes_sent) for r in file_requests(hub, "GET", UNET)]
        refetched = sum(max(0, min(end, e) - max(start, s)) for start, end in asked for s, e in listed)
        record_property("listed_bytes", sum(e - s for s, e in listed))
        record_property("refetched_bytes", refetched)
        assert sum(e - s for s, e in listed) > UNET_BYTES // 4, "the kill came mid-file"
        assert refetched == 0, (listed, asked)
    if point == "stream":
        # One stream appends: the next run asks from the partial's end, nothing before it.
        starts = [range_start(r) for r in file_requests(hub, "GET", VAE)]
        record_property("kept_bytes", kept)
        assert kept > VAE_BYTES // 4 and starts and min(starts) >= kept, (kept, starts)


def hub_sent(hub, repo_file=UNET) -> int:
    return sum(r.bytes_sent for r in file_requests(hub, "GET", repo_file))


def test_a_disk_that_fills_mid_download_says_so_keeps_the_bytes_and_resumes_once_freed(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    """The UNet's folder is a small tmpfs (mounting needs root: skipped without it); growing
    the tmpfs is the user freeing space."""
    node = node_factory(platform="linux", memory_gb=64)
    serve_big(hub, tmp_path, UNET, UNET_BYTES)
    folder = node.home / "provision" / "ComfyUI" / "models" / "unet"
    folder.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=8m,uid={node.uid},mode=0755",
                              "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        subprocess.run(["chown", "-R", f"{node.uid}", str(node.home / "provision")], check=True)
        node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(
            hf={"endpoint": hub.url}, quality="q8",
            downloads={"retries": 2, "backoff_seconds": 0, "range_threshold_mb": 4}))
        # At loopback speed the tmpfs fills faster than a loaded machine's checkpoints list
        # what was written; a network's pace (the hub's cap) is what a real disk fills at.
        hub.throttle(4 * 1024 * 1024)
        full = subprocess.run([sys.executable, "-m", "provisioner", "up", str(node_yaml),
                               "--no-launch"], env=cli_env(laptop_home, {"HF_TOKEN": HF_TOKEN}),
                              cwd=laptop_home, text=True, capture_output=True, timeout=600)
        assert full.returncode == 1
        said = " ".join(full.stderr.split())
        assert "disk is full writing flux1-dev-Q8_0.gguf" in said and " free on " in said, said
        assert "still to fetch" in said and "free space on the node" in said, said
        listed = listed_spans(node)
        assert sum(e - s for s, e in listed) > 4 * 1024 * 1024, "the bytes written are kept"

        subprocess.run(["mount", "-o", "remount,size=64m", str(folder)], check=True)
        hub.throttle(None)
        hub.clear_requests()
        again = subprocess.run([sys.executable, "-m", "provisioner", "up", str(node_yaml),
                                "--no-launch"], env=cli_env(laptop_home, {"HF_TOKEN": HF_TOKEN}),
                               cwd=laptop_home, text=True, capture_output=True, timeout=600)
        assert again.returncode == 0, again.stderr
        asked = [(range_start(r), range_start(r) + r.bytes_sent) for r in file_requests(hub, "GET", UNET)]
        assert not any(max(0, min(end, e) - max(start, s)) for start, end in asked for s, e in listed)
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
