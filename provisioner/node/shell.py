"""Building POSIX sh for the node: quoting, running under /bin/sh, reading sectioned output.

Every value placed in a remote command goes through ``q``; scripts that print several
answers mark each with an ``@@name`` line and ``sections`` splits them apart.
"""

from __future__ import annotations

import shlex

q = shlex.quote


def sh(script: str) -> str:
    """Return a command that runs ``script`` with /bin/sh whatever the login shell is."""
    return "/bin/sh -c " + shlex.quote(script)


def sha256_of(path: str) -> str:
    """Return a POSIX sh snippet printing the sha256 of ``path`` (Linux and macOS tools)."""
    quoted = q(path)
    return (f"{{ sha256sum {quoted} 2>/dev/null || shasum -a 256 {quoted} 2>/dev/null; }}"
            " | cut -d' ' -f1")


def mode_of(path: str) -> str:
    """Return a POSIX sh snippet printing the octal permission bits of ``path``."""
    quoted = q(path)
    return f"{{ stat -c %a {quoted} 2>/dev/null || stat -f %Lp {quoted} 2>/dev/null; }}"


def sections(output: str) -> dict[str, str]:
    """Split probe output written as ``@@name`` marker lines into {name: text}."""
    found: dict[str, str] = {}
    current = None
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith("@@") and " " not in line.strip():
            if current is not None:
                found[current] = "\n".join(lines).strip()
            current, lines = line.strip()[2:], []
        else:
            lines.append(line)
    if current is not None:
        found[current] = "\n".join(lines).strip()
    return found
