"""The smoke step's pure parts: what an image is made with, when to make another, the line."""

from __future__ import annotations

import json

from provisioner.install.steps.smoke import SmokeStep, changed_parts, first_image_line

MODELS = [{"role": "unet", "dest": "/w/ComfyUI/models/unet/flux1-dev-Q8_0.gguf", "sha256": "a" * 64},
          {"role": "t5", "dest": "/w/ComfyUI/models/clip/t5.gguf", "sha256": "b" * 64},
          {"role": "clip_l", "dest": "/w/ComfyUI/models/clip/clip_l.safetensors", "sha256": None},
          {"role": "vae", "dest": "/w/ComfyUI/models/vae/ae.safetensors", "sha256": "c" * 64}]


def step(**changes) -> SmokeStep:
    fields = dict(name="smoke", port=8188, model="dev", models=MODELS, log="/w/logs/comfyui.log",
                  argv=["main.py", "--fp32-vae"], record="/w/state/smoke.json", pull_to="/tmp/out",
                  versions={"torch": "2.3.1", "comfyui": "v0.3.64", "gguf_node": "795e451",
                            "platform": "macos", "macos": "15.1"})
    fields.update(changes)
    return SmokeStep(**fields)


def record(ok=True, **made_with_changes) -> str:
    made_with = dict(step().made_with(), **made_with_changes)
    return json.dumps({"ok": ok, "error": None if ok else "all black", "made_with": made_with})


def test_a_recorded_success_with_the_same_set_is_left_alone():
    assert step().decide(record()) is None


def test_no_record_a_failed_one_or_a_broken_one_makes_an_image():
    assert "no first image" in step().decide(None).reason
    assert "no first image" in step().decide("{not json").reason
    assert "failed (all black)" in step().decide(record(ok=False)).reason


def test_a_change_of_models_torch_comfyui_argv_or_workflow_makes_another():
    recorded = record()
    other_unet = [dict(MODELS[0], dest="/w/ComfyUI/models/unet/flux1-dev-Q4_K_S.gguf"), *MODELS[1:]]
    assert "other models" in step(models=other_unet).decide(recorded).reason
    new_hash = [dict(MODELS[0], sha256="d" * 64), *MODELS[1:]]
    assert "other models" in step(models=new_hash).decide(recorded).reason
    torch = dict(step().versions, torch="2.4.1")
    assert "other versions" in step(versions=torch).decide(recorded).reason
    assert "other argv" in step(argv=["main.py"]).decide(recorded).reason
    assert "other workflow" in step(steps=8).decide(recorded).reason
    # Where the models live and what the laptop calls its folder do not matter.
    assert step(pull_to="/elsewhere", record="/w/state/smoke.json").decide(recorded) is None


def test_macos_and_platform_do_not_count_only_what_the_image_is_made_with():
    versions = dict(step().versions, macos="15.2")
    assert step(versions=versions).decide(record()) is None


def test_changed_parts_names_each_part():
    assert changed_parts({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == "b, c"
    assert changed_parts({"a": 1}, {"a": 1}) == "settings"


def test_the_first_image_line():
    line = first_image_line({"seconds": 41.27, "load_s": 30.04, "sampling_s": 9.5,
                             "local_path": "/home/me/outputs/m4/smoke/flux-dev_00001_.png"})
    assert line == ("first image in 41.3 s (model load 30.0 s, sampling 9.5 s): "
                    "/home/me/outputs/m4/smoke/flux-dev_00001_.png")
    assert first_image_line({"seconds": 2.0, "image": "provision-smoke/x.png"}) == \
        "first image in 2.0 s (model load ?, sampling ?): provision-smoke/x.png"
