"""Sample the node's memory once a second through ONE long-lived remote command.

``MemoryWatch`` starts a shell loop on its own channel of the run's SSH connection (no new
connection, no new command per sample): every second it prints ``memory_script``'s output
and a delimiter line; a reader thread parses each sample with ``parse_memory`` and stamps it
with the local monotonic clock. Closing the channel's stdin ends the loop on the node.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from ..core.errors import ProvisionError
from ..node.memory import MemorySample, memory_script, parse_memory
from ..node.shell import sh

SAMPLE_END = "@@sample-end"
READ_TIMEOUT = 15.0  # a sample takes milliseconds; this long without one means the loop died


def watch_script(platform: str, interval: float = 1.0) -> str:
    """Return the sh loop that prints a memory sample and ``SAMPLE_END`` every ``interval`` s
    until its stdin closes (the background loop gets /dev/null as stdin; ``read`` waits)."""
    seconds = f"{float(interval):g}"
    return (f"( while :; do {memory_script(platform)}; echo {SAMPLE_END}; sleep {seconds}; done ) & "
            'loop=$!; while read -r _; do :; done; kill "$loop" 2>/dev/null; exit 0')


class MemoryWatch:
    """Samples of one node's memory while a bench runs; ``samples`` is [(t, MemorySample)]
    with ``t`` in seconds since ``origin`` (a ``time.monotonic()`` value)."""

    def __init__(self, node, platform: str, origin: float, interval: float = 1.0,
                 on_sample: Callable[[float, MemorySample], None] = lambda t, sample: None) -> None:
        self.node = node
        self.platform = platform
        self.origin = origin
        self.interval = interval
        self.on_sample = on_sample
        self.samples: list[tuple[float, MemorySample]] = []
        self.errors: list[str] = []
        self._changed = threading.Condition()
        self._stopping = False
        self._spawned = None
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "MemoryWatch":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Start the remote loop and the reader thread."""
        try:
            self._spawned = self.node.spawn(sh(watch_script(self.platform, self.interval)))
        except Exception as error:  # the bench goes on without memory figures, and says so
            self._note(f"cannot start memory sampling on the node: {error}")
            return
        self._thread = threading.Thread(target=self._read, name="memory-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the remote loop (its stdin closes) and the reader thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._spawned is not None:
            self._spawned.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def latest(self) -> Optional[tuple[float, MemorySample]]:
        with self._changed:
            return self.samples[-1] if self.samples else None

    def wait_after(self, t: float, timeout: float) -> Optional[tuple[float, MemorySample]]:
        """Return the first sample taken after ``t`` (seconds since origin); wait up to
        ``timeout`` s for it; None if the watch stopped or none came."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for stamp, sample in self.samples:
                    if stamp > t:
                        return stamp, sample
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping or not self._alive():
                    return None
                self._changed.wait(min(remaining, 0.5))

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _read(self) -> None:
        lines: list[str] = []
        spawned = self._spawned
        if spawned is None:
            return
        while not self._stopping:
            try:
                line = spawned.readline(timeout=READ_TIMEOUT)
            except TimeoutError:
                self._note(f"no memory sample from the node for {READ_TIMEOUT:.0f} s")
                return
            except Exception as error:  # the channel went away under us
                if not self._stopping:
                    self._note(f"memory sampling stopped: {error}")
                return
            if line == "" and spawned.finished:
                if not self._stopping:
                    self._note("the memory sampling command ended early: "
                               + (spawned.stderr().strip() or "no error output"))
                return
            if line.strip() != SAMPLE_END:
                lines.append(line)
                continue
            stamp = time.monotonic() - self.origin
            text, lines = "\n".join(lines), []
            try:
                sample = parse_memory(self.platform, text)
            except (ProvisionError, KeyError, ValueError) as error:
                self._note(f"unparsable memory sample: {error}")
                continue
            with self._changed:
                self.samples.append((stamp, sample))
                self._changed.notify_all()
            self.on_sample(stamp, sample)

    def _note(self, message: str) -> None:
        with self._changed:
            if len(self.errors) < 20:
                self.errors.append(message)
            self._changed.notify_all()
