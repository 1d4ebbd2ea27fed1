"""Running `provision up` / `provision tunnel` in the background and talking to the tunnel."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.harness.cli import cli_env


class Held:
    """A CLI process that holds a tunnel; ``url`` is what it printed on stdout."""

    def __init__(self, *args: str, home: Path, env: dict | None = None, timeout: float = 300) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "provisioner", *map(str, args)],
                                        env=cli_env(home, env), cwd=home, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.url = self._read_url(timeout)

    def _read_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("http://127.0.0.1:"):
                return line.strip()
        self.process.kill()
        out, err = self.process.communicate()
        raise AssertionError(f"no tunnel URL; exit {self.process.returncode}\n{out}\n{err}")

    def get_json(self, path: str, timeout: float = 10) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return json.loads(response.read())

    def stop(self) -> tuple[int, str, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=30)
        return self.process.returncode, out, err


def listeners_of_node_user(node) -> list[str]:
    """Return the local addresses of TCP sockets the node user's processes listen on."""
    lines = node.ssh("ss -Hltnp").stdout.splitlines()
    return [line.split()[3] for line in lines if "users:" in line]
