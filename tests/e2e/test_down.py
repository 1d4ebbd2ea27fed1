"""`provision down` against real sshd nodes running the fake ComfyUI: harvest, stop, secrets,
wipe levels, dry run, resume after a kill, a failed harvest blocking the wipe."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import HF_TOKEN
from tests.e2e.down_helpers import (
    MODELS,
    OLD_MTIME,
    OUTPUT,
    TOKEN_FILE,
    WORK,
    comfy_port,
    down,
    files_containing,
    generate,
    home_listing,
    local_files,
    node_files,
    node_yaml_for,
    place_downloaded_model,
    place_model_stand_ins,
    place_token_file,
    up,
    write_outputs,
)
from tests.e2e.launch_helpers import listeners_of_node_user
from tests.harness.cli import cli_env, run_cli

pytestmark = pytest.mark.e2e


def node_with_outputs(node_factory, tmp_path, stand_ins, home, **fields):
    node = node_factory(platform="linux")
    node_yaml = node_yaml_for(node, tmp_path, stand_ins, **fields)
    up(node_yaml, home)
    write_outputs(node)
    return node, node_yaml


def exists(node, path: str) -> bool:
    return node.ssh(f"test -e {path}", check=False).returncode == 0


def test_down_harvests_verified_stops_removes_the_token_and_keeps_models(
        node_factory, laptop_home, tmp_path, stand_ins):
    node, node_yaml = node_with_outputs(node_factory, tmp_path, stand_ins, laptop_home)
    place_model_stand_ins(node)
    # A real prompt through ComfyUI's HTTP API: the fake ComfyUI saves a PNG.
    generated = generate(node, comfy_port(node_yaml), "foxes/fox")
    model = place_downloaded_model(node)
    place_token_file(node)
    on_node = {f"output/{k}": v for k, v in node_files(node, OUTPUT).items()
               if k != "_output_images_will_be_put_here"}
    assert "output/foxes/fox_00001_.png" in on_node and generated
    workflow = node_files(node, f"{WORK}/ComfyUI/user/default/workflows")["flow.json"]

    result = down(node_yaml, laptop_home, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    # Byte-identical, subfolders and mtimes kept, in outputs/<name>/ beside the manifest.
    dest = laptop_home / "outputs" / node.name
    pulled = local_files(dest)
    for rel, (size, sha, mtime) in on_node.items():
        assert pulled[rel] == (size, sha, mtime), rel
    assert pulled["user/default/workflows/flow.json"] == workflow
    assert "user/default/comfy.settings.json" not in pulled, "only workflows from user/"
    assert "logs/comfyui.log" in pulled
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(
        pulled["output/ComfyUI_00001_.png"][2] / 1e9)) == OLD_MTIME
    manifest = json.loads((dest / "manifest.json").read_text())
    entries = {e["file"]: e for e in manifest["files"]}
    assert set(entries) == set(pulled) - {"manifest.json"}
    for rel, (size, sha, _) in on_node.items():
        assert (entries[rel]["bytes"], entries[rel]["sha256"]) == (size, sha)
        assert entries[rel]["pulled_at"].endswith("+00:00")
    assert not list(dest.rglob("*.part")), "no partial file left"

    # The JSON recap: pulled files with bytes, what was removed, the token check.
    assert {p["file"]: p["bytes"] for p in report["harvest"]["pulled"]} == \
        {rel: entries[rel]["bytes"] for rel in entries}
    assert report["harvest"]["bytes_pulled"] == sum(e["bytes"] for e in entries.values())
    removed = {(r["what"], r["path"].split(f"/{WORK}/", 1)[1]) for r in report["removals"] if r["done"]}
    assert ("token", "state/hf_token") in removed
    assert ("output", "ComfyUI/output/portraits/2024/fox_00001_.png") in removed
    assert report["secrets"]["check"] == "clean" and report["secrets"]["files_searched"] > 0
    assert report["service"]["stopped"] and report["service"]["port_free"]

    # On the node: stopped, port closed, token gone everywhere, outputs gone, models kept.
    assert listeners_of_node_user(node) == []
    assert not exists(node, TOKEN_FILE)
    assert files_containing(Path(node.home), HF_TOKEN.encode()) == set()
    assert set(node_files(node, OUTPUT)) == {"_output_images_will_be_put_here"}
    assert exists(node, model) and exists(node, f"{MODELS}/vae/ae.safetensors")
    assert exists(node, f"{WORK}/venv/bin/python")
    # The token never shows on the laptop side either.
    assert HF_TOKEN not in result.stdout + result.stderr
    assert files_containing(laptop_home, HF_TOKEN.encode()) == set()
    assert HF_TOKEN.encode() not in node.sshd_log.read_bytes()

    # Twice is harmless: nothing copied, nothing removed, still exit 0.
    again = down(node_yaml, laptop_home, "--json")
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["harvest"]["pulled"] == [] and second["removals"] == []
    assert local_files(dest).keys() == pulled.keys()


def test_wipe_all_leaves_the_home_as_it_was_before_up(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="linux")
    before = home_listing(node)
    node_yaml = node_yaml_for(node, tmp_path, stand_ins)
    up(node_yaml, laptop_home)
    write_outputs(node)
    place_downloaded_model(node)
    place_token_file(node)
    assert home_listing(node) != before
    on_node = node_files(node, OUTPUT)

    result = down(node_yaml, laptop_home, "--wipe", "all", "--json")
    assert result.returncode == 0, result.stderr
    assert home_listing(node) == before
    assert listeners_of_node_user(node) == []
    pulled = local_files(laptop_home / "outputs" / node.name)
    assert all(pulled[f"output/{rel}"][:2] == value[:2] for rel, value in on_node.items()
               if not rel.startswith("_"))
    report = json.loads(result.stdout)
    wiped = [r for r in report["removals"] if r["what"] == "workdir"]
    assert wiped[0]["done"] and wiped[0]["bytes"] > 1_000_000, "the venv and ComfyUI were there"

    again = down(node_yaml, laptop_home, "--wipe", "all")
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert home_listing(node) == before, "no lock folder made by a down with nothing to do"


def test_wipe_models_deletes_the_downloaded_models_only(node_factory, laptop_home, tmp_path, stand_ins):
    node, node_yaml = node_with_outputs(node_factory, tmp_path, stand_ins, laptop_home)
    unet = place_downloaded_model(node)
    lora = place_downloaded_model(node, "loras", "realism.safetensors")
    node.ssh(f"head -c 100 /dev/urandom > {MODELS}/unet/half.gguf.partial && "
             f"printf mine > {MODELS}/checkpoints/my-own.safetensors")
    result = down(node_yaml, laptop_home, "--wipe", "models")
    assert result.returncode == 0, result.stderr
    for path in (unet, unet + ".verified", lora, f"{MODELS}/unet/half.gguf.partial"):
        assert not exists(node, path), path
    assert exists(node, f"{MODELS}/checkpoints/my-own.safetensors"), "not downloaded by provision"
    assert exists(node, f"{WORK}/venv/bin/python") and exists(node, f"{WORK}/ComfyUI/main.py")
    assert "model file" in result.stdout


def test_dry_run_lists_copies_and_deletions_with_sizes_and_changes_nothing(
        node_factory, laptop_home, tmp_path, stand_ins):
    node, node_yaml = node_with_outputs(node_factory, tmp_path, stand_ins, laptop_home)
    place_token_file(node)
    before = node_files(node, WORK)
    result = down(node_yaml, laptop_home, "--wipe", "all", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "Would copy" in result.stdout and "portraits/2024/fox_00001_.png" in result.stdout
    assert "300.00 KB" in result.stdout and "120.00 KB" in result.stdout
    assert "Would delete on the node" in result.stdout and "work folder" in result.stdout
    assert "token file would be removed" in result.stdout
    assert node_files(node, WORK) == before
    assert listeners_of_node_user(node), "ComfyUI still runs"
    assert not (laptop_home / "outputs").exists()

    as_json = json.loads(down(node_yaml, laptop_home, "--dry-run", "--json").stdout)
    assert as_json["dry_run"] and not any(r["done"] for r in as_json["removals"])
    assert {f["file"] for f in as_json["harvest"]["to_pull"]} >= {"output/ComfyUI_00001_.png"}


def _partials_with_bytes(folder):
    """Names of the harvest's partial files that hold bytes (one can be renamed while we look)."""
    names = []
    for part in folder.glob(".*.part"):
        try:
            if part.stat().st_size:
                names.append(part.name)
        except FileNotFoundError:
            pass
    return names


