"""Whole facts-script captures parsed end to end, and the rules about sections."""

from __future__ import annotations

import inspect
import json

import pytest

from provisioner.core.errors import FactParseError
from provisioner.node.facts import common, linux, macos
from provisioner.node.facts.model import NodeFacts
from provisioner.node.facts.parse import parse_facts, split_sections

from .cases import FIXTURES

CAPTURES = sorted((FIXTURES / "facts").glob("*.txt"))
MACOS = (FIXTURES / "facts" / "macos_m4pro_64gb.txt").read_text()
LINUX = (FIXTURES / "facts" / "linux_debian_cpu.txt").read_text()


def without_section(raw: str, name: str) -> str:
    """Drop one section (marker and body) from a capture."""
    sections = split_sections(raw)
    assert name in sections, f"fixture has no {name} section"
    return "".join(f"@@provision:{key}@@\n{body}" for key, body in sections.items() if key != name)


def with_section(raw: str, name: str, body: str) -> str:
    """Replace one section's body in a capture."""
    sections = split_sections(raw)
    assert name in sections, f"fixture has no {name} section"
    sections[name] = body
    return "".join(f"@@provision:{key}@@\n{text}" for key, text in sections.items())


def test_there_are_captures_of_both_platforms():
    platforms = {json.loads(path.with_suffix(".json").read_text())["platform"] for path in CAPTURES}
    assert platforms == {"macos", "linux"}


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda path: path.stem)
def test_capture_parses_into_expected_facts(capture):
    expected = NodeFacts.model_validate(json.loads(capture.with_suffix(".json").read_text()))
    assert parse_facts(capture.read_text()) == expected


def test_m4_pro_capture_offers_python_3_12_not_3_13():
    facts = parse_facts(MACOS)
    assert [p.version for p in facts.usable_pythons] == ["3.12.11"]


def test_split_sections_keeps_bodies_and_ignores_preamble():
    raw = "motd noise\n@@provision:kernel@@\nDarwin\n@@provision:brew@@\n@@provision:end@@\n"
    assert split_sections(raw) == {"kernel": "Darwin\n", "brew": "", "end": ""}


def test_split_sections_keeps_carriage_returns_inside_a_line():
    raw = "@@provision:disk_path@@\n/Users/a\rb\n@@provision:end@@\n"
    assert split_sections(raw)["disk_path"] == "/Users/a\rb\n"


def test_duplicate_section_is_an_error():
    with pytest.raises(FactParseError) as caught:
        split_sections("@@provision:memsize@@\n1\n@@provision:memsize@@\n2\n")
    assert caught.value.fact == "sections"


@pytest.mark.parametrize("capture, name", [
    (MACOS, "memsize"), (MACOS, "kernel"), (MACOS, "arch"), (MACOS, "sw_vers"),
    (MACOS, "cpu_brand"), (MACOS, "ncpu"), (MACOS, "df"), (MACOS, "disk_path"),
    (MACOS, "identity"), (LINUX, "meminfo"), (LINUX, "kernel"), (LINUX, "os_release"),
    (LINUX, "nproc"), (LINUX, "df"), (LINUX, "identity"),
])
def test_missing_required_section_names_it(capture, name):
    with pytest.raises(FactParseError) as caught:
        parse_facts(without_section(capture, name))
    assert caught.value.fact == name


@pytest.mark.parametrize("capture, name", [
    (MACOS, "memsize"), (MACOS, "kernel"), (LINUX, "meminfo"), (LINUX, "df"),
])
def test_empty_required_section_is_an_error(capture, name):
    with pytest.raises(FactParseError):
        parse_facts(with_section(capture, name, ""))


def test_output_cut_short_is_an_error_not_missing_facts():
    with pytest.raises(FactParseError) as caught:
        parse_facts(without_section(MACOS, "end"))
    assert caught.value.fact == "end"


@pytest.mark.parametrize("capture, name, field, default", [
    (MACOS, "brew", "homebrew", None),
    (MACOS, "pythons", "pythons", ()),
    (MACOS, "wired_limit", "gpu_wired_limit_mb", 0),
    (MACOS, "xcode_clt", "xcode_clt", False),
    (LINUX, "nvidia_smi", "gpus", ()),
    (LINUX, "brew", "homebrew", None),
])
def test_missing_optional_section_gives_the_default(capture, name, field, default):
    assert getattr(parse_facts(without_section(capture, name)), field) == default


def test_linux_without_model_name_uses_the_architecture_as_chip():
    assert parse_facts(with_section(LINUX, "cpuinfo", "")).chip == "x86_64"


def test_unsupported_kernel_is_an_error():
    with pytest.raises(FactParseError) as caught:
        parse_facts(with_section(LINUX, "kernel", "FreeBSD\n"))
    assert caught.value.fact == "kernel"


def test_every_parser_has_fixtures_named_after_it():
    # parse_<thing> reads fixtures/<thing>/: a parser nobody fed real output to fails here.
    names = [name for module in (common, linux, macos) for name, value in vars(module).items()
             if name.startswith("parse_") and inspect.isfunction(value)
             and value.__module__ == module.__name__]
    missing = [name for name in names
               if len(list((FIXTURES / name.removeprefix("parse_")).glob("*.txt"))) < 2]
    assert names and not missing
