"""`provision up`: the model download runs in the background while the software installs.

The `models` step starts right after `python` (the fetcher needs only a Python), on a channel
of its own, and `models-ready` waits for it before `launch`. The fake Hub throttles each
connection so the download outlasts the installs; its request log (time.monotonic() of this
process) is set against the steps' start times in `up --json` (Unix time of the CLI process).
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.e2e.conftest import HF_TOKEN
from tests.e2e.test_up_models import (
    TOKEN_FILE,
    UNET,
    VAE,
    assert_verified,
    dest,
    file_requests,
    node_exists,
    node_size,
    serve_big,
    statuses,
    up,
    write_yaml,
)
from tests.harness.cli import run_cli
from tests.harness.hub_files import make_gguf

pytestmark = pytest.mark.e2e

INSTALLS = ["venv", "constraints", "torch", "comfyui", "comfyui-requirements", "gguf-node",
            "gguf-requirements"]
RATE = 1024 * 1024  # bytes/s per connection: a 12 MiB unet takes ~12 s, the installs ~6 s here


def unix(monotonic: float) -> float:
    """Turn a time.monotonic() of this process into Unix time (the report's clock)."""
    return monotonic + (time.time() - time.monotonic())


def steps_by_name(report) -> dict[str, dict]:
    return {step["name"]: step for step in report["steps"]}


def ended(step: dict) -> float:
    return step["started"] + step["duration"]


def up_and_launch(node_yaml, home):
    """Run `provision up --json --no-tunnel` (launch included); return (result, report)."""
    result = run_cli("up", node_yaml, "--no-tunnel", "--json", home=home, env={"HF_TOKEN": HF_TOKEN},
                     timeout=600)
    text = result.stdout.strip()
    return result, json.loads(text) if text.startswith("{") else None


def comfyui_processes(node) -> str:
    return node.ssh("ps -u $(id -u) -o args= | grep '[m]ain.py' || true").stdout.strip()


def fetcher_pids(node) -> list[str]:
    return node.ssh("ps -u $(id -u) -o pid=,args= | awk '/[h]f_fetch\\.py/ {print $1}'").stdout.split()


def slow_node(node_factory, tmp_path, stand_ins, hub, size=12 * 1024 * 1024, **fields):
    """A Linux node whose unet comes from the Hub at RATE bytes/s: longer than the installs."""
    serve_big(hub, tmp_path, UNET, size)
    hub.throttle(RATE)
    node = node_factory(platform="linux")
    return node, write_yaml(node, tmp_path, stand_ins, hub, quality="q8", **fields)


def test_the_download_starts_before_the_installs_and_models_ready_waits_for_it(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    node, node_yaml = slow_node(node_factory, tmp_path, stand_ins, hub)
    result, report = up(node_yaml, laptop_home, as_json=True)
    assert result.returncode == 0, result.stderr
    steps = steps_by_name(report)
    names = [step["name"] for step in report["steps"]]
    assert names[:3] == ["workdir", "python", "models"] and names[-4:] == \
        ["models-ready", "launch", "health", "smoke"]
    assert steps["models"]["background"] and steps["models"]["status"] == "changed"
    assert all(steps[name]["status"] == "changed" for name in INSTALLS)

    unet = file_requests(hub, "GET", UNET)
    assert len(unet) == 1 and unet[0].ended is not None, unet
    first_byte_asked, last_byte_sent = unix(unet[0].started), unix(unet[0].ended)
    installs_start = steps["venv"]["started"]
    installs_end = ended(steps["gguf-requirements"])
    # The download began once Python was there, before the venv was even made ...
    assert ended(steps["python"]) <= first_byte_asked < ended(steps["venv"]), \
        (first_byte_asked - installs_start, steps["venv"])
    # ... went on while every install ran, and ended after them: models-ready waited for it.
    assert last_byte_sent > installs_end
    assert steps["models-ready"]["started"] >= installs_end - 0.01
    assert ended(steps["models-ready"]) >= last_byte_sent - 0.5
    assert ended(steps["models"]) <= ended(steps["models-ready"]) + 0.01
    assert steps["models-ready"]["status"] == "changed"
    assert "waited" in steps["models-ready"]["detail"]
    # The fetcher ran with the node's own Python (the venv did not exist when it started).
    assert_verified(node, hub)
    # The live progress showed the download going on while later steps ran.
    assert "background" in result.stderr and "models" in result.stderr

    # A re-run starts nothing in the background and waits for nothing.
    hub.clear_requests()
    again, report = up(node_yaml, laptop_home, as_json=True)
    assert again.returncode == 0, again.stderr
    assert report["changed"] == 0
    assert statuses(report)["models"] == "ok" and statuses(report)["models-ready"] == "ok"
    assert file_requests(hub) == []


def test_plan_and_dry_run_show_the_background_track_and_where_it_is_joined(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    node, node_yaml = slow_node(node_factory, tmp_path, stand_ins, hub)
    result = run_cli("plan", node_yaml, "--json", home=laptop_home)
    assert result.returncode == 0, result.stderr
    steps = {step["name"]: step for step in json.loads(result.stdout)["steps"]}
    assert steps["models"]["background"] and steps["models-ready"]["waits_for"] == "models"
    people = run_cli("plan", node_yaml, home=laptop_home)
    assert "download (background)" in people.stdout and "wait for models" in people.stdout

    dry, report = up(node_yaml, laptop_home, "--dry-run", as_json=True)
    assert dry.returncode == 0, dry.stderr
    steps = steps_by_name(report)
    assert steps["models"]["status"] == "would-change"
    assert steps["models"]["detail"].endswith("(in the background)")
    assert steps["models-ready"]["status"] == "would-change"
    assert steps["models-ready"]["detail"] == "models runs in the background until here"
    assert file_requests(hub, "GET") == [] and not node_exists(node, "~/provision/venv")


def test_a_download_that_fails_while_the_installs_run_stops_up_before_launch(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    # A Q4_K_S file under the Q8_0 name: fetched in a moment, refused on the quantization
    # check; the installs go on, models-ready fails with that error, launch never runs.
    hub.add_file(*UNET, make_gguf(tmp_path / "q4.gguf", quant="Q4_K_S"))
    node = node_factory(platform="linux")
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub, quality="q8")
    result, report = up_and_launch(node_yaml, laptop_home)
    assert result.returncode != 0
    assert "step models" in result.stderr and "Q4_K" in result.stderr and UNET[1] in result.stderr
    assert "re-run" in result.stderr, result.stderr
    steps = steps_by_name(report)
    assert steps["models"]["status"] == "failed" and steps["models-ready"]["status"] == "failed"
    assert "launch" not in steps and "health" not in steps, "stopped before launch"
    # It failed early, yet the installs were not cut short: the next run has less to do.
    assert ended(steps["models"]) < ended(steps["gguf-requirements"])
    assert all(steps[name]["status"] == "changed" for name in INSTALLS)
    assert comfyui_processes(node) == "", "ComfyUI was not started"


def test_a_failing_install_stops_the_download_and_the_next_up_resumes_it(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    node, node_yaml = slow_node(node_factory, tmp_path, stand_ins, hub)
    bad = {"repo": str(stand_ins.comfyui_repo), "ref": "v9.9.9"}
    write_yaml(node, tmp_path, stand_ins, hub, quality="q8", comfyui=bad)
    started = time.monotonic()
    result, report = up(node_yaml, laptop_home)
    took = time.monotonic() - started
    assert result.returncode != 0
    assert "step 'comfyui'" in result.stderr or "step comfyui" in result.stderr, result.stderr
    steps = steps_by_name(report)
    assert steps["comfyui"]["status"] == "failed"
    assert steps["models"]["status"] == "stopped", steps["models"]
    assert "models-ready" not in steps
    assert took < 12 * 1024 * 1024 / RATE, "up did not wait for the download to end"
    # Stopped before up returned: no fetcher left, no byte written afterwards.
    assert fetcher_pids(node) == []
    partial = dest("unet", UNET[1]) + ".partial"
    size = node_size(node, partial)
    time.sleep(1.5)
    assert node_size(node, partial) == size, "something kept writing after up returned"
    assert 0 < size < 12 * 1024 * 1024
    assert all(r.ended is not None for r in file_requests(hub, "GET", UNET)), "hub still sending"

    # Fixed, the next run clones ComfyUI around the models folder and resumes the download.
    hub.clear_requests()
    hub.throttle(None)
    write_yaml(node, tmp_path, stand_ins, hub, quality="q8")
    result, report = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert statuses(report)["comfyui"] == "changed" and statuses(report)["torch"] == "ok"
    assert node.ssh("git -C ~/provision/ComfyUI describe --tags").stdout.strip() == "v0.3.64"
    assert node.ssh("git -C ~/provision/ComfyUI status --porcelain --untracked-files=no").stdout == ""
    ranges = [r.range for r in file_requests(hub, "GET", UNET)]
    assert ranges and all(r is not None and not r.startswith("bytes=0-") for r in ranges), ranges
    assert_verified(node, hub)


class TokenWatcher(threading.Thread):
    """Sample the node while `up` runs: does a token file exist, is the token in any
    command line of the node user's processes, is the fetcher running."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node = node
        self.stop_event = threading.Event()
        self.samples = 0
        self.with_fetcher = 0
        self.token_files: set[str] = set()
        self.in_args = 0

    def run(self):
        script = ("ps -u \"$(id -u)\" -o args; echo @@files; "
                  f"ls {TOKEN_FILE} 2>/dev/null; find ~ -name 'hf_token*' 2>/dev/null; true")
        while not self.stop_event.is_set():
            try:
                out = self.node.ssh(script, check=False, timeout=30).stdout
            except Exception:  # noqa: BLE001 - a sample lost to load is not a finding
                continue
            ps, _, files = out.rpartition("@@files")
            self.samples += 1
            self.with_fetcher += "hf_fetch.py" in ps
            self.in_args += HF_TOKEN in ps
            self.token_files |= set(files.split())
            self.stop_event.wait(0.05)


def test_no_token_file_ever_appears_on_the_node_during_up(node_factory, laptop_home, tmp_path,
                                                         stand_ins, hub):
    # The gated VAE, slow: the fetcher holds the token (in memory) for seconds.
    serve_big(hub, tmp_path, VAE, 6 * 1024 * 1024)
    hub.throttle(RATE)
    node = node_factory(platform="linux")
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub, quality="q8")
    watcher = TokenWatcher(node)
    watcher.start()
    try:
        result, _ = up(node_yaml, laptop_home)
    finally:
        watcher.stop_event.set()
        watcher.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert all(r.has_authorization for r in file_requests(hub, "GET", VAE)), "the token was used"
    assert watcher.with_fetcher >= 3, "the download was sampled while it ran"
    assert watcher.token_files == set(), watcher.token_files
    assert watcher.in_args == 0, "the token was on a command line"
    assert HF_TOKEN not in result.stdout + result.stderr
