"""One error tree for the whole tool.

The library raises these and never prints or exits; ``cli/app.py`` catches ``ProvisionError``
once, prints ``str(error)`` (one line) and the hint, and exits with ``error.exit_status``.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    FAILED = 1  # something failed on the node
    BAD_INPUT = 2  # config, playbook or command-line error: nothing was changed
    CANNOT_CONNECT = 3  # unreachable, refused, auth or host-key failure
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as a shell reports it
    TERMINATED = 143  # SIGTERM (128 + 15)


class ProvisionError(Exception):
    """Base of every error the tool raises on purpose; carries a one-line hint."""

    exit_status: ExitStatus = ExitStatus.FAILED

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(ProvisionError):
    """A node.yaml, fleet.yaml or playbook is wrong; names file, field and fix."""

    exit_status = ExitStatus.BAD_INPUT


class UsageError(ProvisionError):
    """A command-line value is wrong (e.g. ``--memory 64QB``)."""

    exit_status = ExitStatus.BAD_INPUT


class ConnectError(ProvisionError):
    """The node cannot be reached or will not let us in."""

    exit_status = ExitStatus.CANNOT_CONNECT


class HostKeyError(ConnectError):
    """The node's host key is unknown, or differs from the one we trust."""


class UnknownHostKey(HostKeyError):
    """The node presented a key we have never seen (not a changed one): the user may accept
    it; fleets collect these and refuse them together."""

    def __init__(self, message: str, hint: str, *, where: str, key_type: str, fingerprint: str) -> None:
        super().__init__(message, hint)
        self.where = where
        self.key_type = key_type
        self.fingerprint = fingerprint


class CommandFailed(ProvisionError):
    """A remote command exited non-zero; carries its ``Result``."""

    def __init__(self, result, hint: str = "") -> None:  # result: remote.Result
        tail = result.tail()
        message = f"command failed with exit code {result.exit_code}: {result.display_command}"
        if tail:
            message += f" -- {tail}"
        super().__init__(message, hint)
        self.result = result


class FactParseError(ProvisionError):
    """A fact's output did not parse; carries the fact name and the raw output."""

    def __init__(self, fact: str, raw: str, why: str = "") -> None:
        shown = raw if len(raw) <= 400 else raw[:400] + "..."
        detail = f" ({why})" if why else ""
        super().__init__(
            f"cannot parse fact {fact!r}{detail}; raw output: {shown!r}",
            "this node's output differs from what provision knows; please report it with the raw output",
        )
        self.fact = fact
        self.raw = raw


class SizingError(ProvisionError):
    """No model plan fits the node (memory or disk), with the numbers."""

    exit_status = ExitStatus.FAILED


class NodeUnsuitable(ProvisionError):
    """The node lacks what `up` needs and cannot get over SSH (exit 1): refused up front."""


class ServiceDown(ProvisionError):
    """ComfyUI is not running on the node (exit 1); the message says why and what restarts it."""


class StepFailed(ProvisionError):
    """A playbook step failed on the node; re-running ``up`` resumes from it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so both stop a run the same way."""


class Interrupted(StepFailed):
    """The user stopped a run (Ctrl-C or SIGTERM) during a step; re-running resumes from it."""

    def __init__(self, message: str, hint: str = "", *, terminated: bool = False) -> None:
        super().__init__(message, hint)
        self.exit_status = ExitStatus.TERMINATED if terminated else ExitStatus.INTERRUPTED


class LockHeld(ProvisionError):
    """Another run holds the node's lock."""


class DownloadError(ProvisionError):
    """A model file could not be fetched or verified."""


class WorkflowError(ProvisionError):
    """A bench workflow would be refused by ComfyUI (missing node class, model file, input);
    raised before anything is submitted."""


class BenchFailed(ProvisionError):
    """A benchmark run failed (execution error, black image, timeout); carries ``.report``,
    the BenchReport so far."""

    def __init__(self, message: str, hint: str = "", report=None) -> None:
        super().__init__(message, hint)
        self.report = report
