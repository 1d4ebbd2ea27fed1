"""The one place secrets are scrubbed from anything we print, log or store.

Every secret the tool handles (the HF token) is registered here the moment it is read;
``Result``, errors, the CLI's output and state files all pass through ``redact``.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_secrets: set[str] = set()
MASK = "[REDACTED]"


def register_secret(value: str | None) -> None:
    """Remember a secret so that ``redact`` hides it everywhere from now on."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by a mask."""
    if not _secrets or not text:
        return text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text
