"""Run the real CLI (``python -m provisioner``) in a subprocess, isolated from the real user.

HOME is the test's laptop home and PROVISION_HOME is ``<home>/.config/provision``, so the
user's real ~/.ssh/known_hosts, ~/.ssh/config and tool config are never read or written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]

# Inherited variables that would let the outer environment leak into a test run: an
# ssh-agent (a test must authenticate with the node's key only), Hub settings and tokens,
# and XDG folders pointing at the real user's config and caches.
_DROPPED = (
    "SSH_AUTH_SOCK", "SSH_AGENT_PID", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME",
    "HF_ENDPOINT", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "XDG_CONFIG_HOME", "XDG_CACHE_HOME",
    "XDG_DATA_HOME", "PROVISION_HOME",
)


def cli_env(home: Path, env: Optional[dict[str, Optional[str]]] = None) -> dict[str, str]:
    """Return the environment ``run_cli`` uses; ``env`` adds or (with None) removes names."""
    home = Path(home)
    result = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    result.update(
        HOME=str(home),
        PROVISION_HOME=str(home / ".config" / "provision"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        # Stable output for assertions: no colour, no wrapping at 80 columns.
        NO_COLOR="1",
        COLUMNS="200",
        PYTHONUNBUFFERED="1",
    )
    for key, value in (env or {}).items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def run_cli(
    *args: str,
    home: Path,
    env: Optional[dict[str, Optional[str]]] = None,
    cwd: Optional[Path] = None,
    timeout: float = 120,
    input: Optional[str] = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m provisioner *args`` with HOME=``home``; text mode, output captured.

    Never raises on a non-zero exit (tests assert on ``returncode``); raises
    ``subprocess.TimeoutExpired`` after ``timeout`` seconds.
    """
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *map(str, args)],
        env=cli_env(home, env),
        cwd=str(cwd if cwd is not None else home),
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
