"""Run one action per node on a thread pool; each node's outcome is a value, never a raise.

``run_fleet`` maps node names to ``Outcome``s (a node that fails or times out carries its
reason; the others carry on); ``DownloadGate`` bounds model downloads across the fleet. The
fleet's nodes are ``Member``s (``members_of``); ``inventory_of`` exports them for Ansible.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import dataclasses
import os
import threading
import time
from typing import Any, Callable, Collection, ContextManager, Generic, Iterator, Literal, Optional, TypeVar

from ..core.config import FleetConfig, NodeConfig
from ..core.errors import ProvisionError

T = TypeVar("T")
Status = Literal["ok", "failed", "skipped"]


# ---------------------------------------------------------------------------- members


@dataclasses.dataclass(frozen=True)
class Member:
    """One node of a fleet: its merged config, and how errors name it."""

    config: NodeConfig
    label: str  # e.g. "fleet.yaml: node m4-1"; api functions name their source with it

    @property
    def name(self) -> str:
        return self.config.name


def members_of(path: str | os.PathLike[str], fleet: FleetConfig,
               only: Optional[Collection[str]] = None) -> list[Member]:
    """Return the fleet's nodes in file order, or only those named in ``only``."""
    members = [Member(node, f"{path}: node {node.name}") for node in fleet.nodes]
    if only is None:
        return members
    return [member for member in members if member.name in only]


def inventory_of(fleet: FleetConfig) -> dict[str, Any]:
    """Return an Ansible YAML inventory of the fleet: ``all.hosts.<name>`` with connection vars."""
    hosts: dict[str, Any] = {}
    for node in fleet.nodes:
        entry: dict[str, Any] = {"ansible_host": node.host, "ansible_port": node.port,
                                 "ansible_user": node.user}
        if node.identity_file:
            entry["ansible_ssh_private_key_file"] = node.identity_file
        hosts[node.name] = entry
    return {"all": {"hosts": hosts}}


# ---------------------------------------------------------------------------- events


@dataclasses.dataclass(frozen=True)
class NodeEvent:
    """Fleet-level progress of one node; step progress arrives as ``engine.StepEvent``."""

    phase: Literal["connecting", "connected", "running", "waiting", "downloading", "done"]
    detail: str = ""
    status: Optional[Status] = None  # with phase "done"


FleetEventSink = Callable[[str, Any], None]  # (node name, NodeEvent | engine.StepEvent)


def _ignore(name: str, event: Any) -> None:
    pass


# ---------------------------------------------------------------------------- running


@dataclasses.dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one node's action came to: a value, or the error that stopped it."""

    status: Status
    value: Optional[T] = None
    error: Optional[ProvisionError] = None
    seconds: float = 0.0


def run_fleet(names: list[str], action: Callable[[str], T], *, parallel: int,
              fail_fast: bool = False, timeout: Optional[float] = None,
              on_timeout: Callable[[str], None] = lambda name: None,
              on_done: Callable[[str, Outcome[T]], None] = lambda name, outcome: None,
              ) -> dict[str, Outcome[T]]:
    """Run ``action(name)`` for every name, at most ``parallel`` at once; never raise for one.

    An action that raises marks its node failed with the reason. With ``fail_fast`` no new
    node starts after the first failure (those are "skipped"). With ``timeout`` (seconds per
    node) a node still running is marked failed and ``on_timeout(name)`` is called so the
    caller can cut it off (close its connection); its late result is ignored.
    """
    if not names:
        return {}
    lock = threading.Lock()
    started: dict[str, float] = {}
    stop = threading.Event()
    first_failure: list[str] = []

    def failed(name: str) -> None:
        # Set by the worker itself: its thread may take the next node before we look.
        with lock:
            if fail_fast and not stop.is_set():
                first_failure.append(name)
                stop.set()

    def attempt(name: str) -> Outcome[T]:
        with lock:
            if stop.is_set():
                return Outcome("skipped", error=ProvisionError(
                    f"not started: {first_failure[0]} failed first (--fail-fast)"))
            began = started[name] = time.monotonic()
        try:
            value = action(name)
        except Exception as error:  # noqa: BLE001 - isolate the node; the others carry on
            failed(name)
            reason = error if isinstance(error, ProvisionError) else _unexpected(error)
            return Outcome("failed", error=reason, seconds=time.monotonic() - began)
        return Outcome("ok", value=value, seconds=time.monotonic() - began)

    results: dict[str, Outcome[T]] = {}

    def finish(name: str, outcome: Outcome[T]) -> None:
        results[name] = outcome
        on_done(name, outcome)

    pool = futures.ThreadPoolExecutor(max_workers=max(1, min(parallel, len(names))),
                                      thread_name_prefix="fleet")
    pending = {pool.submit(attempt, name): name for name in names}
    try:
        while pending:
            done, _ = futures.wait(pending, timeout=0.2 if timeout is not None else None,
                                   return_when=futures.FIRST_COMPLETED)
            for future in done:
                finish(pending.pop(future), future.result())
            if timeout is None:
                continue
            now = time.monotonic()
            for future, name in list(pending.items()):
                with lock:
                    began = started.get(name)
                if began is not None and now - began > timeout:
                    del pending[future]
                    failed(name)
                    finish(name, Outcome("failed", seconds=now - began, error=ProvisionError(
                        f"timed out after {timeout:g} s; the node was cut off",
                        "re-run with --retry-failed (and a larger --timeout): it resumes")))
                    on_timeout(name)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return {name: results[name] for name in names}


def _unexpected(error: Exception) -> ProvisionError:
    return ProvisionError(f"unexpected {type(error).__name__}: {error}",
                          "this is probably a bug in provision; please report it")


class DownloadGate:
    """At most ``limit`` model downloads at once across the fleet (``--max-downloads``)."""

    def __init__(self, limit: Optional[int]) -> None:
        self._slots = threading.BoundedSemaphore(limit) if limit else None

    def slot_for(self, name: str, on_event: FleetEventSink = _ignore) -> Callable[[], ContextManager[None]]:
        """Return the context manager factory ``api.up(download_slot=...)`` enters for ``name``."""

        @contextlib.contextmanager
        def slot() -> Iterator[None]:
            if self._slots is None:
                yield
                return
            if not self._slots.acquire(blocking=False):
                on_event(name, NodeEvent("waiting", "waiting for a download slot"))
                self._slots.acquire()
            on_event(name, NodeEvent("downloading", "download slot taken"))
            try:
                yield
            finally:
                self._slots.release()

        return slot


__all__ = ["Member", "members_of", "inventory_of", "NodeEvent", "FleetEventSink", "Outcome",
           "run_fleet", "DownloadGate", "Status"]
