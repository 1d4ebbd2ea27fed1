"""`provision bench` against real sshd nodes running the fake ComfyUI (tests/harness).

Each test brings a node up (`up --no-models --no-tunnel` from the stand-ins), then places
small stand-in model files named like the plan's files where ComfyUI looks for them (the
fake only checks that a file exists and is not empty). Timings come from the stand-in's
sleeps: the tests assert on structure and on what was measured, never on durations.
"""

from __future__ import annotations

import csv
import json
import shlex
import struct
import threading
import time
from pathlib import Path

import pytest

from tests.harness.cli import run_cli

pytestmark = pytest.mark.e2e

MODELS = "provision/ComfyUI/models"
BENCH_OUTPUT = "provision/ComfyUI/output/bench"


def ready_node(node_factory, tmp_path, stand_ins, home, *, platform="linux", env=None, **node_kw):
    """Start a node, bring ComfyUI up on it, place the plan's model files; return (node, yaml)."""
    node = node_factory(platform=platform, **node_kw)
    comfyui = {"repo": str(stand_ins.comfyui_repo), "ref": "v0.3.64", "env": env or {}}
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml", **stand_ins.node_fields(comfyui=comfyui))
    up = run_cli("up", node_yaml, "--no-models", "--no-tunnel", home=home, timeout=300)
    assert up.returncode == 0, up.stderr
    plan = run_cli("plan", node_yaml, "--json", home=home)
    assert plan.returncode == 0, plan.stderr
    place_models(node, json.loads(plan.stdout)["plan"]["files"])
    return node, node_yaml


def place_models(node, files) -> None:
    commands = []
    for entry in files:
        folder = f"{MODELS}/{entry['folder']}"
        name = entry["file"].rsplit("/", 1)[-1]
        commands.append(f"mkdir -p {shlex.quote(folder)} && "
                        f"printf 'stand-in model\\n' > {shlex.quote(folder + '/' + name)}")
    node.ssh(" && ".join(commands))


