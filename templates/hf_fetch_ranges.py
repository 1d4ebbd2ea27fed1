"""A file as several byte ranges at once: the bookkeeping of [start, end) spans (pure), the
`.partial.ranges` sidecar, and the download that runs one connection per piece and grows into
the connection slots other files leave free. Part of hf_fetch.py (stdlib only; uploaded
beside it)."""

import contextlib
import http.client
import json
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from hf_fetch_guard import track, untrack
from hf_fetch_io import CHUNK, FetchError, RangeIgnored, _sync, emit, write_at

SPLIT_FLOOR = 1 << 20  # never split off less than this (a block is 1 MiB)
SPLIT_SECONDS = 0.25  # a half must take at least this long on one connection
SPLIT_LATENCIES = 4  # ... and at least this many request latencies
MEASURED = 0.5  # connection-seconds of body before a connection's rate counts


# -- range bookkeeping: pure functions over [start, end) spans -------------------------------------


def merge_spans(spans):
    """Return the spans sorted and merged: no empty ones, overlapping or touching ones joined."""
    merged = []
    for start, end in sorted((start, end) for start, end in spans if end > start):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def clip_spans(spans, limit):
    """Return the merged spans cut to [0, limit)."""
    return merge_spans([[max(start, 0), min(end, limit)] for start, end in spans])


def missing_spans(done, size):
    """Return the spans of [0, size) that ``done`` does not cover."""
    missing, at = [], 0
    for start, end in clip_spans(done, size):
        if start > at:
            missing.append([at, start])
        at = end
    if at < size:
        missing.append([at, size])
    return missing


def span_bytes(spans):
    return sum(end - start for start, end in merge_spans(spans))


