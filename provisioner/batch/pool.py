"""The batch's jobs, shared by the nodes' lanes (threads). No I/O.

A lane takes a job when it has a free slot and no other live lane has fewer jobs in flight:
each job goes to the node with the shortest queue, and every node keeps ``depth`` jobs queued
so it never idles between two. A lane that leaves (its node died, or failed job after job)
hands its unfinished jobs back; they go to the front, for the other nodes.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Optional

from .sweep import Job


@dataclasses.dataclass(frozen=True)
class JobFailure:
    job: Job
    node: str
    message: str


class JobPool:
    """Pending jobs, who runs what, and how each ended."""

    def __init__(self, jobs: list[Job], depth: int) -> None:
        self.depth = depth
        self._pending = collections.deque(jobs)
        self._running: dict[str, dict[int, Job]] = {}  # lane -> job index -> job
        self._live: set[str] = set()
        self._cond = threading.Condition()
        self.finished: dict[int, str] = {}  # job index -> the node that made it
        self.failures: dict[int, JobFailure] = {}
        self.requeued = 0
        self.stopped = False
        self.total = len(jobs)

    def join(self, lane: str) -> None:
        """A lane is ready to take jobs."""
        with self._cond:
            self._live.add(lane)
            self._running.setdefault(lane, {})
            self._cond.notify_all()

    def take(self, lane: str) -> Optional[Job]:
        """Return the next job for ``lane``, or None: nothing pending, no free slot, or a
        live lane with a shorter queue should have it."""
        with self._cond:
            if self.stopped or not self._pending or lane not in self._live:
                return None
            mine = len(self._running[lane])
            if mine >= self.depth:
                return None
            if any(len(self._running[other]) < mine for other in self._live if other != lane):
                return None
            job = self._pending.popleft()
            self._running[lane][job.index] = job
            return job

    def finish(self, lane: str, job: Job) -> None:
        with self._cond:
            self._running.get(lane, {}).pop(job.index, None)
            self.finished[job.index] = lane
            self._cond.notify_all()

    def fail(self, lane: str, job: Job, message: str) -> None:
        with self._cond:
            self._running.get(lane, {}).pop(job.index, None)
            self.failures[job.index] = JobFailure(job, lane, message)
            self._cond.notify_all()

    def leave(self, lane: str) -> list[Job]:
        """``lane`` stops: its unfinished jobs go back to the front (for the other lanes,
        unless the batch was stopped); return them."""
        with self._cond:
            self._live.discard(lane)
            back = sorted(self._running.pop(lane, {}).values(), key=lambda job: job.index)
            self._running[lane] = {}
            self._pending.extendleft(reversed(back))  # stopped: nobody takes them; unrun()
            if not self.stopped:
                self.requeued += len(back)
            self._cond.notify_all()
            return back

    def stop(self) -> None:
        """Queue nothing more (Ctrl-C); lanes wind down."""
        with self._cond:
            self.stopped = True
            self._cond.notify_all()

    def settled(self) -> bool:
        """True when nothing more will happen: every job ended, or no node is left to run
        the rest, or the batch was stopped."""
        with self._cond:
            return self._settled()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a change; return ``settled()``."""
        with self._cond:
            if not self._settled():
                self._cond.wait(timeout)
            return self._settled()

    def in_flight(self, lane: str) -> int:
        with self._cond:
            return len(self._running.get(lane, {}))

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def unrun(self) -> list[Job]:
        """The jobs that never ended (no node left, or stopped), in batch order."""
        with self._cond:
            running = [job for jobs in self._running.values() for job in jobs.values()]
            return sorted(list(self._pending) + running, key=lambda job: job.index)

    def _settled(self) -> bool:
        busy = any(self._running.get(lane) for lane in self._running)
        if self.stopped:
            return not busy
        return not busy and (not self._pending or not self._live)
