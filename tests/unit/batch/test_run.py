"""Reading the workflow file, and the order of a batch's jobs."""

from __future__ import annotations

import json

import pytest

from provisioner.batch.run import RunOptions, load_workflow, make_jobs
from provisioner.core.errors import UsageError
from tests.unit.batch.cases import flux


def write(tmp_path, data, name: str = "wf.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def refusal(path: str) -> UsageError:
    with pytest.raises(UsageError) as raised:
        load_workflow(path)
    return raised.value


def test_an_api_format_workflow_is_read_as_is(tmp_path):
    assert load_workflow(write(tmp_path, flux())) == flux()


def test_a_prompt_wrapper_is_unwrapped(tmp_path):
    assert load_workflow(write(tmp_path, {"prompt": flux(), "client_id": "x"})) == flux()


def test_the_ui_format_is_refused_naming_export_api(tmp_path):
    path = write(tmp_path, {"nodes": [{"id": 1, "type": "KSampler"}], "links": [], "version": 0.4})
    error = refusal(path)
    assert error.message == f"{path}: this is ComfyUI's UI format, not the API format"
    assert "Export (API)" in error.hint


def test_a_file_that_is_not_json_or_missing_is_named(tmp_path):
    path = write(tmp_path, "{oops")
    error = refusal(path)
    assert error.message.startswith(f"{path}: not JSON: ")
    assert "Export (API)" in error.hint
    missing = str(tmp_path / "nope.json")
    error = refusal(missing)
    assert error.message == f"{missing}: cannot read: No such file or directory"
    assert error.hint == "check the path"


@pytest.mark.parametrize("data", [[1, 2], {}, {"1": {"inputs": {}}}, {"1": "KSampler"}])
def test_json_that_is_not_a_workflow_is_refused(tmp_path, data):
    path = write(tmp_path, data)
    assert refusal(path).message == f"{path}: not an API-format workflow ({{id: {{class_type, inputs}}}})"


def test_jobs_put_prompts_outermost_then_sets_then_seeds(tmp_path):
    prompts = write(tmp_path, "a fox\na cat\n", "prompts.txt")
    options = RunOptions(prompts=prompts, sets=("8.steps=10,20", "8.cfg=1.0,2.0"), seeds=2, first_seed=5)
    jobs = make_jobs(flux(), options)
    assert len(jobs) == 16
    assert [dict(job.values) for job in jobs[:3]] == [
        {"4.text": "a fox", "8.steps": 10, "8.cfg": 1.0, "8.seed": 5},
        {"4.text": "a fox", "8.steps": 10, "8.cfg": 1.0, "8.seed": 6},
        {"4.text": "a fox", "8.steps": 10, "8.cfg": 2.0, "8.seed": 5}]
    assert [job.values[0][1] for job in jobs] == ["a fox"] * 8 + ["a cat"] * 8
    assert [job.values[1][1] for job in jobs[:8]] == [10] * 4 + [20] * 4
    assert [job.seed for job in jobs[-2:]] == [5, 6]


def test_no_sweep_makes_one_job():
    (job,) = make_jobs(flux(), RunOptions())
    assert (job.index, job.values, job.seed) == (1, (), 42)
