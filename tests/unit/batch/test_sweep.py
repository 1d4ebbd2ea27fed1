"""Sweeps and jobs: ``--set`` parsing, value types, the prompt and seed sweeps, the product."""

from __future__ import annotations

import hashlib
import json

import pytest

from provisioner.batch.sweep import (
    Job,
    Sweep,
    coerce,
    expand_jobs,
    job_workflow,
    parse_set,
    positive_encoders,
    prompt_sweep,
    seed_sweep,
)
from provisioner.core.errors import UsageError
from tests.unit.batch.cases import custom, flux


def sha(graph: dict) -> str:
    text = json.dumps(graph, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- parse_set: which node ---------------------------------------------------------------------


def test_a_node_is_named_by_its_id():
    assert parse_set("8.steps=10,20", flux()) == Sweep("8", "steps", (10, 20), "--set 8.steps=10,20")


def test_a_node_is_named_by_its_unique_class():
    sweep = parse_set("KSampler.cfg=1,2.5", flux())
    assert (sweep.node_id, sweep.target, sweep.values) == ("8", "8.cfg", (1.0, 2.5))
    assert [type(value) for value in sweep.values] == [float, float]


def test_a_node_is_named_by_its_unique_title():
    workflow = flux()
    workflow["4"]["_meta"] = {"title": "Positive"}
    workflow["6"]["_meta"] = {"title": "Negative"}
    assert parse_set("Positive.text=a fox", workflow).node_id == "4"


def test_a_class_used_twice_is_ambiguous_and_the_ids_are_listed():
    with pytest.raises(UsageError) as raised:
        parse_set("CLIPTextEncode.text=a", flux())
    assert raised.value.message == "--set CLIPTextEncode.text=a: 2 nodes are 'CLIPTextEncode' (ids 4, 6)"
    assert raised.value.hint == "name the node by its id"


def test_an_unknown_node_lists_the_ids_in_numeric_order():
    with pytest.raises(UsageError) as raised:
        parse_set("99.seed=1", flux())
    assert raised.value.message == ("--set 99.seed=1: the workflow has no node '99' "
                                    "(its ids: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)")


@pytest.mark.parametrize("spec", ["8.steps", "steps=10", "8.steps="])
def test_a_malformed_set_shows_the_expected_form(spec):
    with pytest.raises(UsageError) as raised:
        parse_set(spec, flux())
    assert raised.value.message.startswith(f"--set {spec}: expected NODE.INPUT=VALUES")


def test_a_link_input_is_refused():
    with pytest.raises(UsageError) as raised:
        parse_set("8.positive=x", flux())
    assert raised.value.message == ("--set 8.positive=x: input 'positive' of node 8 is a link to "
                                    "node '5', not a value")
    assert raised.value.hint == "set an input that holds a value"


# -- parse_set: values -------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "values"), [
    ("8.seed=1..4", (1, 2, 3, 4)),
    ("8.seed=-1..1", (-1, 0, 1)),
    ("8.cfg=0.5..1.0:0.25", (0.5, 0.75, 1.0)),
    ("8.denoise=0.1..0.3:0.1", (0.1, 0.2, 0.3)),  # exact decimals: no 0.30000000000000004
    ("8.seed=3..3", (3,)),
    ('4.text=["a, b", "c"]', ("a, b", "c")),
    ("8.steps=[4, 8]", (4, 8)),
    ("8.sampler_name=euler, heun", ("euler", "heun")),
])
def test_values_expand_to_the_inputs_type(spec, values):
    got = parse_set(spec, flux()).values
    assert got == values
    assert [type(value) for value in got] == [type(value) for value in values]


@pytest.mark.parametrize(("spec", "message"), [
    ("8.seed=5..1", "the range 5..1 is empty or its step is not positive"),
    ("8.seed=1..8:0", "the range 1..8 is empty or its step is not positive"),
    ("8.seed=1.2.3..4", "1.2.3..4 is not a range of numbers"),
    ("8.steps=1..2:0.5", "'1.5' is not a whole number (the workflow's value is one)"),
    ("8.sampler_name=a,,b", "an empty value in the list"),
    ("4.text=[a", "not a JSON list"),
    ("4.text=[]", "the JSON list is empty"),
    ("8.seed=1..200000", "the range has 200000 values"),
])
def test_bad_values_are_refused_naming_the_option(spec, message):
    with pytest.raises(UsageError) as raised:
        parse_set(spec, flux())
    assert raised.value.message.startswith(f"--set {spec}: {message}")


def test_a_file_gives_one_value_per_non_empty_line(tmp_path):
    (tmp_path / "prompts.txt").write_text("a fox, at dawn\n\n   \n  a cat  \n", encoding="utf-8")
    sweep = parse_set("4.text=@prompts.txt", flux(), base_dir=tmp_path)
    assert sweep.values == ("a fox, at dawn", "a cat")
    assert sweep.source == "--set 4.text=@prompts.txt"


