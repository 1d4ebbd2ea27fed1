"""Pure bench logic: timings from WebSocket messages, memory per run, summaries, the seed's
row, the CSV history and the rendering of a report."""

from __future__ import annotations

import csv
import io
import json

import pytest

from provisioner.bench.history import COLUMNS, append_history, history_row
from provisioner.bench.report import BenchReport, Stat, run_memory, summarise
from provisioner.bench.run import installed_quality
from provisioner.bench.seed import SEED_ROWS, compare_with_seed, seed_row
from provisioner.comfy.prompts import black_hint, rejection_text
from tests.unit.bench.cases import points, sample_report

# -- memory per run ---------------------------------------------------------------------


def test_a_run_gets_its_baseline_window_and_the_sample_after_it():
    series = points((0.5, "green", 0, 10), (1.5, "yellow", 100, 20), (2.5, "red", 600, 90),
                    (3.5, "green", 600, 90))
    memory = run_memory(series, start=1.0, end=2.0)
    assert memory.samples == 2  # 1.5 (during) and 2.5 (the first one after)
    assert memory.peak_pressure == "red"
    assert memory.swap_before_bytes == 0
    assert memory.swap_delta_bytes == 600 * 1024**2 and memory.swap_peak_bytes == 600 * 1024**2
    assert memory.swapouts_delta == 80


def test_a_run_shorter_than_the_interval_still_gets_a_sample():
    series = points((0.5, "green", 0, 10), (1.5, "yellow", 50, 12))
    memory = run_memory(series, start=0.6, end=0.9)
    assert memory.samples == 1 and memory.peak_pressure == "yellow"


def test_no_samples_no_memory():
    assert run_memory([], 0, 1) is None
    assert run_memory(points((0.5, "green", 0, 1)), start=1.0, end=2.0) is None


def test_linux_samples_have_no_swapouts():
    series = [p.model_copy(update={"swapouts": None}) for p in points((0.1, "green", 0, 0),
                                                                      (1.1, "green", 0, 0))]
    assert run_memory(series, 0.5, 1.0).swapouts_delta is None


# -- summary ----------------------------------------------------------------------------


def test_the_summary_excludes_the_warm_up_and_failed_runs():
    report = sample_report(ok=False)
    summary = summarise(report.runs)
    assert summary.runs == 1  # run 1 only: run 0 is the warm-up, run 2 failed
    assert summary.warmup_total_s == report.runs[0].timing.total_s
    assert summary.total_s == Stat(min=summary.total_s.min, median=summary.total_s.min,
                                   max=summary.total_s.min)


def test_median_min_max():
    assert Stat.of([3.0, 1.0, 2.0, 10.0]) == Stat(min=1.0, median=2.5, max=10.0)
    assert Stat.of([]) is None


def test_the_report_round_trips_through_json():
    report = sample_report()
    again = BenchReport.model_validate_json(report.model_dump_json())
    assert again == report
    assert json.loads(report.model_dump_json())["runs"][1]["timing"]["steps_total"] == 4


# -- seed table -------------------------------------------------------------------------


def test_the_seed_rows_are_the_facts_table():
    assert [(r.memory_gb, r.model, r.quality, r.pressure, r.swap_gb, r.time_s) for r in SEED_ROWS] == [
        (16, "dev", "q4", "red", 4.6, 760), (16, "schnell", "q4", "red", 4.6, 200),
        (32, "dev", "q4", "yellow", 1.0, 180), (64, "dev", "q4", "green", 0.0, 95),
        (64, "schnell", "q4", "green", 0.0, 20), (64, "dev", "bf16", "green", 0.0, 75)]


@pytest.mark.parametrize("memory_gb, model, quality, expected", [
    (64, "dev", "q8", 95), (64, "dev", "bf16", 75), (64, "schnell", "q4", 20),
    (16, "dev", "q4", 760), (16, "schnell", "q4", 200), (32, "dev", "q5", 180),
    (32, "schnell", "q4", None), (48, "dev", "q8", None),
])
def test_the_seed_row_for_a_memory_size_and_model(memory_gb, model, quality, expected):
    row, notes = seed_row(memory_gb * 1024**3, model, quality)
    assert (row.time_s if row else None) == expected
    if row is None:
        assert f"{memory_gb} GB" in notes[0]


