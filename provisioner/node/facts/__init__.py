"""Facts about a node: one remote script, pure parsers over its output.

``gather`` costs exactly one command round trip: ``script.facts_script`` prints delimited
sections, ``parse.parse_facts`` splits them and hands each to its pure parser.
"""

from __future__ import annotations

from .model import Gpu, NodeFacts, PythonInterpreter

__all__ = ["Gpu", "NodeFacts", "PythonInterpreter", "gather", "assumed_facts"]


def gather(node, workdir: str) -> NodeFacts:
    """Read every fact of ``node`` in one round trip; ``workdir`` picks the disk measured."""
    from .parse import parse_facts
    from .script import facts_script

    result = node.run("/bin/sh -s", stdin=facts_script(workdir))
    return parse_facts(result.stdout)


def assumed_facts(memory_bytes: int, platform: str = "macos") -> NodeFacts:
    """Facts for planning offline (``plan --memory 64GB``): a typical node of that size."""
    from .assumed import assumed_facts as build

    return build(memory_bytes, platform)
