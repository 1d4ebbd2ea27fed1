"""`provision run` against real sshd nodes running the fake ComfyUI (tests/harness).

Each node is brought up from the stand-ins (`up --no-models --no-tunnel`) with stand-in model
files named like the plan's, as in test_bench.py. The tests assert on what was made, pulled,
verified and recorded, never on durations.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.e2e.test_bench import comfy_log, eventually, place_models
from tests.harness.cli import cli_env, run_cli

pytestmark = pytest.mark.e2e

PROMPTS = ["a red fox in the snow", "a lighthouse at dusk, oil painting", "a bowl of ramen"]


def run(target, home, *args, timeout=300):
    return run_cli("run", target, *args, home=home, timeout=timeout)


def ready_node(node_factory, tmp_path, stand_ins, home, name, step_seconds=None):
    """A node with ComfyUI up and stand-in model files; return (node, node.yaml, planned files)."""
    node = node_factory(platform="linux", name=name)
    env = {"FAKE_COMFYUI_STEP_SECONDS": str(step_seconds)} if step_seconds else {}
    comfyui = {"repo": str(stand_ins.comfyui_repo), "ref": "v0.3.64", "env": env}
    node_yaml = node.write_node_yaml(tmp_path / f"{name}.yaml", **stand_ins.node_fields(comfyui=comfyui))
    up = run_cli("up", node_yaml, "--no-models", "--no-tunnel", home=home, timeout=300)
    assert up.returncode == 0, up.stderr
    plan = run_cli("plan", node_yaml, "--json", home=home)
    assert plan.returncode == 0, plan.stderr
    files = json.loads(plan.stdout)["plan"]["files"]
    place_models(node, files)
    return node, node_yaml, {entry["role"]: entry["file"].rsplit("/", 1)[-1] for entry in files}


def fleet_of(tmp_path, node_yamls) -> Path:
    entries = [yaml.safe_load(Path(path).read_text()) for path in node_yamls]
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"nodes": entries}, sort_keys=False), encoding="utf-8")
    return path


def custom_sampler_workflow(files: dict, **extra_nodes) -> dict:
    """Flux in the custom-sampler form (FACTS.md), as a user's Export (API) would give it."""
    graph = {
        "10": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": files["unet"]}},
        "11": {"class_type": "DualCLIPLoaderGGUF",
               "inputs": {"clip_name1": files["clip_l"], "clip_name2": files["t5"], "type": "flux"}},
        "12": {"class_type": "VAELoader", "inputs": {"vae_name": files["vae"]}},
        "20": {"class_type": "CLIPTextEncodeFlux", "_meta": {"title": "Prompt"},
               "inputs": {"clip": ["11", 0], "clip_l": "x", "t5xxl": "x", "guidance": 3.5}},
        "21": {"class_type": "ModelSamplingFlux", "inputs": {"model": ["10", 0], "max_shift": 1.15,
                                                             "base_shift": 0.5, "width": 256, "height": 256}},
        "22": {"class_type": "BasicGuider", "inputs": {"model": ["21", 0], "conditioning": ["20", 0]}},
        "23": {"class_type": "RandomNoise", "inputs": {"noise_seed": 7}},
        "24": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "25": {"class_type": "BasicScheduler", "inputs": {"model": ["21", 0], "scheduler": "simple",
                                                          "steps": 2, "denoise": 1.0}},
        "26": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 256, "height": 256, "batch_size": 1}},
        "27": {"class_type": "SamplerCustomAdvanced",
               "inputs": {"noise": ["23", 0], "guider": ["22", 0], "sampler": ["24", 0],
                          "sigmas": ["25", 0], "latent_image": ["26", 0]}},
        "28": {"class_type": "VAEDecode", "inputs": {"samples": ["27", 0], "vae": ["12", 0]}},
        "29": {"class_type": "SaveImage", "inputs": {"images": ["28", 0], "filename_prefix": "mine"}},
    }
    graph.update(extra_nodes)
    return graph


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def embedded_prompt(path: Path) -> dict:
    """The API-format prompt ComfyUI's SaveImage wrote into the PNG (its tEXt chunk)."""
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        return json.loads(image.text["prompt"])


def start_run(target, home, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "provisioner", "run", str(target), *map(str, args)],
                            env=cli_env(home), cwd=str(home), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def nothing_queued(node) -> bool:
    return "got prompt" not in comfy_log(node)


def manifest_rows(out: Path) -> list[dict]:
    return json.loads((out / "manifest.json").read_text())["images"]


