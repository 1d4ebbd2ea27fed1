"""Timing one prompt from ComfyUI's WebSocket messages (comfy/timing.py)."""

from __future__ import annotations

import pytest

from provisioner.comfy.timing import RunTimer
from tests.unit.bench.cases import PROMPT, messages, timer_for


def test_a_successful_prompt_gives_every_timing():
    timer = timer_for(messages(steps=4), submitted=0.0)
    assert timer.done and timer.error is None and not timer.sampler_cached
    timing = timer.timing()
    assert timing.total_s == pytest.approx(3.36)  # submit -> execution_success
    assert timing.first_step_s == pytest.approx(1.5 - 0.01)  # execution_start -> step 1
    assert timing.sampling_s == pytest.approx(1.5)  # step 1 -> step 4
    assert timing.steps_per_s == pytest.approx(3 / 1.5)
    assert (timing.steps_done, timing.steps_total) == (4, 4)
    assert timing.vae_decode_s == pytest.approx(0.30)  # executing 9 -> executing 10
    assert timing.cached_nodes == ["1", "2", "3"]
    assert set(timing.node_seconds) == {"4", "8", "9", "10"}
    assert len(timer.executed) == 1


def test_messages_of_other_prompts_are_ignored():
    timer = RunTimer(PROMPT, 0.0, ["8"], ["9"])
    for at, message in messages(prompt_id="someone-else"):
        assert timer.feed(at, message) is None
    assert not timer.done


def test_progress_is_reported_as_steps():
    timer = RunTimer(PROMPT, 0.0, ["8"], ["9"])
    steps = [timer.feed(at, m) for at, m in messages(steps=3)]
    assert [s for s in steps if s is not None] == [(1, 3), (2, 3), (3, 3)]


def test_an_execution_error_names_the_node_and_the_exception():
    sequence = messages()[:4] + [(0.5, {"type": "execution_error", "data": {
        "prompt_id": PROMPT, "node_id": "3", "node_type": "VAELoader",
        "exception_type": "safetensors.SafetensorError",
        "exception_message": "Error while deserializing header: header too large\n"}})]
    timer = timer_for(sequence)
    assert timer.done
    assert timer.error == ("VAELoader (node 3) failed: safetensors.SafetensorError: "
                           "Error while deserializing header: header too large")


def test_an_interrupted_prompt_is_an_error():
    timer = timer_for(messages()[:6] + [(2.0, {"type": "execution_interrupted", "data": {
        "prompt_id": PROMPT, "node_id": "8", "node_type": "KSampler"}})])
    assert timer.done and "interrupted" in timer.error


def test_a_cached_sampler_means_nothing_was_computed():
    timer = timer_for(messages(steps=0, cached=("1", "2", "3", "4", "5", "6", "7", "8", "9", "10")))
    assert timer.sampler_cached
    assert timer.timing().steps_per_s is None


def test_without_execution_success_the_final_executing_null_ends_the_run():
    sequence = [m for m in messages() if m[1]["type"] != "execution_success"]
    timer = timer_for(sequence)
    assert timer.done and timer.timing().total_s == pytest.approx(sequence[-1][0])


def test_a_single_step_has_no_rate():
    timing = timer_for(messages(steps=1)).timing()
    assert timing.steps_per_s is None and timing.steps_done == 1


