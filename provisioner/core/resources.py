"""Find the data that ships with the tool (playbooks, templates, examples).

In a checkout (or an editable install) they are top-level folders of the repo; in a wheel
they are mapped into ``provisioner/_data/`` (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # provisioner/


def data_dir(name: str) -> Path:
    """Return the folder of shipped data called ``name`` (playbooks, templates, examples)."""
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"provision's {name}/ data is missing from this installation")


def data_file(name: str, *parts: str) -> Path:
    """Return a file inside a shipped data folder."""
    return data_dir(name).joinpath(*parts)