def test_a_prompt_list_on_one_node_is_pulled_verified_listed_and_a_rerun_skips_it(
        node_factory, laptop_home, tmp_path, stand_ins):
    node, node_yaml, _ = ready_node(node_factory, tmp_path, stand_ins, laptop_home, "solo")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n\n", encoding="utf-8")
    out = laptop_home / "outputs" / "solo" / "output" / "run"  # the default: pull_to/output/run
    args = ("--prompts", prompts, "--seeds", "2", "--steps", "2", "--size", "256x256")

    result = run(node_yaml, laptop_home, *args, "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert Path(report["out"]).resolve() == out.resolve()
    assert (report["jobs"], report["done"], report["failed"], report["skipped"]) == (6, 6, 0, 0)
    rows = manifest_rows(out)
    assert sorted((row["inputs"]["4.text"], row["seed"]) for row in rows) == \
        sorted((prompt, seed) for prompt in PROMPTS for seed in (1, 2))
    for row in rows:
        image = out / row["file"]
        data = image.read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"] and len(data) == row["bytes"]
        on_node = node.ssh(f"sha256sum provision/ComfyUI/output/run/{row['file']}").stdout.split()[0]
        assert on_node == row["sha256"] and row["node"] == "solo"
        # What ComfyUI made it from: this row's prompt and seed, the node's planned files.
        made_from = embedded_prompt(image)
        assert made_from["4"]["inputs"]["text"] == row["inputs"]["4.text"]
        assert made_from["8"]["inputs"]["seed"] == row["seed"]
        assert made_from["1"]["inputs"]["unet_name"].endswith(".gguf")
    with open(out / "manifest.csv", encoding="utf-8", newline="") as handle:
        assert sorted(r["sha256"] for r in csv.DictReader(handle)) == sorted(r["sha256"] for r in rows)
    queued = comfy_log(node).count("got prompt")
    assert queued == 6

    again = run(node_yaml, laptop_home, *args, "--json")
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["skipped"], json.loads(again.stdout)["done"]) == (6, 0)
    assert comfy_log(node).count("got prompt") == queued, "a re-run queues nothing"
    human = run(node_yaml, laptop_home, *args)
    assert human.returncode == 0 and "6 skipped (already in the manifest)" in human.stdout, human.stdout

    # Handing the node back: the harvest finds the batch's images in place and pulls none again.
    down = run_cli("down", node_yaml, "--json", home=laptop_home, timeout=300)
    assert down.returncode == 0, down.stderr
    harvest = json.loads(down.stdout)["harvest"]
    assert not [p["file"] for p in harvest["pulled"] if p["file"].startswith("output/run/")]
    assert harvest["skipped"] >= 6 and harvest["ok"]


def test_a_sweep_over_a_fleet_uses_both_nodes(node_factory, laptop_home, tmp_path, stand_ins):
    ready = [ready_node(node_factory, tmp_path, stand_ins, laptop_home, name, step_seconds=0.1)
             for name in ("east", "west")]
    fleet_yaml = fleet_of(tmp_path, [node_yaml for _, node_yaml, _ in ready])
    workflow = write_json(tmp_path / "flux_api.json", custom_sampler_workflow(ready[0][2]))
    out = tmp_path / "sweep"

    dry = run(fleet_yaml, laptop_home, workflow, "--set", "23.noise_seed=1..4",
              "--set", "25.steps=2,3", "--out", out, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert len(json.loads(dry.stdout)["planned"]) == 8
    assert all(nothing_queued(node) for node, _, _ in ready)

    result = run(fleet_yaml, laptop_home, workflow, "--set", "23.noise_seed=1..4",
                 "--set", "25.steps=2,3", "--out", out, "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["done"], report["failed"]) == (8, 0)
    rows = manifest_rows(out)
    assert sorted((r["inputs"]["23.noise_seed"], r["inputs"]["25.steps"]) for r in rows) == \
        sorted((seed, steps) for seed in range(1, 5) for steps in (2, 3))
    made_by = {row["node"] for row in rows}
    assert made_by == {"east", "west"}, made_by
    shares = {share["node"]: share for share in report["nodes"]}
    assert shares["east"]["jobs"] + shares["west"]["jobs"] == 8
    assert all(shares[name]["jobs"] >= 1 for name in ("east", "west"))
    for row in rows:
        assert embedded_prompt(out / row["file"])["23"]["inputs"]["noise_seed"] == row["seed"]


def test_a_node_that_dies_mid_batch_has_its_jobs_finished_by_the_other(
        node_factory, laptop_home, tmp_path, stand_ins):
    ready = [ready_node(node_factory, tmp_path, stand_ins, laptop_home, name, step_seconds=0.3)
             for name in ("doomed", "steady")]
    fleet_yaml = fleet_of(tmp_path, [node_yaml for _, node_yaml, _ in ready])
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"prompt number {i}" for i in range(10)), encoding="utf-8")
    out = tmp_path / "out"
    process = start_run(fleet_yaml, laptop_home, "--prompts", prompts, "--steps", "3",
                        "--size", "256x256", "--out", out, "--json")
    try:
        def doomed_made_one() -> bool:
            try:
                return any(row["node"] == "doomed" for row in manifest_rows(out))
            except (OSError, ValueError):
                return False

        assert eventually(doomed_made_one, timeout=120), "the first node never finished a job"
        ready[0][0].stop()  # sshd gone, its connections cut: the node dropped off the network
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    report = json.loads(stdout)
    assert (report["done"], report["failed"], report["unrun"]) == (10, 0, 0)
    shares = {share["node"]: share for share in report["nodes"]}
    assert shares["doomed"]["status"] == "left" and shares["doomed"]["handed_back"] >= 1
    assert report["requeued"] == shares["doomed"]["handed_back"]
    rows = manifest_rows(out)
    assert sorted(row["job"] for row in rows) == list(range(1, 11))
    assert {row["node"] for row in rows} == {"doomed", "steady"}