def test_the_comparison_gives_the_ratio_and_says_what_differs():
    report = sample_report()
    compare = compare_with_seed(report)
    assert compare.seed.time_s == 95
    assert compare.ratio == pytest.approx(report.summary.total_s.median / 95)
    assert any("20 steps" in note and "4 steps" in note for note in compare.notes)
    assert any("q8" in note for note in compare.notes)
    linux = compare_with_seed(report.model_copy(update={"platform": "linux", "device": "cpu"}))
    assert any("not an Apple Silicon Mac" in note for note in linux.notes)


# -- history ----------------------------------------------------------------------------


def test_history_rows_append_under_one_header(tmp_path):
    path = tmp_path / "h" / "bench-history.csv"
    append_history([sample_report()], path)
    append_history([sample_report(ok=False)], path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [row["ok"] for row in rows] == ["true", "false"]
    assert rows[0]["node"] == "m4pro-1" and rows[0]["memory_gb"] == "64"
    assert rows[0]["peak_pressure"] == "red" and rows[1]["error"] == "run 2 failed"
    assert path.read_text().count("started_at,") == 1


def test_a_history_with_other_columns_is_moved_aside(tmp_path):
    path = tmp_path / "bench-history.csv"
    path.write_text("when,node\nyesterday,old\n")
    append_history([sample_report()], path)
    assert next(csv.reader(io.StringIO(path.read_text()))) == list(COLUMNS)
    (moved,) = [p for p in tmp_path.iterdir() if p.name != path.name]
    assert moved.read_text().startswith("when,node")


def test_a_history_row_has_every_column():
    assert set(history_row(sample_report())) == set(COLUMNS)


# -- small pieces of the runner ----------------------------------------------------------


def test_the_installed_quality_is_benched_when_state_records_it():
    state = {"model_plan": {"model": "dev", "quality": "q5"}}
    assert installed_quality(state, "dev", "auto") == "q5"
    assert installed_quality(state, "schnell", "auto") == "auto"
    assert installed_quality({}, "dev", "q8") == "q8"


def test_a_rejected_prompt_is_summarised_not_dumped():
    body = {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
            "node_errors": {"1": {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                                              "details": "unet_name: 'x.gguf' not in ['y.gguf']"}],
                                  "class_type": "UnetLoaderGGUF"}}}
    assert rejection_text(body) == ("Prompt outputs failed validation; node 1 (UnetLoaderGGUF): "
                                    "Value not in list: unet_name: 'x.gguf' not in ['y.gguf']")


def test_the_black_image_hint_depends_on_the_flag():
    assert "--fp32-vae" in black_hint([]) and "re-run `provision up" in black_hint([])
    assert "already runs with --fp32-vae" in black_hint(["main.py", "--fp32-vae"])


# -- rendering ---------------------------------------------------------------------------


def render(report) -> str:
    from rich.console import Console

    from provisioner.cli import bench_views as views

    buffer = io.StringIO()
    views.show_bench(Console(file=buffer, width=200, no_color=True), report)
    return buffer.getvalue()


def test_the_table_shows_runs_summary_and_the_seed_row():
    report = sample_report()
    text = render(report.model_copy(update={"compare": compare_with_seed(report)}))
    assert "warm-up" in text and "min / median / max" in text
    assert "Compared with the seed's table" in text and "95s" in text and "ratio measured / seed" in text


def test_a_failed_run_shows_black():
    assert "BLACK" in render(sample_report(ok=False))


def test_the_plot_is_a_png(tmp_path):
    from provisioner.bench.plot import plot_report

    report = sample_report()
    path = plot_report(report.model_copy(update={"compare": compare_with_seed(report)}),
                       tmp_path / "out" / "bench.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