def plan_pieces(missing, connections, min_piece):
    """Cut the missing spans into pieces for ``connections`` connections: about one each, of
    similar sizes, none below ``min_piece`` unless its whole span is."""
    total = sum(end - start for start, end in missing)
    target = max(1, -(-total // max(1, connections)))
    pieces = []
    for start, end in missing:
        length = end - start
        count = max(1, min(-(-length // target), length // max(1, min_piece)))
        bounds = [start + length * index // count for index in range(count + 1)]
        pieces.extend([bounds[index], bounds[index + 1]] for index in range(count))
    return pieces


def split_size(rate, latency, cap, floor=SPLIT_FLOOR, seconds=SPLIT_SECONDS):
    """Return the smallest half of a piece worth a request of its own, in bytes: what one
    connection fetches (at ``rate`` bytes/s, as measured) in ``seconds`` or in SPLIT_LATENCIES
    request latencies (``latency`` s, as measured), whichever is longer; between ``floor``
    and ``cap``. Before anything is measured (``rate`` None): ``cap``.

    A new request costs round trips (the Hub's /resolve, the redirect, a new connection), so
    it pays only for a piece that takes longer than those; in bytes, that depends on the
    speed of a connection: 16 MiB is 0.3 s at 50 MB/s but 4 s at 4 MB/s, and a free slot
    waits for the end of the file when nothing can be split."""
    if not rate:
        return cap
    worth = rate * max(seconds, SPLIT_LATENCIES * (latency or 0.0))
    return int(min(cap, max(floor, worth)))


def split_point(pos, end, min_piece):
    """Return where a free connection may take over the rest of a piece in flight (its second
    half), or None when too little is left to be worth a request: both halves >= min_piece."""
    if end - pos < 2 * max(1, min_piece):
        return None
    return pos + (end - pos) // 2


def checkpoint_every(size):
    """Bytes written between two checkpoints: 0.2% of the file (256 KiB to 64 MiB).

    A killed run refetches at most this, plus what arrived during one fdatasync: well under
    1% of what is on disk once a good part of the file is there."""
    return min(64 << 20, max(256 << 10, size // 500))


def parse_sidecar(text, size, sha256):
    """Return the spans a sidecar says are on disk, or None if it is unreadable or describes
    another file (another size or sha256)."""
    try:
        record = json.loads(text)
        if record["size"] != size or record.get("sha256") != sha256:
            return None
        spans = [[int(start), int(end)] for start, end in record["done"]]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return clip_spans(spans, size)


def render_sidecar(size, sha256, done):
    return json.dumps({"size": size, "sha256": sha256, "done": merge_spans(done)})


def write_sidecar(path, text):
    """Replace the sidecar atomically (tmp, fsync, rename): a reader sees the old or the new."""
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def check_piece_response(status, content_range, first, end, size):
    """Raise unless a response to ``Range: bytes=first-(end-1)`` carries exactly those bytes.

    A 200 is the whole file: RangeIgnored (written at the range's offset it would corrupt the
    file), unless the range asked for was the whole file."""
    if status == 200 and first == 0 and end == size:
        return
    if status == 200:
        raise RangeIgnored("the server ignored Range (HTTP 200 to bytes=%d-%d)" % (first, end - 1))
    match = re.match(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", content_range or "")
    if status != 206 or not match:
        raise FetchError("unexpected answer to bytes=%d-%d: HTTP %s, Content-Range %r"
                         % (first, end - 1, status, content_range))
    got_first, got_last, total = match.groups()
    if (int(got_first), int(got_last)) != (first, end - 1) or total not in ("*", str(size)):
        raise FetchError("asked for bytes %d-%d/%d, got Content-Range %r"
                         % (first, end - 1, size, content_range))



# -- the ranged download --------------------------------------------------------------------------


class Piece:
    """One byte range in flight: [start, end), of which [start, pos) is written. ``end`` only
    shrinks: when a free connection takes over the piece's second half. ``began`` is when its
    current transfer's body started (None between transfers), at ``began_pos``."""

    __slots__ = ("began", "began_pos", "end", "failed", "pos", "start", "taken")

    def __init__(self, start, end):
        self.start = self.pos = start
        self.end = end
        self.taken = self.failed = False
        self.began, self.began_pos = None, start


class RangedDownload:
    """One file fetched as byte ranges on several connections, written in place.

    It starts with up to ``connections`` connections, one per planned piece, and grows into
    slots the other files leave free (Slots.offer; ``max_connections`` over all files is the
    ceiling). A connection that is done with its piece takes a planned one, else the second
    half of the biggest piece still in flight, so the connections end together; with nothing
    worth a request left (split_size), it gives its slot back. A piece that fails is retried
    from its last byte written, through a fresh /resolve. Every checkpoint_every(size) bytes,
    a checkpoint fdatasyncs the file and then lists what is on disk in the sidecar: a killed
    run refetches little, a failed one nothing."""

    def __init__(self, fetcher, item, partial, sidecar, done, ticket=None):
        self.fetcher, self.item, self.partial, self.sidecar = fetcher, item, partial, sidecar
        self.ticket = ticket
        self.dest, self.size, self.sha256 = item["dest"], item["size"], item.get("sha256")
        self.done = done  # the spans on disk before this run
        missing = missing_spans(done, self.size)
        self.pieces = [Piece(start, end) for start, end in
                       plan_pieces(missing, fetcher.connections, fetcher.min_piece)]
        self.auto_split = getattr(fetcher, "auto_split", False)  # else min_piece is fixed
        self.lock = threading.Lock()  # guards the pieces and the counters below
        self.checkpointing = threading.Lock()  # one checkpoint at a time (the sidecar's tmp)
        self.ended = threading.Condition(self.lock)  # a connection ended
        self.active = self.peak = 0  # connections running, and the most at once
        self.written = span_bytes(done)
        self.unsynced = 0
        self.every = checkpoint_every(self.size)
        self.last_progress = 0.0
        self.body_bytes, self.body_seconds = 0, 0.0  # transfers ended: what one connection gets
        self.latency_sum, self.latency_count = 0.0, 0  # request to response headers
        self.failures = []  # pieces out of retries, as messages
        self.stopped = None  # the error that stopped every connection
        self.abort = threading.Event()
        self.wake = threading.Event()  # a checkpoint is due
        self.closing = False
        self.fd = None

    def run(self):
        """Fetch what is missing; return the most connections used at once. Raise FetchError
        (RangeIgnored if the server ignores Range) once every connection has stopped."""
        # The sidecar first: a preallocated partial never exists without one.
        write_sidecar(self.sidecar, render_sidecar(self.size, self.sha256, self.done))
        self.fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o644)
        slots = self.fetcher.slots
        track(self)  # a stop checkpoints it (hf_fetch_guard.stop_now)
        try:
            if os.fstat(self.fd).st_size != self.size:
                os.ftruncate(self.fd, self.size)
            want = min(self.fetcher.connections, len(self.pieces))
            count = slots.acquire(self.ticket, want) if want else 0
            first = [self.claim() for _ in range(count)]
            emit(event="ranges", dest=self.dest, pieces=len(self.pieces), connections=count,
                 resumed_from=self.written, missing=self.size - self.written)
            syncer = threading.Thread(target=self.checkpoints, daemon=True)
            syncer.start()
            for piece in first:
                self.spawn(piece)
            slots.offer(self)
            try:
                with self.lock:
                    self.ended.wait_for(lambda: self.active == 0)
            finally:
                slots.withdraw(self)
            self.closing = True
            self.wake.set()
            syncer.join()
            self.checkpoint()
        finally:
            untrack(self)
            os.close(self.fd)
        if self.stopped is not None:
            raise self.stopped
        if self.failures:
            raise FetchError("gave up on %d range(s) after %d retries: %s (the %d bytes on disk "
                             "are kept; the next run fetches only what is missing)"
                             % (len(self.failures), self.fetcher.retries, self.failures[0],
                                self.written))
        return self.peak

    # -- connections: each one a thread that holds one slot ------------------------------------

    def bytes_left(self):
        with self.lock:
            return sum(piece.end - piece.pos for piece in self.pieces if not piece.failed)

    def claim(self):
        """Return a piece for one more connection (counted as running), or None."""
        piece = self.take()
        if piece is not None:
            with self.lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
        return piece

    def spawn(self, piece):
        """Start a connection on a claimed piece; it holds one slot, given back when it ends."""
        threading.Thread(target=self.work, args=(piece,), daemon=True).start()

    def work(self, piece):
        """Be one connection: fetch pieces until none is left worth a request."""
        try:
            while piece is not None and not self.abort.is_set():
                self.fetch_piece(piece)
                piece = self.take()
        finally:
            with self.lock:
                self.active -= 1
                self.ended.notify_all()
            # Nothing left to hand out: the next file may start, and gets this slot first.
            self.fetcher.slots.leave(self.ticket)
            self.fetcher.slots.release()

    def split_size(self):
        """The smallest half worth a request: measured (split_size), or min_piece if fixed.
        Called under the lock."""
        if not self.auto_split:
            return self.fetcher.min_piece
        now = time.monotonic()
        count, seconds = self.body_bytes, self.body_seconds
        for piece in self.pieces:
            if piece.began is not None:
                count += piece.pos - piece.began_pos
                seconds += now - piece.began
        rate = count / seconds if seconds >= MEASURED else None
        latency = self.latency_sum / self.latency_count if self.latency_count else None
        return split_size(rate, latency, self.fetcher.min_piece)

    def take(self):
        """Return a piece for a free connection: a planned one, else the second half of the
        biggest piece in flight; None when nothing is left worth a request."""
        with self.lock:
            if self.abort.is_set():
                return None
            for piece in self.pieces:
                if not piece.taken:
                    piece.taken = True
                    return piece
            busy = [piece for piece in self.pieces if not piece.failed and piece.pos < piece.end]
            victim = max(busy, key=lambda piece: piece.end - piece.pos, default=None)
            # Its connection may write up to one block past pos before it sees the new end.
            mid = victim and split_point(min(victim.pos + CHUNK, victim.end), victim.end,
                                         self.split_size())
            if not mid:
                return None
            piece = Piece(mid, victim.end)
            piece.taken, victim.end = True, mid
            self.pieces.append(piece)
            return piece

    def fetch_piece(self, piece):
        """Fetch a piece to its end, each retry from its last byte written; the slot is given
        back during the backoff."""
        attempt = 0
        slots = self.fetcher.slots
        while piece.pos < piece.end and not self.abort.is_set():
            try:
                self.transfer(piece)
            except (urllib.error.URLError, OSError, http.client.HTTPException, FetchError) as error:
                fatal = error if isinstance(error, RangeIgnored) else \
                    self.fetcher.fatal(error, self.item, self.bytes_left(), self.written)
                if fatal is not None:
                    self.stop(fatal)
                    return
                attempt += 1
                if attempt > self.fetcher.retries:
                    with self.lock:
                        piece.failed = True
                        self.failures.append("bytes %d-%d: %s" % (piece.pos, piece.end - 1, error))
                    return
                emit(event="retry", dest=self.dest, attempt=attempt, error=str(error)[:200],
                     done=self.written, range=[piece.pos, piece.end])
                slots.release()
                try:
                    self.abort.wait(self.fetcher.backoff * (2 ** (attempt - 1)))
                finally:
                    slots.acquire(self.ticket)

    def transfer(self, piece):
        """Fetch the rest of a piece on one connection, writing each block where it belongs."""
        first, end = piece.pos, piece.end
        asked = time.monotonic()
        with contextlib.closing(self.fetcher.open(self.item, first, end - 1)) as response:
            check_piece_response(response.status, response.headers.get("Content-Range"),
                                 first, end, self.size)
            with self.lock:
                piece.began, piece.began_pos = time.monotonic(), piece.pos
                self.latency_sum += piece.began - asked
                self.latency_count += 1
            try:
                self.receive(piece, response)
            finally:
                with self.lock:
                    self.body_bytes += piece.pos - piece.began_pos
                    self.body_seconds += time.monotonic() - piece.began
                    piece.began = None

    def receive(self, piece, response):
        first, end = piece.pos, piece.end
        while not self.abort.is_set():
            want = min(CHUNK, piece.end - piece.pos)
            if want <= 0:
                return  # done, or its rest was taken over by another connection
            # What one recv gives, written at once: no block waits in memory to fill up.
            block = response.read1(want)
            if not block:
                raise FetchError("connection ended early at byte %d of bytes %d-%d"
                                 % (piece.pos, first, end - 1))
            with self.lock:  # the end may have moved while the block was read
                at, count = piece.pos, min(len(block), piece.end - piece.pos)
            if count <= 0:
                return
            write_at(self.fd, memoryview(block)[:count], at)
            self.advance(piece, count)

    def advance(self, piece, count):
        """Count bytes written: a checkpoint or a progress event may be due."""
        with self.lock:
            piece.pos += count
            self.written += count
            self.unsynced += count
            due = self.unsynced >= self.every
            if due:
                self.unsynced = 0
            now = time.monotonic()
            report = now - self.last_progress >= self.fetcher.interval
            if report:
                self.last_progress = now
            written = self.written
        if due:
            self.wake.set()
        if report:
            emit(event="progress", dest=self.dest, done=written, total=self.size)
            if self.fetcher.slots.free and self.auto_split:
                self.fetcher.slots.poke()  # what it measured may make a piece worth splitting

    def stop(self, error):
        """Stop every connection of this file (the first error given is the one raised)."""
        with self.lock:
            if self.stopped is None:
                self.stopped = error
        self.abort.set()

    def checkpoints(self):
        """Checkpoint whenever advance() says so, on a thread of its own (off the sockets)."""
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.closing:
                return
            try:
                self.checkpoint()
            except OSError:
                return  # the final checkpoint reports real trouble

    def checkpoint(self, timeout=-1):
        """Make the bytes written so far durable, then list them in the sidecar; one at a time.

        The spans are taken before the fdatasync: every byte in them was written before it.
        With ``timeout`` (a stop), give up rather than wait longer for the locks."""
        if not self.checkpointing.acquire(timeout=timeout):
            return
        try:
            if not self.lock.acquire(timeout=timeout):
                return
            try:
                spans = self.done + [[piece.start, piece.pos] for piece in self.pieces]
            finally:
                self.lock.release()
            _sync(self.fd)
            write_sidecar(self.sidecar, render_sidecar(self.size, self.sha256, spans))
        finally:
            self.checkpointing.release()