def test_a_missing_class_or_model_file_fails_before_anything_is_queued(
        node_factory, laptop_home, tmp_path, stand_ins):
    node, node_yaml, files = ready_node(node_factory, tmp_path, stand_ins, laptop_home, "picky")
    xlabs = custom_sampler_workflow(files, **{"30": {"class_type": "XlabsSampler", "inputs": {}}})
    result = run(node_yaml, laptop_home, write_json(tmp_path / "x.json", xlabs), "--seeds", "3")
    said = " ".join(result.stderr.split())
    assert result.returncode == 1, said
    assert "no node class 'XlabsSampler'" in said and "nothing was queued" in said, said
    assert "XLabs-AI/x-flux-comfyui" in said and "custom_nodes:" in said, said

    lora = custom_sampler_workflow(files, **{"31": {"class_type": "LoraLoaderModelOnly", "inputs": {
        "model": ["10", 0], "lora_name": "a.safetensors", "strength_model": 1.0}}})
    lora["21"]["inputs"]["model"] = ["31", 0]
    path = write_json(tmp_path / "lora.json", lora)
    place_models(node, [{"folder": "loras", "file": "a.safetensors"}])
    result = run(node_yaml, laptop_home, path, "--set", "31.lora_name=a.safetensors,b.safetensors")
    said = " ".join(result.stderr.split())
    assert result.returncode == 1, said
    assert "1 of 2 jobs" in said and "'b.safetensors' is not on the node" in said, said
    assert "loras:" in said, said
    assert nothing_queued(node)

    bad = run(node_yaml, laptop_home, path, "--set", "99.seed=1..2")
    assert bad.returncode == 2 and "the workflow has no node '99'" in bad.stderr, bad.stderr


def test_ctrl_c_takes_the_batch_off_the_node_and_the_same_command_resumes(
        node_factory, laptop_home, tmp_path, stand_ins):
    node, node_yaml, _ = ready_node(node_factory, tmp_path, stand_ins, laptop_home, "paused",
                                    step_seconds=0.3)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"prompt number {i}" for i in range(8)), encoding="utf-8")
    out = tmp_path / "out"
    args = ("--prompts", prompts, "--steps", "3", "--size", "256x256", "--out", out, "--json")
    process = start_run(node_yaml, laptop_home, *args)
    try:
        def made_one() -> bool:
            try:
                return len(manifest_rows(out)) >= 1
            except (OSError, ValueError):
                return False

        assert eventually(made_one, timeout=120), "no job finished"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "run the same command again" in stderr, stderr
    made = len(manifest_rows(out))
    assert made < 8
    port = yaml.safe_load(Path(node_yaml).read_text())["tunnel"]["remote_port"]

    def queue_empty() -> bool:
        answer = node.ssh(f"python3 -c \"import urllib.request; print(urllib.request.urlopen("
                          f"'http://127.0.0.1:{port}/queue').read().decode())\"").stdout
        queue = json.loads(answer)
        return not queue["queue_running"] and not queue["queue_pending"]

    assert eventually(queue_empty, timeout=30), "the batch's prompts stayed queued on the node"

    again = run(node_yaml, laptop_home, *args)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["skipped"] == made and report["done"] == 8 - made
    assert sorted(row["job"] for row in manifest_rows(out)) == list(range(1, 9))
