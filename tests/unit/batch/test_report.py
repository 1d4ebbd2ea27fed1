"""The run recap: what --json prints, and its committed schema."""

from __future__ import annotations

import json
from pathlib import Path

from provisioner.api.schema import schema_for
from provisioner.batch.report import BatchReport, NodeShare

REPO = Path(__file__).resolve().parents[3]


def report(**fields) -> BatchReport:
    base = dict(source="fleet.yaml", workflow="flux_api.json", out="out", manifest_json="out/manifest.json",
                manifest_csv="out/manifest.csv", jobs=4, done=4,
                nodes=[NodeShare(node="a", host="10.0.0.1", status="ok", jobs=4)])
    return BatchReport(**{**base, **fields})


def test_ok_is_in_the_json_and_says_every_job_ended_well():
    assert json.loads(report().model_dump_json())["ok"] is True
    assert report(failed=1, done=3).ok is False
    assert report(unrun=2, done=2).ok is False
    assert report(nodes=[NodeShare(node="a", host="h", status="unavailable")]).ok is False


def test_the_committed_run_schema_is_generated_from_the_model():
    committed = json.loads((REPO / "docs" / "run.schema.json").read_text())
    assert committed == json.loads(json.dumps(schema_for("run"))), \
        "regenerate: python -m provisioner.api.schema run > docs/run.schema.json"
    assert "ok" in committed["properties"]