def bench(node_yaml, home, *args, timeout=300):
    return run_cli("bench", node_yaml, *args, home=home, timeout=timeout)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def history_rows(home: Path) -> list[dict[str, str]]:
    path = home / ".config" / "provision" / "bench-history.csv"
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def eventually(predicate, timeout: float = 20.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` s pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def comfy_log(node) -> str:
    return node.ssh("cat provision/logs/comfyui.log").stdout


# -- linux node -----------------------------------------------------------------------------


def test_bench_measures_runs_and_memory_and_writes_json_history_and_plot(
        node_factory, laptop_home, tmp_path, stand_ins):
    node, node_yaml = ready_node(node_factory, tmp_path, stand_ins, laptop_home)
    before = node.connection_counts()
    plot = tmp_path / "bench.png"
    result = bench(node_yaml, laptop_home, "--json", "--runs", "2", "--steps", "6",
                   "--seed", "1000", "--plot", plot)
    assert result.returncode == 0, result.stderr
    after = node.connection_counts()
    report = json.loads(result.stdout)

    assert report["ok"] and report["model"] == "dev" and report["platform"] == "linux"
    assert report["device"] == "cpu" and "--fp32-vae" in report["comfyui_argv"]
    assert report["unet_loader"] == "UnetLoaderGGUF" and report["files"]["unet"].endswith(".gguf")
    runs = report["runs"]
    assert [(r["index"], r["warmup"], r["seed"], r["ok"]) for r in runs] == [
        (0, True, 1000, True), (1, False, 1001, True), (2, False, 1002, True)]
    for run in runs:
        timing = run["timing"]
        assert (timing["steps_done"], timing["steps_total"]) == (6, 6)
        assert timing["total_s"] > 0 and timing["first_step_s"] is not None
        assert timing["steps_per_s"] > 0 and timing["vae_decode_s"] is not None
        assert timing["cached_nodes"] == [] if run["warmup"] else "8" not in timing["cached_nodes"]
        (image,) = run["images"]
        assert image["black"] is False and (image["width"], image["height"]) == (1024, 1024)
        assert png_size(Path(image["local_path"])) == (1024, 1024)
        assert image["subfolder"] == "bench"
        assert run["memory"]["samples"] >= 1
        assert run["memory"]["peak_pressure"] in ("green", "yellow", "red")
    # Only the first run loads the models: the loaders are cached afterwards.
    assert set(runs[1]["timing"]["cached_nodes"]) >= {"1", "2", "3"}
    # One image per run on the node, all distinct (a new seed each time).
    listed = node.ssh(f"ls {BENCH_OUTPUT}").stdout.split()
    assert sorted(listed) == sorted(run["images"][0]["filename"] for run in runs)

    summary = report["summary"]
    assert summary["runs"] == 2
    assert summary["total_s"]["min"] <= summary["total_s"]["median"] <= summary["total_s"]["max"]
    assert summary["warmup_first_step_s"] is not None
    samples = report["memory"]
    assert samples and all(s["pressure"] in ("green", "yellow", "red") for s in samples)
    assert all(s["available_bytes"] > 0 for s in samples)
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)

    # One SSH connection, and the samples came from one long-lived command, not one each;
    # that command ends with the connection.
    assert after["auths"] - before["auths"] == 1
    assert after["exec"] - before["exec"] < len(samples)
    assert eventually(lambda: node.ssh("pgrep -f 'sample[-]end'", check=False).returncode == 1)

    rows = history_rows(laptop_home)
    assert report["history_file"].endswith("bench-history.csv")
    assert [(r["node"], r["model"], r["runs"], r["ok"]) for r in rows] == [(node.name, "dev", "2", "true")]
    assert float(rows[0]["median_s"]) == pytest.approx(summary["total_s"]["median"], abs=0.01)
    assert png_size(plot)[0] > 300 and report["plot_file"] == str(plot)

    again = bench(node_yaml, laptop_home, "--runs", "1", "--steps", "3")
    assert again.returncode == 0, again.stderr
    assert "warm-up" in again.stdout and "min / median / max" in again.stdout
    assert "peak pressure" in again.stdout and "steps/s" in again.stdout
    assert len(history_rows(laptop_home)) == 2


def test_an_all_black_image_fails_the_run_with_the_fp32_vae_hint(node_factory, laptop_home, tmp_path,
                                                                 stand_ins):
    _, node_yaml = ready_node(node_factory, tmp_path, stand_ins, laptop_home,
                              env={"FAKE_COMFYUI_BLACK_IMAGE": "1"})
    result = bench(node_yaml, laptop_home, "--json", "--steps", "2")
    assert result.returncode == 1
    assert "all black" in result.stderr and "--fp32-vae" in result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False and "--fp32-vae" in report["hint"]
    (warmup,) = report["runs"]  # the bench stops at the first failed run
    assert warmup["warmup"] and not warmup["ok"] and warmup["images"][0]["black"] is True
    assert history_rows(laptop_home)[0]["ok"] == "false"

    table = bench(node_yaml, laptop_home, "--steps", "2")
    assert table.returncode == 1 and "BLACK" in table.stdout


def test_a_model_file_missing_on_the_node_fails_before_submission(node_factory, laptop_home, tmp_path,
                                                                  stand_ins):
    node, node_yaml = ready_node(node_factory, tmp_path, stand_ins, laptop_home)
    result = bench(node_yaml, laptop_home, "--model", "schnell", "--steps", "2")
    assert result.returncode == 1
    assert "nothing was submitted" in result.stderr
    assert "flux1-schnell-" in result.stderr and "models/unet" in result.stderr
    assert "provision up" in result.stderr  # the hint
    assert "got prompt" not in comfy_log(node)
    assert not (laptop_home / ".config" / "provision" / "bench-history.csv").exists()


# -- fake macOS node ------------------------------------------------------------------------


class PressureRamp(threading.Thread):
    """Raise memory pressure and swap on a fake Mac as the bench's images appear: yellow
    after the warm-up's image, red with 2 GB more swap after the first measured run's."""

    def __init__(self, node) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.stop = threading.Event()
        self.stages_done = 0

    def images(self) -> int:
        listed = self.node.ssh(f"ls {BENCH_OUTPUT} 2>/dev/null", check=False).stdout.split()
        return len([name for name in listed if name.endswith(".png")])

    def run(self) -> None:
        stages = [(1, dict(pressure_level=2, swap_used_mb=800, swapouts=5000)),
                  (2, dict(pressure_level=4, swap_used_mb=2800, swapouts=90000))]
        for images, values in stages:
            while not self.stop.is_set() and self.images() < images:
                self.stop.wait(0.1)
            if self.stop.is_set():
                return
            self.node.fake_macos_set(**values)
            self.stages_done += 1


def test_bench_on_a_mac_samples_pressure_and_swap_and_compares_with_the_seed(
        node_factory, laptop_home, tmp_path, stand_ins):
    node, node_yaml = ready_node(node_factory, tmp_path, stand_ins, laptop_home, platform="macos",
                                 memory_gb=64, env={"FAKE_COMFYUI_STEP_SECONDS": "0.2"})
    node.fake_macos_set(pressure_level=1, swap_used_mb=0, swapouts=100)
    ramp = PressureRamp(node)
    ramp.start()
    try:
        result = bench(node_yaml, laptop_home, "--json", "--compare", "seed", "--runs", "3",
                       "--steps", "15")
    finally:
        ramp.stop.set()
        ramp.join(timeout=30)
    assert result.returncode == 0, result.stderr
    assert ramp.stages_done == 2
    report = json.loads(result.stdout)
    assert report["platform"] == "macos" and report["device"] == "mps"
    assert report["chip"] == "Apple M4 Pro" and report["quality"] == "q8"

    samples = report["memory"]
    assert samples[0]["pressure"] == "green" and samples[0]["swap_used_bytes"] == 0
    assert samples[-1]["pressure"] == "red"
    assert samples[-1]["swap_used_bytes"] == 2800 * 1024**2
    assert samples[-1]["swapouts"] - samples[0]["swapouts"] == 90000 - 100
    assert all(s["compressor_bytes"] is not None for s in samples)
    pressures = [s["pressure"] for s in samples]
    assert "yellow" in pressures  # the series shows the rise, not just its end

    runs = report["runs"]
    assert all(run["ok"] for run in runs) and len(runs) == 4
    assert runs[-1]["memory"]["peak_pressure"] == "red"
    assert report["summary"]["peak_pressure"] == "red"
    assert report["summary"]["swap_peak_bytes"] == 2800 * 1024**2
    assert runs[0]["memory"]["swap_before_bytes"] == 0
    assert all(run["memory"]["swap_delta_bytes"] >= 0 for run in runs)

    compare = report["compare"]
    assert compare["seed"]["memory_gb"] == 64 and compare["seed"]["model"] == "dev"
    assert compare["seed"]["time_s"] == 95
    assert compare["ratio"] == pytest.approx(report["summary"]["total_s"]["median"] / 95)
    assert any("15 steps" in note for note in compare["notes"])  # the seed ran 20

    table = bench(node_yaml, laptop_home, "--compare", "seed", "--runs", "1", "--steps", "2")
    assert table.returncode == 0, table.stderr
    out = table.stdout
    assert "Compared with the seed's table" in out
    assert "GGUF Q4_K_S + T5 Q4_K_M" in out and "95s" in out and "ratio measured / seed" in out
    assert "red" in out  # the node is still under red pressure
