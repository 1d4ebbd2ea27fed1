"""What keeps a download safe when the run around it goes wrong: one writer per partial file,
a clear error when the disk fills, and nothing written lost when the fetcher is stopped.

Part of the node's fetcher (hf_fetch.py; stdlib only, uploaded with it).

- **One writer.** ``writer_lock(dest)`` holds an exclusive flock on ``<dest>.partial.lock``
  for as long as the file is fetched and checked. A second fetcher (a run taken over while
  the old one still winds down) waits for it, then finds the file as the first one left it.
  The kernel drops the lock when its holder dies, however it dies.
- **A full disk** (ENOSPC) stops the file at once, not after every retry: the message names
  the free space and what is still needed; the bytes on disk are kept for the next run.
- **Stopped, not killed.** SIGTERM (what the run's lock keeper sends when the run ends) or
  the end of stdin (the run that started us closed our channel) checkpoints every ranged file
  in flight, fdatasync and its range record, before exiting: a resumed run refetches only
  what was in the air, not what arrived since the last periodic checkpoint.
"""

import contextlib
import errno
import fcntl
import os
import signal
import threading
import time

from hf_fetch_io import FetchError

LOCK_WAIT = 60.0  # seconds to wait for another writer of the same file to go

_active = set()  # the ranged downloads in flight, checkpointed on a stop
_active_lock = threading.Lock()


class WriterBusy(Exception):
    """Another process kept writing the file for longer than LOCK_WAIT."""


@contextlib.contextmanager
def writer_lock(dest, wait=LOCK_WAIT):
    """Hold the one-writer lock of ``dest``'s partial file for the ``with`` block.

    The lock file is removed on the way out, still locked; so a waiter that then gets the
    lock checks it still holds the file of that name, and starts again if not."""
    path = dest + ".partial.lock"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    deadline = time.monotonic() + wait
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            if time.monotonic() > deadline:
                raise WriterBusy("another download has been writing %s.partial for %.0f s "
                                 "(an earlier run still going?); stop it, or wait, and "
                                 "re-run" % (dest, wait)) from None
            time.sleep(0.2)
            continue
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except OSError:
            same = False
        if same:
            break
        os.close(fd)  # its holder removed it as we waited: take the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, ("%d\n" % os.getpid()).encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
        os.close(fd)  # releases the lock


def is_disk_full(error):
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


class DiskFull(FetchError):
    reason = "disk_full"


def disk_full(dest, missing, kept):
    """Return the error for a full disk: the free space, what is still needed, what is kept."""
    folder = os.path.dirname(dest) or "."
    try:
        stats = os.statvfs(folder)
        free = "%s free" % _size(stats.f_bavail * stats.f_frsize)
    except OSError:
        free = "free space unknown"
    return DiskFull("the node's disk is full writing %s (%s on %s; %s still to fetch for this "
                    "file); the %s on disk are kept: free space, then re-run `provision up`"
                    % (os.path.basename(dest), free, folder, _size(missing), _size(kept)))


def _size(count):
    count = float(max(0, count))
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return ("%d %s" % (count, unit)) if unit == "bytes" else ("%.2f %s" % (count, unit))
        count /= 1000.0
    return "%.2f TB" % count


class StreamKept:
    """A file fetched as one stream, as ``stop_now`` sees it: what it wrote is flushed and
    synced (the partial's length is where the next run resumes)."""

    def __init__(self, handle):
        self.handle = handle
        self.abort = threading.Event()

    def checkpoint(self, timeout=-1):
        self.handle.flush()
        os.fsync(self.handle.fileno())


def track(download):
    with _active_lock:
        _active.add(download)


def untrack(download):
    with _active_lock:
        _active.discard(download)


def stop_now(code):
    """Checkpoint every ranged download in flight, then exit with ``code`` at once."""
    with _active_lock:
        downloads = list(_active)
    for download in downloads:
        with contextlib.suppress(Exception):
            download.abort.set()
            download.checkpoint(timeout=2.0)
    os._exit(code)


def stop_on_signals():
    """Make SIGTERM (and SIGHUP) a checkpointed stop (exit 143 / 129). The stop runs on a
    thread of its own: the handler may interrupt the main thread while it holds a lock."""
    def handler(signum, frame):
        threading.Thread(target=stop_now, args=(128 + signum,), daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)
