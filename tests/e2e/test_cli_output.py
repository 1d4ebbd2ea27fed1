"""The real CLI prints bracketed text verbatim, and `--json` answers errors with JSON.

No node is needed: these run `python -m provisioner` on config errors, offline plans and a
refusal that comes before any connection.
"""

from __future__ import annotations

import json
import os

import pytest

from provisioner.core.errors import ExitStatus, SizingError
from tests.harness.cli import REPO, run_cli

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples" / "node.yaml"


def bracketed_folder(tmp_path):
    return tmp_path / "x[1]" / "[plot]" / "runs[bold]"


def test_a_missing_node_yaml_in_a_bracketed_folder_is_named_verbatim(laptop_home, tmp_path):
    path = bracketed_folder(tmp_path) / "node.yaml"
    result = run_cli("plan", path, "--memory", "64GB", home=laptop_home)
    assert result.returncode == 2
    assert f"error: {path}: no such file\n" in result.stderr
    assert result.stdout == ""

    as_json = run_cli("plan", path, "--memory", "64GB", "--json", home=laptop_home)
    assert as_json.returncode == 2
    document = json.loads(as_json.stdout)
    assert document["ok"] is False and document["exit_code"] == 2
    assert document["error"] == f"{path}: no such file"
    assert f"error: {path}: no such file\n" in as_json.stderr


def test_a_bad_node_yaml_in_a_bracketed_folder_is_named_verbatim(laptop_home, tmp_path):
    folder = bracketed_folder(tmp_path)
    folder.mkdir(parents=True)
    path = folder / "node.yaml"
    path.write_text("host: 192.0.2.1\nbogus_key: 1\n")
    result = run_cli("plan", path, "--memory", "64GB", home=laptop_home)
    assert result.returncode == 2
    error_line = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert f"error: {path}: " in error_line and "bogus_key" in error_line


def test_an_offline_plan_shows_a_bracketed_node_name_verbatim(laptop_home, tmp_path):
    node_yaml = tmp_path / "n.yaml"
    node_yaml.write_text('name: "m4[bold]"\nhost: 192.0.2.1\n')
    result = run_cli("plan", node_yaml, "--memory", "64GB", home=laptop_home)
    assert result.returncode == 0, result.stderr
    assert "Node m4[bold] (assumed: offline plan)" in result.stdout


def test_the_plot_extra_hint_keeps_its_brackets(laptop_home, tmp_path):
    shim = tmp_path / "no-matplotlib"
    (shim / "matplotlib").mkdir(parents=True)
    (shim / "matplotlib" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    node_yaml = tmp_path / "n.yaml"
    node_yaml.write_text("host: 192.0.2.1\n")
    result = run_cli("bench", node_yaml, "--plot", tmp_path / "out.png", home=laptop_home,
                     env={"PYTHONPATH": os.pathsep.join([str(shim), str(REPO)])})
    assert result.returncode == 2
    assert "hint: install the plot extra: pip install 'provision[plot]' (matplotlib)\n" in result.stderr


def test_a_plan_that_fits_nowhere_answers_json_with_one_error_document(laptop_home):
    result = run_cli("plan", EXAMPLE, "--memory", "8GB", "--json", home=laptop_home)
    document = json.loads(result.stdout)
    assert set(document) == {"ok", "error", "hint", "exit_code"}
    assert document["ok"] is False
    assert "smallest plan" in document["error"] and "16 GB" in document["hint"]
    # A sizing refusal is ExitStatus.FAILED; the document carries the process's own code.
    assert document["exit_code"] == result.returncode == SizingError.exit_status != 0
    assert "error: need " in result.stderr, "people still get the error on stderr"


def test_a_bad_value_with_json_answers_json_with_exit_2(laptop_home, tmp_path):
    node_yaml = tmp_path / "n.yaml"
    node_yaml.write_text("host: 192.0.2.1\n")
    ours = run_cli("plan", node_yaml, "--memory", "64QB", "--json", home=laptop_home)
    assert ours.returncode == 2
    assert json.loads(ours.stdout)["exit_code"] == ExitStatus.BAD_INPUT
    assert "--memory" in json.loads(ours.stdout)["error"]

    clicks = run_cli("fleet", "up", tmp_path / "fleet.yaml", "--parallel", "0", "--json",
                     home=laptop_home)
    assert clicks.returncode == 2
    document = json.loads(clicks.stdout)
    assert document["exit_code"] == 2 and "--parallel" in document["error"]
    assert "Error: Invalid value for '--parallel'" in clicks.stderr
