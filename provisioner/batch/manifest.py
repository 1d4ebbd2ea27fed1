"""The batch's manifest on the laptop: one row per pulled image, in ``manifest.json`` and
``manifest.csv`` beside the images. A job whose images are all listed (and still on disk)
is done; a re-run of the same command skips it. Rows are written as each job finishes, so
an interrupted batch loses at most the jobs that were running.
"""

from __future__ import annotations

import csv
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterable, Optional

from pydantic import BaseModel, ConfigDict, ValidationError

from ..core.errors import UsageError

JSON_NAME = "manifest.json"
CSV_NAME = "manifest.csv"
COLUMNS = ("job", "key", "inputs", "seed", "node", "prompt_id", "started_at", "seconds", "file",
           "sha256", "bytes")


class OutputRow(BaseModel):
    """One image a job made: what made it, where, and its verified sha256."""

    model_config = ConfigDict(frozen=True)

    job: int  # the job's index in the batch that made it
    key: str  # the job's key (sha256 of its workflow)
    inputs: dict[str, Any]  # the swept values, "NODE.INPUT" -> value
    seed: Optional[int] = None
    node: str
    prompt_id: str
    started_at: str  # local time, ISO 8601
    seconds: float  # from queueing to the image pulled
    file: str  # relative to the manifest's folder
    sha256: str
    bytes: int


class Manifest:
    """The rows of one output folder; ``record`` is safe from several threads."""

    def __init__(self, folder: Path, rows: Optional[list[OutputRow]] = None) -> None:
        self.folder = folder
        self.rows: list[OutputRow] = list(rows or [])
        self._lock = threading.Lock()

    @property
    def json_path(self) -> Path:
        return self.folder / JSON_NAME

    @property
    def csv_path(self) -> Path:
        return self.folder / CSV_NAME

    @classmethod
    def load(cls, folder: Path) -> "Manifest":
        """Read ``folder``'s manifest.json (empty when there is none)."""
        path = folder / JSON_NAME
        if not path.exists():
            return cls(folder)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = [OutputRow.model_validate(row) for row in data.get("images", [])]
        except (OSError, ValueError, AttributeError, ValidationError) as error:
            raise UsageError(f"{path}: not a manifest provision can read ({str(error).splitlines()[0]})",
                             "move it away (the images stay), or choose another --out") from None
        return cls(folder, rows)

    def done_keys(self) -> set[str]:
        """Return the keys of the jobs whose every listed image is still in the folder."""
        present: dict[str, bool] = {}
        for row in self.rows:
            here = (self.folder / row.file).is_file()
            present[row.key] = present.get(row.key, True) and here
        return {key for key, ok in present.items() if ok}

    def record(self, rows: Iterable[OutputRow]) -> None:
        """Add a finished job's rows: appended to the CSV, the JSON rewritten whole."""
        rows = list(rows)
        if not rows:
            return
        with self._lock:
            keys = {row.key for row in rows}
            self.rows = [row for row in self.rows if row.key not in keys] + rows
            self.folder.mkdir(parents=True, exist_ok=True)
            self._append_csv(rows)
            self._write_json()

    def _append_csv(self, rows: list[OutputRow]) -> None:
        new = not self.csv_path.exists()
        with self.csv_path.open("a", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(COLUMNS)
            for row in rows:
                data = row.model_dump()
                data["inputs"] = json.dumps(row.inputs, ensure_ascii=False, sort_keys=True)
                writer.writerow(["" if data[column] is None else data[column] for column in COLUMNS])

    def _write_json(self) -> None:
        document = {"version": 1, "images": [row.model_dump() for row in self.rows]}
        partial = self.json_path.with_name(JSON_NAME + ".part")
        partial.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(partial, self.json_path)
