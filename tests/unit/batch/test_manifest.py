"""The batch manifest: rows written as jobs finish, and which jobs a re-run skips."""

from __future__ import annotations

import csv
import json

import pytest

from provisioner.batch.manifest import COLUMNS, Manifest, OutputRow
from provisioner.core.errors import UsageError


def row(key: str, file: str, job: int = 1, seed=7) -> OutputRow:
    return OutputRow(job=job, key=key, inputs={"8.seed": 7, "4.text": "a fox"}, seed=seed, node="n1",
                     prompt_id="p1", started_at="2025-01-01T10:00:00+01:00", seconds=12.5, file=file,
                     sha256="a" * 64, bytes=3)


def image(folder, name: str) -> None:
    (folder / name).write_bytes(b"png")


def test_no_manifest_is_an_empty_one(tmp_path):
    manifest = Manifest.load(tmp_path / "out")
    assert (manifest.rows, manifest.done_keys()) == ([], set())


def test_record_rewrites_the_json_whole_and_load_reads_it_back(tmp_path):
    manifest = Manifest(tmp_path / "out")
    manifest.record([row("k1", "a.png")])
    manifest.record([row("k2", "b.png", job=2, seed=None)])
    document = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert document["version"] == 1
    assert [(item["key"], item["file"], item["seed"]) for item in document["images"]] == [
        ("k1", "a.png", 7), ("k2", "b.png", None)]
    assert Manifest.load(tmp_path / "out").rows == [row("k1", "a.png"), row("k2", "b.png", job=2, seed=None)]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["manifest.csv", "manifest.json"]


def test_the_csv_is_appended_with_one_header_across_runs(tmp_path):
    Manifest(tmp_path).record([row("k1", "a.png")])
    Manifest.load(tmp_path).record([row("k2", "b.png", job=2, seed=None)])
    with (tmp_path / "manifest.csv").open(encoding="utf-8", newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == list(COLUMNS)
    assert len(lines) == 3
    assert lines[1] == ["1", "k1", '{"4.text": "a fox", "8.seed": 7}', "7", "n1", "p1",
                        "2025-01-01T10:00:00+01:00", "12.5", "a.png", "a" * 64, "3"]
    assert (lines[2][1], lines[2][3]) == ("k2", "")  # no seed: an empty cell


def test_recording_a_job_again_replaces_its_rows_in_the_json(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.record([row("k1", "a.png"), row("k1", "a2.png")])
    manifest.record([row("k1", "c.png")])
    assert [item.file for item in Manifest.load(tmp_path).rows] == ["c.png"]


def test_a_job_is_done_only_while_every_image_it_listed_is_on_disk(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.record([row("k1", "a.png"), row("k1", "a2.png"), row("k2", "b.png", job=2)])
    for name in ("a.png", "a2.png", "b.png"):
        image(tmp_path, name)
    assert Manifest.load(tmp_path).done_keys() == {"k1", "k2"}
    (tmp_path / "a2.png").unlink()
    assert Manifest.load(tmp_path).done_keys() == {"k2"}


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"images": [{"job": 1}]}'])
def test_an_unreadable_manifest_is_refused_naming_the_file(tmp_path, text):
    (tmp_path / "manifest.json").write_text(text, encoding="utf-8")
    with pytest.raises(UsageError) as raised:
        Manifest.load(tmp_path)
    assert raised.value.message.startswith(f"{tmp_path / 'manifest.json'}: not a manifest provision can read (")
    assert "--out" in raised.value.hint
