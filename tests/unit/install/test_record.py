"""What ``up`` records in state.json, and the health check later commands build from it:
what is installed accumulates across runs, and a node installed without models is not
expected to list any."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from provisioner.core.config import NodeConfig
from provisioner.core.units import GIB
from provisioner.install.catalog import load_catalog
from provisioner.install.engine import StepResult
from provisioner.install.record import (health_as_installed, installed_port, installed_state,
                                        rebooted_since_up, up_time)
from provisioner.install.sizing import SizingOptions, choose_models
from provisioner.install.steps.wait_http import WaitHttpStep
from provisioner.node.facts import assumed_facts
from provisioner.node.layout import node_paths

CFG = NodeConfig(name="m4", host="h")
FACTS = assumed_facts(64 * GIB)
PATHS = node_paths(CFG, FACTS)
PLAN = choose_models(FACTS, load_catalog(), SizingOptions.from_config(CFG))
NOW = datetime(2026, 12, 7, 5, 0, tzinfo=timezone(timedelta(hours=1)))
OLD_COMFYUI = {"repo": "https://example.test/ComfyUI.git", "ref": "v0.0.1"}


def results(**statuses: str) -> list[StepResult]:
    return [StepResult(name=name.replace("_", "-"), kind="command", status=status, duration=0.1)
            for name, status in statuses.items()]


# (this run's steps, the previous record) -> last_up, and whose ComfyUI ref is recorded
RUNS = [
    (results(comfyui="changed", gguf_node="changed", models="changed", health="ok"), {},
     {"status": "ok", "failed_step": None, "steps_done": ["comfyui", "gguf-node", "health", "models"]},
     "config"),
    # `up --no-models` after a full up: the models stay recorded as installed
    (results(comfyui="ok", models="skipped", health="ok"),
     {"last_up": {"steps_done": ["comfyui", "models"]}, "comfyui": OLD_COMFYUI},
     {"status": "ok", "failed_step": None, "steps_done": ["comfyui", "health", "models"]},
     "config"),
    (results(comfyui="changed", venv="failed"), {},
     {"status": "failed", "failed_step": "venv", "steps_done": ["comfyui"]}, "config"),
    # ComfyUI was not checked out in this run (it failed before): keep the ref that is there
    (results(venv="failed"), {"last_up": {"steps_done": ["comfyui"]}, "comfyui": OLD_COMFYUI},
     {"status": "failed", "failed_step": "venv", "steps_done": ["comfyui"]}, "previous"),
    (results(comfyui="would-change"), {}, {"status": "ok", "failed_step": None, "steps_done": []},
     "none"),
]


@pytest.mark.parametrize("steps, previous, last_up, comfyui", RUNS)
def test_what_is_installed_accumulates_across_runs(steps, previous, last_up, comfyui):
    state = installed_state(CFG, FACTS, PLAN, PATHS, steps, previous, now=NOW)
    assert state["last_up"] == dict(last_up, at="2026-12-07T04:00:00+00:00", booted_at=None)
    expected = {"config": CFG.comfyui.model_dump(), "previous": OLD_COMFYUI, "none": None}[comfyui]
    assert state["comfyui"] == expected


def test_the_record_names_the_node_its_paths_python_models_and_port():
    previous = {"downloads_verified": {"unet": "sha"}, "gguf_node": {"ref": "kept"}}
    state = installed_state(CFG, FACTS, PLAN, PATHS, results(models="changed"), previous)
    assert (state["node"], state["platform"], state["workdir"]) == ("m4", "macos", PATHS.workdir)
    assert state["paths"] == PATHS.model_dump() and state["remote_port"] == 8188
    assert state["model_plan"] == {"model": PLAN.model, "quality": PLAN.quality}
    assert [m["dest"] for m in state["models"]] == \
        [f"{PATHS.models}/{f.folder}/{f.file}" for f in PLAN.files]
    assert state["python"]["version"].startswith("3.")
    assert state["gguf_node"] == {"ref": "kept"} and state["downloads_verified"] == {"unet": "sha"}


HEALTH = WaitHttpStep(name="health", port=8188, device="mps", log="/w/comfyui.log", when=False,
                      expect_unet="flux1-dev-Q8_0.gguf", expect_clips=["t5.gguf", "clip_l.safetensors"])

# (state.json, node.yaml's port) -> the port checked, whether the models are expected
INSTALLED = [
    ({}, 8188, 8188, False),  # nothing recorded: node.yaml's port, no models
    ({"remote_port": 8190, "last_up": {"steps_done": ["comfyui", "models"]}}, 8188, 8190, True),
    ({"remote_port": 8190, "last_up": {"steps_done": ["comfyui"]}}, 8188, 8190, False),  # --no-models
    ({"remote_port": None, "last_up": None}, 9000, 9000, False),
    ({"remote_port": "8191", "last_up": {"steps_done": ["models"]}}, 8188, 8191, True),
]


@pytest.mark.parametrize("state, yaml_port, port, models", INSTALLED)
def test_the_health_check_is_of_what_up_installed(state, yaml_port, port, models):
    cfg = NodeConfig(host="h", tunnel={"remote_port": yaml_port})
    health = health_as_installed(HEALTH, state, cfg)
    assert installed_port(state, cfg) == port
    assert (health.port, health.when) == (port, True)
    if models:
        assert (health.expect_unet, health.expect_clips) == (HEALTH.expect_unet, HEALTH.expect_clips)
    else:
        assert (health.expect_unet, health.expect_clips) == (None, [])
    assert (health.device, health.log) == (HEALTH.device, HEALTH.log)


def test_the_record_says_when_up_ran_and_on_which_boot():
    facts = FACTS.model_copy(update={"booted_at": 1796600000})
    state = installed_state(CFG, facts, PLAN, PATHS, results(health="ok"), {})
    assert state["last_up"]["booted_at"] == 1796600000
    at = up_time(state)
    assert at is not None and at.tzinfo is not None
    assert abs((datetime.now(timezone.utc) - at).total_seconds()) < 60


UP = {"at": "2026-12-07T04:00:00+00:00", "steps_done": ["launch"]}
AT = int(datetime(2026, 12, 7, 4, 0, tzinfo=timezone.utc).timestamp())

# (last_up in state.json, the node's boot time now) -> rebooted since that up?
REBOOTS = [
    ({**UP, "booted_at": AT - 3600}, AT - 3600, False),  # the same boot
    ({**UP, "booted_at": AT - 3600}, AT - 3599, False),  # Linux btime jitter
    ({**UP, "booted_at": AT - 3600}, AT + 600, True),  # booted again after the up
    # a Mac whose clock is hours behind the laptop's: the boot times still compare
    ({**UP, "booted_at": AT - 9 * 3600}, AT - 2 * 3600, True),
    ({**UP, "booted_at": None}, AT + 600, True),  # boot time unknown then: the up's time
    ({**UP, "booted_at": None}, AT - 600, False),
    ({"steps_done": ["launch"]}, AT + 600, False),  # an old record: no time at all
    ({**UP, "at": "not a time"}, AT + 600, False),
    ({**UP, "at": "2026-12-07T04:00:00"}, AT + 600, True),  # a naive time is UTC
    ({**UP, "booted_at": AT - 3600}, None, False),  # the boot time cannot be read now
    (None, AT, False),  # up never ran
]


@pytest.mark.parametrize("last_up, booted_at, rebooted", REBOOTS)
def test_a_reboot_since_the_last_up_is_seen_from_the_boot_times(last_up, booted_at, rebooted):
    assert rebooted_since_up({"last_up": last_up}, booted_at) is rebooted



def test_a_run_that_changed_nothing_keeps_the_record_so_a_no_op_up_writes_no_state():
    facts = FACTS.model_copy(update={"booted_at": 1_765_000_000})
    first = installed_state(CFG, facts, PLAN, PATHS, results(comfyui="changed"), {}, now=NOW)
    later = NOW + timedelta(hours=2)
    # the same boot (Linux's btime moves by a second or so): nothing changed, nothing to write
    same = facts.model_copy(update={"booted_at": 1_765_000_001})
    assert installed_state(CFG, same, PLAN, PATHS, results(comfyui="ok"), first, now=later) == first
    # a change, a failure or another boot records this run
    for steps, booted in ((results(comfyui="changed"), 1_765_000_000),
                          (results(comfyui="failed"), 1_765_000_000),
                          (results(comfyui="ok"), 1_765_009_999)):
        again = installed_state(CFG, facts.model_copy(update={"booted_at": booted}), PLAN, PATHS,
                                steps, first, now=later)
        assert again["last_up"]["at"] == "2026-12-07T06:00:00+00:00"