def test_a_missing_or_empty_file_is_named(tmp_path):
    with pytest.raises(UsageError) as raised:
        parse_set("4.text=@nope.txt", flux(), base_dir=tmp_path)
    assert raised.value.message.startswith(f"--set 4.text=@nope.txt: cannot read {tmp_path / 'nope.txt'}: ")
    assert "check the path" in raised.value.hint
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(UsageError) as raised:
        parse_set("4.text=@empty.txt", flux(), base_dir=tmp_path)
    assert raised.value.message == f"--set 4.text=@empty.txt: {tmp_path / 'empty.txt'} has no values"


# -- coerce ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "current", "expected"), [
    ("7", 3, 7),
    ("7.0", 3, 7),
    ("1e2", 3, 100),
    ("3", 1.0, 3.0),
    ("2.5", 1.0, 2.5),
    ("true", False, True),
    ("FALSE", True, False),
    ("12", "x", "12"),
    ("12", None, 12),
    ("1.5", None, 1.5),
    ("true", None, True),
    ("a fox", None, "a fox"),
    ("null", None, "null"),
    ('{"a": 1}', None, '{"a": 1}'),
])
def test_coerce_takes_the_current_values_type(text, current, expected):
    value = coerce(text, current, "--set x")
    assert (value, type(value)) == (expected, type(expected))


@pytest.mark.parametrize(("text", "current", "message"), [
    ("2.5", 3, "'2.5' is not a whole number"),
    ("nan", 3, "'nan' is not a whole number"),
    ("many", 3, "'many' is not a whole number"),
    ("yes", True, "'yes' is not true or false"),
    ("abc", 1.0, "'abc' is not a number"),
])
def test_coerce_refuses_a_value_of_the_wrong_type(text, current, message):
    with pytest.raises(UsageError) as raised:
        coerce(text, current, "--set 8.x=v")
    assert raised.value.message.startswith(f"--set 8.x=v: {message}")


# -- the prompt sweep --------------------------------------------------------------------------


def test_prompts_go_to_the_encoder_behind_the_samplers_positive_not_the_negative():
    assert prompt_sweep(flux(), ["a", "b"], "--prompts p.txt") == [
        Sweep("4", "text", ("a", "b"), "--prompts p.txt")]


def test_prompts_follow_the_guider_to_both_flux_text_inputs():
    assert prompt_sweep(custom(), ["a", "b"], "--prompts p.txt") == [
        Sweep("4", "clip_l", ("a", "b"), "--prompts p.txt"),
        Sweep("4", "t5xxl", ("a", "b"), "--prompts p.txt")]


def test_two_encoders_on_the_positive_are_ambiguous():
    workflow = flux()
    workflow["11"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "b", "clip": ["2", 0]}}
    workflow["12"] = {"class_type": "ConditioningCombine",
                      "inputs": {"conditioning_1": ["4", 0], "conditioning_2": ["11", 0]}}
    workflow["5"]["inputs"]["conditioning"] = ["12", 0]
    assert positive_encoders(workflow) == ["4", "11"]
    with pytest.raises(UsageError) as raised:
        prompt_sweep(workflow, ["a"], "--prompts p.txt")
    assert raised.value.message == ("--prompts p.txt: cannot tell which node the prompts go to: "
                                    "2 text encoders (ids 4, 11) feed the positive conditioning")
    assert raised.value.hint == "name it: --set NODE.text=@prompts.txt"


def test_no_encoder_on_the_positive_says_to_use_set():
    workflow = flux()
    del workflow["8"]
    with pytest.raises(UsageError) as raised:
        prompt_sweep(workflow, ["a"], "--prompts p.txt")
    assert raised.value.message.endswith("no CLIPTextEncode feeds a sampler's positive input")
    assert "--set NODE.text=" in raised.value.hint


# -- the seed sweep ----------------------------------------------------------------------------


def test_seeds_sweep_the_seed_input():
    assert seed_sweep(flux(), 3, 10, "--seeds 3") == [Sweep("8", "seed", (10, 11, 12), "--seeds 3")]


def test_seeds_sweep_every_seed_input_but_not_links():
    workflow = custom()
    workflow["14"] = {"class_type": "KSampler", "inputs": {"seed": 5}}
    workflow["15"] = {"class_type": "KSampler", "inputs": {"seed": ["16", 0]}}
    assert seed_sweep(workflow, 2, 1, "--seeds 2") == [
        Sweep("6", "noise_seed", (1, 2), "--seeds 2"), Sweep("14", "seed", (1, 2), "--seeds 2")]


def test_a_workflow_without_seed_is_refused():
    workflow = flux()
    del workflow["8"]["inputs"]["seed"]
    with pytest.raises(UsageError) as raised:
        seed_sweep(workflow, 2, 1, "--seeds 2")
    assert raised.value.message == "--seeds 2: the workflow has no seed input (seed, noise_seed)"
    assert "--set NODE.INPUT=1..N" in raised.value.hint


# -- expand_jobs -------------------------------------------------------------------------------