def test_a_killed_harvest_resumes_without_duplicates(node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="linux")
    node_yaml = node_yaml_for(node, tmp_path, stand_ins)
    up(node_yaml, laptop_home)
    node.ssh(f"cd {OUTPUT} && mkdir -p batch && for i in $(seq 1 40); do "
             "head -c 4000000 /dev/urandom > batch/img_$i.png; done")
    on_node = node_files(node, f"{OUTPUT}/batch")
    dest = laptop_home / "outputs" / node.name
    process = subprocess.Popen([sys.executable, "-m", "provisioner", "down", str(node_yaml)],
                               env=cli_env(laptop_home), cwd=laptop_home, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            batch = dest / "output" / "batch"
            done = list(batch.glob("img_*.png")) if batch.exists() else []
            started = _partials_with_bytes(batch) if batch.exists() else []
            if len(done) >= 3 and started:
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    copied_before = len(list((dest / "output" / "batch").glob("img_*.png")))
    assert 3 <= copied_before < 40, f"the kill came mid-harvest ({copied_before} of 40 copied)"
    partial = _partials_with_bytes(dest / "output" / "batch")
    assert partial, "files were in flight, with bytes written, when the run was killed"
    assert set(node_files(node, f"{OUTPUT}/batch")) == set(on_node), "nothing deleted before it was safe"

    result = down(node_yaml, laptop_home, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    pulled = local_files(dest / "output" / "batch")
    assert {k: v[:2] for k, v in pulled.items()} == {k: v[:2] for k, v in on_node.items()}
    assert not [p for p in dest.rglob("*") if p.name.endswith(".part")], "no partial left"
    manifest = [e["file"] for e in json.loads((dest / "manifest.json").read_text())["files"]]
    assert len(manifest) == len(set(manifest)) and len([m for m in manifest if "/batch/" in m]) == 40
    again = {p["file"].rsplit("/", 1)[1]: p for p in report["harvest"]["pulled"]
             if "/batch/" in p["file"]}
    assert len(again) == 40 - copied_before, "what the first run finished is not copied again"
    assert any(again[name[1:-len(".part")]]["resumed_from"] > 0 for name in partial), \
        "a partial file is resumed, not fetched again"
    assert node_files(node, f"{OUTPUT}/batch") == {}


def test_a_failed_harvest_blocks_the_wipe_unless_outputs_are_discarded(
        node_factory, laptop_home, tmp_path, stand_ins):
    node, node_yaml = node_with_outputs(node_factory, tmp_path, stand_ins, laptop_home)
    place_token_file(node)
    # A file where the harvest needs a folder: output/portraits cannot be created locally.
    blocked = laptop_home / "outputs" / node.name / "output" / "portraits"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("in the way")

    result = down(node_yaml, laptop_home, "--wipe", "all")
    assert result.returncode == 1
    assert "refused because the harvest failed" in result.stderr + result.stdout
    assert "portraits/2024/fox_00001_.png" in result.stdout
    assert "--discard-outputs" in result.stderr
    assert exists(node, f"{WORK}/venv/bin/python"), "nothing was wiped"
    assert exists(node, f"{OUTPUT}/portraits/2024/fox_00001_.png"), "the uncopied file stays"
    assert not exists(node, f"{OUTPUT}/ComfyUI_00001_.png"), "the copied one is safe: removed"
    assert not exists(node, TOKEN_FILE), "the token goes whatever else fails"

    discarded = down(node_yaml, laptop_home, "--wipe", "all", "--discard-outputs")
    assert discarded.returncode == 0, discarded.stderr
    assert not exists(node, WORK)
    assert "--discard-outputs" in discarded.stdout


def test_a_token_left_in_a_file_is_found_and_named_without_being_shown(
        node_factory, laptop_home, tmp_path, stand_ins):
    node, node_yaml = node_with_outputs(node_factory, tmp_path, stand_ins, laptop_home)
    node.ssh(f"printf 'export HF_TOKEN=%s\\n' {HF_TOKEN} > {WORK}/logs/leaked.env")
    result = down(node_yaml, laptop_home, "--json")
    assert result.returncode == 1
    assert "leaked.env" in result.stderr
    report = json.loads(result.stdout)
    assert report["secrets"]["check"] == "found"
    assert [p.rsplit("/", 1)[1] for p in report["secrets"]["found_in"]] == ["leaked.env"]
    assert HF_TOKEN not in result.stdout + result.stderr
    assert HF_TOKEN.encode() not in node.sshd_log.read_bytes()

    without = down(node_yaml, laptop_home, token=None)
    assert without.returncode == 0, without.stderr
    assert "HF_TOKEN is not set on this machine" in without.stdout


def test_force_interrupts_the_running_prompt_after_saying_what_runs(
        node_factory, laptop_home, tmp_path, stand_ins):
    node, node_yaml = node_with_outputs(node_factory, tmp_path, stand_ins, laptop_home)
    place_model_stand_ins(node)
    port = comfy_port(node_yaml)
    running = generate(node, port, "slow/long", steps=5000, wait=False)  # 0.02 s a step: 100 s
    waiting = generate(node, port, "slow/next", steps=5, wait=False)

    busy = down(node_yaml, laptop_home, "--drain-timeout", "2")
    assert busy.returncode == 1
    assert "did not drain" in busy.stderr and "nothing was stopped" in busy.stderr
    assert listeners_of_node_user(node), "ComfyUI still runs"

    forced = down(node_yaml, laptop_home, "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert f"interrupting ComfyUI: running prompt {running}" in forced.stderr
    queue = json.loads(forced.stdout)["queue"]
    assert queue["interrupted"] == [running] and queue["dropped"] == [waiting]
    assert listeners_of_node_user(node) == []


def test_down_on_a_node_never_up_says_there_is_nothing_to_do(node_factory, laptop_home, tmp_path):
    node = node_factory(platform="linux")
    before = home_listing(node)
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml")
    for extra in ([], ["--wipe", "all"], ["--dry-run"]):
        result = down(node_yaml, laptop_home, *extra)
        assert result.returncode == 0, result.stderr
        assert "nothing to do" in result.stdout and "never ran" in result.stdout
    assert home_listing(node) == before
    assert not (laptop_home / "outputs").exists()


def test_a_folder_provision_did_not_make_is_left_alone(node_factory, laptop_home, tmp_path):
    node = node_factory(platform="linux")
    node.ssh("mkdir -p ~/provision && echo mine > ~/provision/notes.txt")
    node_yaml = node.write_node_yaml(tmp_path / "n.yaml")
    result = down(node_yaml, laptop_home, "--wipe", "all")
    assert result.returncode == 0 and "did not make it" in result.stdout
    assert node.ssh("cat ~/provision/notes.txt").stdout == "mine\n"


@pytest.mark.parametrize("args, message", [
    (["--wipe", "all", "--keep-outputs-remote"], "--keep-outputs-remote contradicts --wipe all"),
    (["--wipe", "everything"], "'everything' is not one of"),
])
def test_contradictory_or_bad_options_exit_2_naming_the_option(tmp_path, laptop_home, args, message):
    node_yaml = tmp_path / "n.yaml"
    node_yaml.write_text("host: 127.0.0.1\nport: 1\n")
    result = run_cli("down", node_yaml, *args, home=laptop_home)
    assert result.returncode == 2 and message in result.stderr


def test_on_a_mac_down_boots_the_agent_out_and_wipe_all_removes_its_plist(
        node_factory, laptop_home, tmp_path, stand_ins):
    node = node_factory(platform="macos", memory_gb=64)
    before = home_listing(node)
    node_yaml = node_yaml_for(node, tmp_path, stand_ins)
    up(node_yaml, laptop_home)
    write_outputs(node)
    place_token_file(node)
    plist = "Library/LaunchAgents/dev.provision.comfyui.plist"
    assert exists(node, plist)

    result = down(node_yaml, laptop_home, "--wipe", "all", "--json")
    assert result.returncode == 0, result.stderr
    bootouts = [c["argv"] for c in node.launchctl_calls() if c["argv"][:1] == ["bootout"]]
    assert bootouts == [["bootout", f"user/{node.uid}/dev.provision.comfyui"]]
    assert node.launchd_service("dev.provision.comfyui") is None, "no longer loaded"
    assert listeners_of_node_user(node) == []
    assert not exists(node, plist)
    # ~/Library/LaunchAgents is outside the work folder: `up` may have made it, `down` never
    # deletes anything there but its own plist.
    assert home_listing(node) - before <= {"./Library", "./Library/LaunchAgents"}
    assert not before - home_listing(node)
    report = json.loads(result.stdout)
    assert {r["what"] for r in report["removals"]} == {"token", "launch-agent", "workdir"}
    pulled = local_files(laptop_home / "outputs" / node.name)
    assert "output/portraits/2024/fox_00001_.png" in pulled
