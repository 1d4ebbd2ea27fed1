"""The fetcher's shared parts: events, errors, the GGUF quantization check, the connection
slots all files share, hashing as bytes arrive, background flushing, the `.verified` record,
positional writes. Part of hf_fetch.py (stdlib only; uploaded beside it)."""

import contextlib
import hashlib
import json
import os
import queue
import struct
import sys
import threading

CHUNK = 1 << 20
BUFFERS = 8  # blocks in flight between the socket and the hashing thread
FLUSH_EVERY = 128 << 20  # bytes written between two background fdatasyncs
HASH_BLOCK = 8 << 20  # read size when hashing a file already on disk
MIN_PIECE = 16 << 20  # the smallest range worth a request of its own (a new connection costs RTTs)
_print_lock = threading.Lock()
_sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync

# ggml tensor types (ggml.h) that are not quantized: ignored when finding a file's quant.
_FLOAT_TYPES = {0: "F32", 1: "F16", 30: "BF16", 28: "F64"}
_GGML_TYPES = {2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
               11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K"}


# -- events and the GGUF check --------------------------------------------------------------------


def emit(**event):
    with _print_lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


class FetchError(Exception):
    reason = None  # what the error event names, for the step to act on (e.g. "disk_full")


class ChecksumMismatch(FetchError):
    """A file from a node.yaml url: is not the one its sha256 names."""

    reason = "checksum"


class RangeIgnored(FetchError):
    """The server answered a ranged request with the whole file (HTTP 200)."""


def gguf_main_type(path):
    """Return the quantization most of a GGUF file's weights use, e.g. "Q4_K"."""
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise FetchError("not a GGUF file (bad magic)")
        version = struct.unpack("<I", handle.read(4))[0]
        count_format = "<Q" if version >= 2 else "<I"
        count_size = 8 if version >= 2 else 4
        tensors = struct.unpack(count_format, handle.read(count_size))[0]
        kvs = struct.unpack(count_format, handle.read(count_size))[0]

        def read_string():
            length = struct.unpack(count_format, handle.read(count_size))[0]
            return handle.read(length)

        scalar = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

        def skip_value(kind):
            if kind in scalar:
                handle.seek(scalar[kind], 1)
            elif kind == 8:
                read_string()
            elif kind == 9:
                item_kind = struct.unpack("<I", handle.read(4))[0]
                items = struct.unpack(count_format, handle.read(count_size))[0]
                if item_kind in scalar:
                    handle.seek(scalar[item_kind] * items, 1)
                else:
                    for _ in range(items):
                        skip_value(item_kind)
            else:
                raise FetchError("unknown GGUF value type %d" % kind)

        for _ in range(kvs):
            read_string()
            skip_value(struct.unpack("<I", handle.read(4))[0])
        weight = {}
        for _ in range(tensors):
            read_string()
            dims = struct.unpack("<I", handle.read(4))[0]
            elements = 1
            for size in struct.unpack("<%dQ" % dims, handle.read(8 * dims)):
                elements *= size
            kind = struct.unpack("<I", handle.read(4))[0]
            handle.seek(8, 1)
            if kind not in _FLOAT_TYPES:
                name = _GGML_TYPES.get(kind, "type%d" % kind)
                weight[name] = weight.get(name, 0) + elements
    if not weight:
        return "F16"
    return max(weight, key=weight.get)


def expected_main_type(quant):
    """Map a catalog quant name to the ggml type most tensors use: Q4_K_S -> Q4_K."""
    quant = quant.upper()
    for suffix in ("_S", "_M", "_L"):
        if quant.endswith(suffix) and "_K" in quant:
            return quant[: -len(suffix)]
    return quant


# -- the connections all files share --------------------------------------------------------------


class Ticket:
    """A file that passed Slots.enter: ``satisfied`` once it got its first connection, ``left``
    once it needs no new one."""

    __slots__ = ("left", "satisfied")

    def __init__(self):
        self.satisfied = self.left = False


class Slots:
    """The connections all files share, at most ``size`` at once, and which files may use them.

    Files pass ``enter`` in manifest order (``index``), at most ``files_at_once`` at a time, and
    ``leave`` once they need no new connection (their last transfers may still run; a retry
    may still ``acquire``), before giving back their last slot: so that slot goes to the next
    file, and a file's sha256 is checked while the next one downloads. A transfer
    holds a slot: ``acquire`` waits for one, and those waiting get a freed slot first. A free
    slot nobody waits for goes to a ranged download that can use one more connection (see
    ``offer``): the one with the most bytes left, which takes over half of its biggest piece in
    flight. Unless a file is about to start: one that may pass ``enter`` now, or one that
    passed it and has no connection yet; the slot is kept for it.

    A download offered here is asked, under this lock, ``bytes_left()`` and ``claim()`` (a
    piece for one more connection, or None); ``spawn(piece)`` then runs outside the lock. So
    a download must never call in here while holding its own lock."""

    def __init__(self, size, files_at_once=1, files=0):
        self.size = self.free = max(1, size)
        self.files_at_once = max(1, files_at_once)
        self.files = files  # how many files will pass enter() with an index
        self.next = 0  # the index of the next file to enter
        self.in_flight = 0  # files between enter and leave
        self.unsatisfied = 0  # files that entered and have no connection yet
        self.waiting = 0  # threads in acquire()
        self.downloads = []  # offered: may take a free slot for one more connection
        self.cond = threading.Condition()

    def enter(self, index=None):
        """Wait until this file may use the network (after those before it, at most
        files_at_once at a time); return its Ticket."""
        with self.cond:
            self.cond.wait_for(lambda: (index is None or index == self.next)
                               and self.in_flight < self.files_at_once)
            if index is not None:
                self.next += 1
            self.in_flight += 1
            self.unsatisfied += 1
            self.cond.notify_all()
            return Ticket()

    def leave(self, ticket):
        """The file needs no new connection: the next one may start. Once per ticket."""
        with self.cond:
            if ticket is None or ticket.left:
                return
            ticket.left = True
            self.in_flight -= 1
            self._satisfy(ticket)
            self.cond.notify_all()
            grants = self._grants()
        self._spawn(grants)

    def acquire(self, ticket=None, want=1):
        """Wait for a free slot; take up to ``want`` of those free, and return how many."""
        with self.cond:
            self.waiting += 1
            try:
                self.cond.wait_for(lambda: self.free > 0)
            finally:
                self.waiting -= 1
            count = min(max(1, want), self.free)
            self.free -= count
            self._satisfy(ticket)
            grants = self._grants()
        self._spawn(grants)
        return count

    def release(self, count=1):
        with self.cond:
            self.free += count
            if self.waiting:
                self.cond.notify_all()
            grants = self._grants()
        self._spawn(grants)

    def offer(self, download):
        """Let ``download`` grow into free slots until ``withdraw``."""
        with self.cond:
            self.downloads.append(download)
            grants = self._grants()
        self._spawn(grants)

    def withdraw(self, download):
        with self.cond:
            self.downloads.remove(download)

    def poke(self):
        """Look again whether a free slot can be given (a download's split size may have
        dropped as it measured its connections)."""
        with self.cond:
            grants = self._grants()
        self._spawn(grants)

    def _satisfy(self, ticket):
        if ticket is not None and not ticket.satisfied:
            ticket.satisfied = True
            self.unsatisfied -= 1

    def _grants(self):
        """Give free slots to offered downloads (under the lock); return [(download, piece)]."""
        grants = []
        while (self.free > 0 and not self.waiting and not self.unsatisfied
               and not (self.next < self.files and self.in_flight < self.files_at_once)):
            for download in sorted(self.downloads, key=lambda d: -d.bytes_left()):
                piece = download.claim()
                if piece is not None:
                    self.free -= 1
                    grants.append((download, piece))
                    break
            else:
                break
        return grants

    @staticmethod
    def _spawn(grants):
        for download, piece in grants:
            download.spawn(piece)


# -- hashing and flushing -------------------------------------------------------------------------


class Hasher(threading.Thread):
    """sha256 on a thread of its own, fed from a small pool of reusable buffers.

    hashlib releases the GIL on big blocks, so hashing runs next to the socket read (or the
    file read) and the disk write instead of after them; reused buffers spare an allocation
    per block."""

    def __init__(self, digest, size=CHUNK, count=BUFFERS):
        super().__init__(daemon=True)
        self.digest = digest
        self.todo = queue.Queue()
        self.free = queue.Queue()
        for _ in range(count):
            self.free.put(bytearray(size))
        self.start()

    def run(self):
        while True:
            job = self.todo.get()
            if job is None:
                return
            buf, count = job
            try:
                self.digest.update(memoryview(buf)[:count])
            finally:
                self.free.put(buf)

    def buffer(self):
        """Return a free buffer (waits while all of them are being hashed)."""
        return self.free.get()

    def release(self, buf):
        self.free.put(buf)

    def update(self, buf, count):
        """Hash the first ``count`` bytes of ``buf``, then give it back to the pool."""
        self.todo.put((buf, count))

    def finish(self):
        """Hash what is queued; return the digest."""
        self.todo.put(None)
        self.join()
        return self.digest


def sha256_file(path, upto=None):
    """Return the sha256 of a file (of its first ``upto`` bytes): big reads, hashed meanwhile."""
    hasher = Hasher(hashlib.sha256(), HASH_BLOCK, 4)
    remaining = upto
    try:
        with open(path, "rb", buffering=0) as handle:
            while remaining is None or remaining > 0:
                buf = hasher.buffer()
                want = len(buf) if remaining is None else min(len(buf), remaining)
                count = handle.readinto(memoryview(buf)[:want])
                if not count:
                    hasher.release(buf)
                    break
                hasher.update(buf, count)
                if remaining is not None:
                    remaining -= count
    finally:
        digest = hasher.finish()
    return digest


class Flusher(threading.Thread):
    """fdatasync every FLUSH_EVERY bytes on a thread of its own, so a big file goes to disk
    while it arrives and the fsync before the rename has little left to write."""

    def __init__(self, fd):
        super().__init__(daemon=True)
        self.fd = fd
        self.pending = 0
        self.wake = threading.Event()
        self.stopping = False
        self.start()

    def wrote(self, count):
        self.pending += count
        if self.pending >= FLUSH_EVERY:
            self.pending = 0
            self.wake.set()

    def run(self):
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.stopping:
                return
            try:
                _sync(self.fd)
            except OSError:
                return  # the final fsync reports real trouble

    def stop(self):
        """Stop and wait (before the file is closed: the fd must not be reused meanwhile)."""
        self.stopping = True
        self.wake.set()
        self.join()


def write_record(item, sha256):
    stat = os.stat(item["dest"])
    record = {"size": stat.st_size, "mtime": int(stat.st_mtime), "sha256": sha256}
    tmp = item["record"] + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(record, handle)
    os.replace(tmp, item["record"])




def remove(*paths):
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _setting(manifest, key, default):
    value = manifest.get(key)
    return default if value is None else value


def write_at(fd, data, offset):
    """Write all of ``data`` at ``offset`` (threads may write one fd at different offsets)."""
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written
