"""A file as several byte ranges at once: the bookkeeping of [start, end) spans (pure), the
`.partial.ranges` sidecar, and the download that runs one connection per piece. Part of
hf_fetch.py (stdlib only; uploaded beside it)."""

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

from hf_fetch_io import CHUNK, FetchError, RangeIgnored, _sync, emit, write_at


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
    shrinks: when a free connection takes over the piece's second half."""

    __slots__ = ("end", "failed", "pos", "start", "taken")

    def __init__(self, start, end):
        self.start = self.pos = start
        self.end = end
        self.taken = self.failed = False


class RangedDownload:
    """One file fetched as byte ranges on several connections, written in place.

    Each connection (a worker thread) takes a planned piece; when none is left it takes over
    the second half of the biggest piece still in flight, so the connections end together. A
    piece that fails is retried from its last byte written, through a fresh /resolve. Every
    checkpoint_every(size) bytes, a checkpoint fdatasyncs the file and then lists what is on
    disk in the sidecar: a killed run refetches little, a failed one nothing."""

    def __init__(self, fetcher, item, partial, sidecar, done):
        self.fetcher, self.item, self.partial, self.sidecar = fetcher, item, partial, sidecar
        self.dest, self.size, self.sha256 = item["dest"], item["size"], item.get("sha256")
        self.done = done  # the spans on disk before this run
        missing = missing_spans(done, self.size)
        self.pieces = [Piece(start, end) for start, end in
                       plan_pieces(missing, fetcher.connections, fetcher.min_piece)]
        self.lock = threading.Lock()  # guards the pieces and the counters below
        self.written = span_bytes(done)
        self.unsynced = 0
        self.every = checkpoint_every(self.size)
        self.last_progress = 0.0
        self.failures = []  # pieces out of retries, as messages
        self.stopped = None  # the error that stopped every connection
        self.abort = threading.Event()
        self.wake = threading.Event()  # a checkpoint is due
        self.closing = False
        self.fd = None

    def run(self):
        """Fetch what is missing; return the number of connections used. Raise FetchError
        (RangeIgnored if the server ignores Range) once every connection has stopped."""
        # The sidecar first: a preallocated partial never exists without one.
        write_sidecar(self.sidecar, render_sidecar(self.size, self.sha256, self.done))
        self.fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(self.fd).st_size != self.size:
                os.ftruncate(self.fd, self.size)
            workers = [threading.Thread(target=self.work, daemon=True)
                       for _ in range(min(self.fetcher.connections, len(self.pieces)))]
            emit(event="ranges", dest=self.dest, pieces=len(self.pieces), connections=len(workers),
                 resumed_from=self.written, missing=self.size - self.written)
            syncer = threading.Thread(target=self.checkpoints, daemon=True)
            syncer.start()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            self.closing = True
            self.wake.set()
            syncer.join()
            self.checkpoint()
        finally:
            os.close(self.fd)
        if self.stopped is not None:
            raise self.stopped
        if self.failures:
            raise FetchError("gave up on %d range(s) after %d retries: %s (the %d bytes on disk "
                             "are kept; the next run fetches only what is missing)"
                             % (len(self.failures), self.fetcher.retries, self.failures[0],
                                self.written))
        return len(workers)

    def work(self):
        """Be one connection: fetch pieces until none is left worth a request."""
        while not self.abort.is_set():
            piece = self.take()
            if piece is None:
                return
            self.fetch_piece(piece)

    def take(self):
        """Return a piece for a free connection: a planned one, else the second half of the
        biggest piece in flight; None when nothing is left worth a request."""
        with self.lock:
            for piece in self.pieces:
                if not piece.taken:
                    piece.taken = True
                    return piece
            busy = [piece for piece in self.pieces if not piece.failed and piece.pos < piece.end]
            victim = max(busy, key=lambda piece: piece.end - piece.pos, default=None)
            # Its connection may write up to one block past pos before it sees the new end.
            mid = victim and split_point(min(victim.pos + CHUNK, victim.end), victim.end,
                                         self.fetcher.min_piece)
            if not mid:
                return None
            piece = Piece(mid, victim.end)
            piece.taken, victim.end = True, mid
            self.pieces.append(piece)
            return piece

    def fetch_piece(self, piece):
        """Fetch a piece to its end, each retry from its last byte written."""
        attempt = 0
        while piece.pos < piece.end and not self.abort.is_set():
            try:
                with self.fetcher.slots:
                    self.transfer(piece)
            except (urllib.error.URLError, OSError, http.client.HTTPException, FetchError) as error:
                fatal = error if isinstance(error, RangeIgnored) else self.fetcher.fatal(error, self.item)
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
                self.abort.wait(self.fetcher.backoff * (2 ** (attempt - 1)))

    def transfer(self, piece):
        """Fetch the rest of a piece on one connection, writing each block where it belongs."""
        first, end = piece.pos, piece.end
        with contextlib.closing(self.fetcher.open(self.item, first, end - 1)) as response:
            check_piece_response(response.status, response.headers.get("Content-Range"),
                                 first, end, self.size)
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

    def checkpoint(self):
        """Make the bytes written so far durable, then list them in the sidecar.

        The spans are taken before the fdatasync: every byte in them was written before it."""
        with self.lock:
            spans = self.done + [[piece.start, piece.pos] for piece in self.pieces]
        _sync(self.fd)
        write_sidecar(self.sidecar, render_sidecar(self.size, self.sha256, spans))