def test_jobs_are_the_product_first_group_outermost():
    workflow = flux()
    jobs = expand_jobs(workflow, [[parse_set("8.steps=10,20", workflow)],
                                  [parse_set("8.seed=1..3", workflow)]])
    assert [job.index for job in jobs] == [1, 2, 3, 4, 5, 6]
    assert [job.values for job in jobs] == [
        (("8.steps", steps), ("8.seed", seed)) for steps in (10, 20) for seed in (1, 2, 3)]
    assert [(job.workflow["8"]["inputs"]["steps"], job.workflow["8"]["inputs"]["seed"])
            for job in jobs] == [(10, 1), (10, 2), (10, 3), (20, 1), (20, 2), (20, 3)]


def test_sweeps_of_one_group_move_together():
    workflow = custom()
    jobs = expand_jobs(workflow, [prompt_sweep(workflow, ["a", "b"], "--prompts p"),
                                  seed_sweep(workflow, 2, 1, "--seeds 2")])
    assert [job.values for job in jobs] == [
        (("4.clip_l", text), ("4.t5xxl", text), ("6.noise_seed", seed))
        for text in ("a", "b") for seed in (1, 2)]


def test_an_input_set_twice_is_refused():
    workflow = flux()
    with pytest.raises(UsageError) as raised:
        expand_jobs(workflow, [[parse_set("8.seed=1,2", workflow)], seed_sweep(workflow, 2, 1, "--seeds 2")])
    assert raised.value.message == "--seeds 2: 8.seed is already set by --set 8.seed=1,2"


def test_a_jobs_key_is_the_sha256_of_its_workflow_without_the_output_prefix():
    workflow = flux()
    (job, _) = expand_jobs(workflow, [[parse_set("8.seed=5,6", workflow)]])
    expected = flux()
    expected["8"]["inputs"]["seed"] = 5
    expected["10"]["inputs"]["filename_prefix"] = ""
    assert job.key == sha(expected)  # run replaces the prefix: the user's own does not count
    renamed = flux()
    renamed["10"]["inputs"]["filename_prefix"] = "client/shoot-2"
    assert expand_jobs(renamed, [[parse_set("8.seed=5,6", renamed)]])[0].key == job.key
    assert job.workflow["10"]["inputs"]["filename_prefix"] == f"run/{job.key[:12]}"
    assert job.short_key == job.key[:12]
    expected["10"]["inputs"]["filename_prefix"] = f"run/{job.key[:12]}"
    assert job.workflow == expected
    assert workflow == flux()  # the canonical workflow is untouched


def test_keys_are_stable_across_calls_and_differ_between_jobs():
    def keys() -> list[str]:
        workflow = flux()
        return [job.key for job in expand_jobs(workflow, [[parse_set("8.seed=1..4", workflow)]])]

    first = keys()
    assert first == keys()
    assert len(set(first)) == 4


def test_no_sweep_is_one_job_of_the_workflow_as_is():
    (job,) = expand_jobs(flux(), [])
    unprefixed = flux()
    unprefixed["10"]["inputs"]["filename_prefix"] = ""
    assert (job.index, job.values, job.key) == (1, (), sha(unprefixed))


def test_several_savers_each_write_their_own_prefix():
    workflow = flux()
    workflow["11"] = {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "b"}}
    (job,) = expand_jobs(workflow, [])
    assert [job.workflow[i]["inputs"]["filename_prefix"] for i in ("10", "11")] == [
        f"run/{job.short_key}-10", f"run/{job.short_key}-11"]


def test_too_many_jobs_are_refused_before_any_is_made():
    big = [Sweep("8", "seed", tuple(range(400)), "--seeds 400")]
    steps = [Sweep("8", "steps", tuple(range(1, 401)), "--set 8.steps=1..400")]
    with pytest.raises(UsageError) as raised:
        expand_jobs(flux(), [big, steps])
    assert raised.value.message == "the sweeps make 160000 jobs"


# -- job_workflow and Job.seed -----------------------------------------------------------------


def test_job_workflow_sets_the_jobs_values_on_each_nodes_base():
    workflow = flux()
    (job,) = expand_jobs(workflow, [[parse_set("8.seed=9", workflow)]])
    assert job_workflow(job) is job.workflow
    base = flux()
    base["1"]["inputs"]["unet_name"] = "flux1-dev-Q4_K_S.gguf"
    graph = job_workflow(job, base)
    assert graph["1"]["inputs"]["unet_name"] == "flux1-dev-Q4_K_S.gguf"
    assert graph["8"]["inputs"]["seed"] == 9
    assert graph["10"]["inputs"]["filename_prefix"] == f"run/{job.short_key}"
    assert base["8"]["inputs"]["seed"] == 42 and base["10"]["inputs"]["filename_prefix"] == "bench/flux-dev"


def test_a_jobs_seed_is_the_swept_one_else_the_workflows():
    workflow = custom()
    jobs = expand_jobs(workflow, [seed_sweep(workflow, 2, 100, "--seeds 2")])
    assert [job.seed for job in jobs] == [100, 101]
    (plain,) = expand_jobs(flux(), [])
    assert plain.seed == 42
    assert Job(index=1, key="k", values=(), workflow={"1": {"class_type": "X", "inputs": {}}}).seed is None
