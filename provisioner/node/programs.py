"""Small stdlib Python programs that run on the node (templates/node_*.py).

A program and its input travel together over stdin: the input is rendered into the program
text as a JSON string literal, so nothing but interpreter paths (quoted) is ever on the
remote command line. The node's interpreter is the first that works among the venv's, the
ones the facts found and ``python3``: after a ``--wipe all`` half done, the venv may be gone.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from .remote import Result
from .shell import q, sh

_PICK = (
    'for p in "$@"; do '
    'case $p in /*) [ -x "$p" ] || continue ;; *) command -v "$p" >/dev/null 2>&1 || continue ;; esac; '
    '"$p" -c "import hashlib, json, os" </dev/null >/dev/null 2>&1 || continue; '
    'exec "$p" -; '
    'done; echo "provision: no working python3 on the node" >&2; exit 127'
)


def render_program(name: str, payload: Any) -> str:
    """Return the source of ``templates/<name>`` with ``PAYLOAD`` (JSON text) prepended."""
    from ..core.resources import data_file

    source = data_file("templates", name).read_text(encoding="utf-8")
    return f"PAYLOAD = {json.dumps(payload, sort_keys=True)!r}\n{source}"


def interpreters(venv_python: str, found: Iterable[str] = ()) -> list[str]:
    """Return the interpreters to try, best first, without duplicates."""
    ordered: list[str] = []
    for path in [venv_python, *found, "python3"]:
        if path and path not in ordered:
            ordered.append(path)
    return ordered


def run_program(node, name: str, payload: Any, candidates: list[str], *,
                timeout: float | None = None,
                on_output: Callable[[str], None] | None = None) -> Result:
    """Run a node program with the first working interpreter; return its ``Result``.
    ``on_output`` gets each line as it comes (the node's programs print JSON lines)."""
    command = sh(_PICK) + " provision " + " ".join(q(path) for path in candidates)
    return node.run(command, stdin=render_program(name, payload), check=False, timeout=timeout,
                    on_output=on_output)
