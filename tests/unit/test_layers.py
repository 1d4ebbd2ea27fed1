"""The package's layers: every import between subpackages points down (docs/layout.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "provisioner"

# Lower rank = lower layer. A module may import its own package and lower ranks only;
# packages of the same rank stay independent of each other.
RANKS = {"core": 0, "node": 1, "comfy": 1, "install": 2, "bench": 3, "teardown": 3,
         "fleet": 4, "batch": 4, "api": 5, "cli": 6}


def imported_packages(path: Path) -> set[str]:
    """Return the top-level subpackages of provisioner that ``path`` imports (lazy ones too)."""
    parts = path.relative_to(PACKAGE).parts
    here = ["provisioner", *parts[:-1]]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = (node.module or "").split(".")
            names = [target[1]] if len(target) > 1 else [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name.split(".")[1] for alias in node.names
                     if alias.name.startswith("provisioner.")]
            target = ["provisioner"]
        else:
            continue
        if target and target[0] == "provisioner":
            found.update(name for name in names if name in RANKS)
    return found


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if len(p.relative_to(PACKAGE).parts) > 1)


def test_every_subpackage_has_a_rank():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(RANKS)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    own = path.relative_to(PACKAGE).parts[0]
    upward = {name for name in imported_packages(path)
              if name != own and RANKS[name] >= RANKS[own]}
    assert not upward, f"{own}/ must not import {sorted(upward)} (docs/layout.md)"


def test_the_check_sees_relative_absolute_and_lazy_imports(tmp_path, monkeypatch):
    fake = tmp_path / "provisioner"
    (fake / "node").mkdir(parents=True)
    module = fake / "node" / "example.py"
    module.write_text("from ..install import engine\nimport provisioner.cli.app\n"
                      "def f():\n    from ..api.planning import plan\n"
                      "from . import shell\nfrom ..core import errors\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    assert imported_packages(module) == {"install", "cli", "api", "node", "core"}
