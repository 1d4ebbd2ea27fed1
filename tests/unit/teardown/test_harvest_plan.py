"""Harvest decisions (pure): which node files to pull, and where."""

from __future__ import annotations

import pytest

from provisioner.teardown.harvest_plan import (
    LocalFile,
    alt_name,
    plan_harvest,
    unsafe_reason,
)
from tests.unit.teardown.cases import SHA_A, SHA_B, remote

# -- plan_harvest: a table of cases ---------------------------------------------------------

CASES = [
    # (what the node has, what the laptop has, expected (dest, action) per node file, refused)
    ("new file", [remote("a.png")], {}, [("output/a.png", "pull")], []),
    ("identical copy already pulled", [remote("a.png")],
     {"output/a.png": LocalFile(bytes=10, sha256=SHA_A)}, [("output/a.png", "skip")], []),
    ("same name, other bytes locally: never overwritten", [remote("a.png")],
     {"output/a.png": LocalFile(bytes=10, sha256=SHA_B)},
     [(f"output/a.{SHA_A[:8]}.png", "pull")], []),
    ("same sha256, other size: different", [remote("a.png", size=11)],
     {"output/a.png": LocalFile(bytes=10, sha256=SHA_A)}, [(f"output/a.{SHA_A[:8]}.png", "pull")], []),
    ("the renamed copy was pulled before", [remote("a.png")],
     {"output/a.png": LocalFile(bytes=10, sha256=SHA_B),
      f"output/a.{SHA_A[:8]}.png": LocalFile(bytes=10, sha256=SHA_A)},
     [(f"output/a.{SHA_A[:8]}.png", "skip")], []),
    ("both names taken by other files", [remote("a.png")],
     {"output/a.png": LocalFile(bytes=10, sha256=SHA_B),
      f"output/a.{SHA_A[:8]}.png": LocalFile(bytes=9, sha256=SHA_B)}, [], ["output/a.png"]),
    ("subfolders kept", [remote("sub/deeper/b.png")], {}, [("output/sub/deeper/b.png", "pull")], []),
    ("a name with '..' is refused", [remote("../escape.png")], {}, [], ["output/../escape.png"]),
    ("a hidden .part name is refused", [remote(".a.png.part")], {}, [], ["output/.a.png.part"]),
    ("labels keep roots apart", [remote("x.json", label="user"), remote("x.json")], {},
     [("output/x.json", "pull"), ("user/x.json", "pull")], []),
]


@pytest.mark.parametrize("name, files, local, expected, refused", CASES, ids=[c[0] for c in CASES])
def test_plan_harvest(name, files, local, expected, refused):
    plan = plan_harvest(files, local)
    assert [(item.dest, item.action) for item in plan.items] == expected
    assert [r.file for r in plan.refused] == refused


def test_plan_counts_only_what_it_pulls():
    files = [remote("a.png", size=100), remote("b.png", SHA_B, size=50)]
    plan = plan_harvest(files, {"output/a.png": LocalFile(bytes=100, sha256=SHA_A)})
    assert plan.bytes_to_pull == 50
    assert [i.dest for i in plan.to_pull] == ["output/b.png"]
    assert [i.dest for i in plan.to_skip] == ["output/a.png"]


def test_plan_is_sorted_and_stable():
    files = [remote("z.png"), remote("a.png"), remote("m/b.png")]
    assert [i.dest for i in plan_harvest(files, {}).items] == \
        ["output/a.png", "output/m/b.png", "output/z.png"]


@pytest.mark.parametrize("rel, expected", [
    ("output/a.png", "output/a.12345678.png"),
    ("output/a.tar.gz", "output/a.tar.12345678.gz"),
    ("output/noext", "output/noext.12345678"),
    ("output/.hidden", "output/.hidden.12345678"),
    ("logs/comfyui.log", "logs/comfyui.12345678.log"),
])
def test_alt_name(rel, expected):
    assert alt_name(rel, "12345678" + "0" * 56) == expected


@pytest.mark.parametrize("rel, bad", [
    ("output/a.png", False), ("output/sub/a b.png", False), ("/etc/passwd", True),
    ("output/../x", True), ("output//x", True), ("output/./x", True), ("output\\x", True),
    ("output/a\0b", True), ("", True),
])
def test_unsafe_reason(rel, bad):
    assert (unsafe_reason(rel) is not None) is bad
