"""The node's memory of what ``up`` did, kept on the node so any laptop can run ``down``.

It lives in ``<workdir>/state/state.json``. It holds versions, refs, file hashes and paths:
never a secret (it passes through ``redact`` before it is written, to be sure).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from ..core.redact import redact

SCHEMA = 1


def read_state(node, state_file: str) -> dict[str, Any]:
    """Return the node's state, or {} when ``up`` never ran there."""
    result = node.run(f"cat {shlex.quote(state_file)} 2>/dev/null", check=False)
    if result.exit_code != 0 or not result.stdout.strip():
        return {}
    try:
        data = json.loads(result.stdout)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def render_state(state: dict[str, Any]) -> bytes:
    """Serialise ``state`` deterministically, secrets redacted."""
    return (redact(json.dumps(dict(state, schema=SCHEMA), indent=2, sort_keys=True)) + "\n").encode()


def write_state(node, state_file: str, state: dict[str, Any], previous: dict[str, Any]) -> bool:
    """Write ``state`` if it differs from ``previous``; return whether it wrote."""
    if dict(state, schema=SCHEMA) == previous:
        return False
    node.put(render_state(state), state_file, 0o600)
    return True
