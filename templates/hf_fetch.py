"""Fetch model files from the Hugging Face Hub onto this node: resumable, verified, parallel.

Uploaded and run by `provision up` (stdlib only; any Python 3.8+). It reads two lines on stdin:
a JSON manifest, then the Hub token (an empty line when there is none), kept in memory only:
never in a file, an argument or the environment. It prints one JSON event per line on stdout.
With `stop_on_eof` it exits as soon as its stdin closes: the run that started it stopped it,
or the SSH channel is gone; what is on disk then is what a kill would leave, and resumes.

Why not huggingface_hub on the node: huggingface_hub 2.x deletes its partial file when a
download fails, so a dropped 12 GB download would start again from zero. Here the bytes
already on disk are kept in `<dest>.partial` and the next run resumes with an HTTP Range
request, whatever killed the previous one (a lost SSH session, a reboot).

The Hub's CDN caps what one connection gets, so a file above `range_threshold` bytes is
fetched as several byte ranges at once, each on its own connection, written in place into a
preallocated `.partial`. A ranged file starts with `connections` connections and grows into
the slots other files leave free: `max_connections` is the ceiling over all files, and every
slot stays busy to the last byte (a free one goes to the file with the most bytes left, which
takes over half of its biggest piece in flight). What is on disk is listed in
`<dest>.partial.ranges` after an fdatasync, so a cut run fetches only what is missing. A
smaller file is one stream, hashed as it arrives; a ranged file is hashed once assembled.
Either way size, sha256 (and a GGUF's quantization) are checked before the rename into
place, and `<dest>.verified` records the result. At most `parallel` files use the network at
once, in manifest order; a file checks its sha256 after it gave its connections back.

The parts: hf_fetch_io.py (events, the GGUF check, the connection slots, hashing and
flushing), hf_fetch_ranges.py (range bookkeeping as pure functions over [start, end) spans,
and the ranged download), and here the Fetcher (HTTP, one stream) and main. The three files
are uploaded together.

Manifest: endpoint, stop_on_eof (false), parallel (3), retries (5), backoff (1.0), timeout (60),
progress_interval (0.5), connections (8), max_connections (16), range_threshold (256 MiB),
min_piece (the smallest range worth a request of its own; default: measured, what one
connection gets in 0.25 s or 4 request latencies, 1 to 16 MiB), files: [{repo, file, revision,
dest, size, sha256, quant, record}]. A file with `url` (and `entry`, its node.yaml field) is
fetched from that URL instead of the Hub, and never with the token; a wrong sha256 fails it
with reason "checksum".
Events, by `event`: start {total}; ranges {pieces, connections (at the start), resumed_from,
missing}; progress {done, total}; retry {attempt, error, done[, range]}; note {message};
verify {bytes}; done {bytes, resumed_from, connections (the most at once)}; error {message,
reason (None, "disk_full" or "checksum")}.
Each names its file by `dest`.
"""

import hashlib
import http.client
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

# The fetcher's other parts are uploaded beside it; a test may load this file from elsewhere.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hf_fetch_io import (  # noqa: E402
    MIN_PIECE,
    ChecksumMismatch,
    FetchError,
    Flusher,
    Hasher,
    RangeIgnored,
    Slots,
    _setting,
    emit,
    expected_main_type,
    gguf_main_type,
    remove,
    sha256_file,
    write_record,
)
from hf_fetch_guard import (  # noqa: E402
    StreamKept,
    WriterBusy,
    disk_full,
    is_disk_full,
    stop_now,
    stop_on_signals,
    track,
    untrack,
    writer_lock,
)
from hf_fetch_ranges import RangedDownload, clip_spans, parse_sidecar, span_bytes  # noqa: E402

# -- the Fetcher: HTTP, and a file as one stream -------------------------------------------------


class Fetcher:
    def __init__(self, manifest, token=None):
        self.endpoint = manifest["endpoint"].rstrip("/")
        self.token = token or None  # from stdin, held in memory only
        self.retries = int(manifest.get("retries", 5))
        self.backoff = float(manifest.get("backoff", 1.0))
        self.timeout = float(manifest.get("timeout", 60))
        self.interval = float(manifest.get("progress_interval", 0.5))
        self.connections = max(1, int(_setting(manifest, "connections", 8)))
        self.threshold = int(_setting(manifest, "range_threshold", 256 << 20))
        # Given, the smallest range split off; else measured, MIN_PIECE at most.
        self.auto_split = manifest.get("min_piece") is None
        self.min_piece = max(1, int(_setting(manifest, "min_piece", MIN_PIECE)))
        # Each HTTP transfer, ranged or not, of any file holds one slot while it runs.
        self.slots = Slots(int(_setting(manifest, "max_connections", 16)),
                           int(manifest.get("parallel", 3)), len(manifest.get("files") or ()))
        self.hub_host = urllib.parse.urlsplit(self.endpoint).netloc

    def url(self, item):
        if item.get("url"):  # a user's file off the Hub (node.yaml url:)
            return item["url"]
        quote = urllib.parse.quote
        return "%s/%s/resolve/%s/%s" % (self.endpoint, item["repo"],
                                        quote(item.get("revision") or "main", safe=""),
                                        quote(item["file"]))

    def open(self, item, first=None, last=None):
        """GET the file through /resolve, from byte ``first`` (to ``last``, inclusive) if given.

        Called for every attempt: the Hub's redirect is a signed URL that expires, so it is
        asked for again rather than reused."""
        request = urllib.request.Request(self.url(item))
        if self.token and not item.get("url"):
            # Unredirected: the token goes to the Hub only, never to the CDN it redirects to.
            request.add_unredirected_header("Authorization", "Bearer " + self.token)
        if first is not None:
            request.add_header("Range", "bytes=%d-%s" % (first, "" if last is None else last))
        return urllib.request.urlopen(request, timeout=self.timeout)

    def fatal(self, error, item, missing=0, kept=0):
        """Return the FetchError to stop with if retrying cannot help: a full disk, or HTTP
        401/403/404 from the Hub itself (the same from the CDN may be an expired signed URL: a
        retry re-resolves). ``missing`` and ``kept``: the file's bytes still to fetch and on disk."""
        if is_disk_full(error):
            return disk_full(item["dest"], missing, kept)
        if not (isinstance(error, urllib.error.HTTPError) and error.code in (401, 403, 404, 410)):
            return None
        host = urllib.parse.urlsplit(error.filename or "").netloc
        if item.get("url"):  # the same from where it redirects to may be an expired signed URL
            if host in ("", urllib.parse.urlsplit(item["url"]).netloc):
                return FetchError("%s: HTTP %d from %s (sent without the Hub token)"
                                  % (item.get("entry") or item["file"], error.code, item["url"]))
            return None
        if host in ("", self.hub_host):
            return FetchError("HTTP %d from the Hub for %s/%s" % (error.code, item["repo"], item["file"]))
        return None

    def fetch(self, item, index=None):
        """Fetch one file (the ``index``-th of the manifest: files start in that order), check
        it and move it into place; one writer at a time per file (hf_fetch_guard.py)."""
        ticket = self.slots.enter(index)
        try:
            with writer_lock(item["dest"]):
                try:
                    got = self.download(item, ticket)
                finally:
                    self.slots.leave(ticket)  # the next file may start while this one is hashed
                if got is not None:
                    self.place(item, *got)
        except WriterBusy as error:
            self.slots.leave(ticket)
            raise FetchError(str(error)) from None
        except OSError as error:  # the disk filled outside a transfer: a checkpoint, the record
            if not is_disk_full(error):
                raise
            kept = self.kept_bytes(item)
            raise disk_full(item["dest"], (item.get("size") or kept) - kept, kept) from None

    def kept_bytes(self, item):
        """The bytes of the file a next run will find on disk (its range record, or the
        length of a streamed partial)."""
        partial, sidecar = item["dest"] + ".partial", item["dest"] + ".partial.ranges"
        try:
            if os.path.exists(sidecar):
                with open(sidecar) as handle:
                    spans = parse_sidecar(handle.read(), item.get("size"), item.get("sha256"))
                return span_bytes(spans or [])
            return os.path.getsize(partial) if os.path.exists(partial) else 0
        except OSError:
            return 0

    def download(self, item, ticket):
        """Bring the file's bytes into its partial; return (digest or None, resumed_from,
        connections), or None if it was in place already."""
        dest = item["dest"]
        partial, sidecar = dest + ".partial", dest + ".partial.ranges"
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if os.path.exists(dest):
            digest = sha256_file(dest).hexdigest()
            if self.matches(item, os.path.getsize(dest), digest):
                write_record(item, digest)
                remove(sidecar)  # left by a run killed between the rename and its removal
                emit(event="done", dest=dest, bytes=os.path.getsize(dest), resumed_from=0,
                     note="present; verified")
                return None
            emit(event="note", dest=dest, message="on-disk file failed verification; fetching again")
            os.remove(dest)
        done = self.on_disk(item, partial, sidecar)
        resumed_from, connections, digest = span_bytes(done), 1, None
        size = item.get("size")
        ranged = size is not None and (os.path.exists(sidecar) or
                                       (size > self.threshold and self.connections > 1))
        if ranged:
            try:
                connections = RangedDownload(self, item, partial, sidecar, done, ticket).run()
            except RangeIgnored as error:
                emit(event="note", dest=dest, fallback="one stream",
                     message="%s: fetching the file as one stream, from zero" % error)
                remove(sidecar)
                open(partial, "wb").close()
                ranged, resumed_from = False, 0
        if not ranged:
            digest = self.fetch_stream(item, partial, resumed_from, ticket)
        return digest, resumed_from, connections

    def place(self, item, digest, resumed_from, connections):
        """Check size, sha256 and GGUF quant of the partial; move it into place."""
        dest, size = item["dest"], item.get("size")
        partial, sidecar = dest + ".partial", dest + ".partial.ranges"
        length = os.path.getsize(partial)
        if digest is None:  # ranges arrive out of order: hash the assembled file
            emit(event="verify", dest=dest, bytes=length)
            digest = sha256_file(partial)
        sha256 = digest.hexdigest()
        if not self.matches(item, length, sha256):
            remove(partial, sidecar)
            if item.get("url") and item.get("sha256") and sha256 != item["sha256"]:
                raise ChecksumMismatch(
                    "%s: the file from %s has sha256 %s (%d bytes), but node.yaml says sha256 %s; "
                    "removed" % (item.get("entry") or item["file"], item["url"], sha256, length,
                                 item["sha256"]))
            raise FetchError("downloaded %s does not match: got %d bytes sha256 %s, expected %s bytes "
                             "sha256 %s; removed, the next run fetches it again"
                             % (item["file"], length, sha256, size, item.get("sha256")))
        if item.get("quant") and dest.endswith(".gguf"):
            found = gguf_main_type(partial)
            wanted = expected_main_type(item["quant"])
            if found != wanted:
                remove(partial, sidecar)
                raise FetchError("%s is a GGUF of %s weights, but the catalog says %s (%s)"
                                 % (item["file"], found, item["quant"], wanted))
        os.replace(partial, dest)
        remove(sidecar)
        write_record(item, sha256)
        emit(event="done", dest=dest, bytes=length, resumed_from=resumed_from,
             connections=connections)

    def on_disk(self, item, partial, sidecar):
        """Return the spans of the file already in ``partial``; remove what cannot be trusted.

        With a sidecar, the spans it lists (the ranged download writes it before the partial
        grows). Without one, the partial's first bytes: the single stream appends in order."""
        size = item.get("size")
        length = os.path.getsize(partial) if os.path.exists(partial) else 0
        if os.path.exists(sidecar):
            with open(sidecar) as handle:
                spans = parse_sidecar(handle.read(), size, item.get("sha256"))
            if size is not None and spans is not None:
                return clip_spans(spans, length)
            emit(event="note", dest=item["dest"],
                 message="the range record of the partial file is for another file; fetching again")
            remove(partial, sidecar)
            return []
        if size is not None and length > size:
            remove(partial)
            return []
        return [[0, length]] if length else []

    def matches(self, item, size, sha256):
        if item.get("size") is not None and size != item["size"]:
            return False
        return not item.get("sha256") or sha256 == item["sha256"]

    def fetch_stream(self, item, partial, offset, ticket=None):
        """Fetch the file as one stream from ``offset`` (the partial's first bytes are kept),
        with retries; return the sha256 digest of the whole file."""
        expected = item.get("size")
        digest = sha256_file(partial) if offset else hashlib.sha256()
        attempt = 0
        # A partial as long as the file (a run killed before the rename) needs no request:
        # a Range from its end would be answered 416, run after run.
        while expected is None or offset < expected:
            try:
                self.slots.acquire(ticket)
                try:
                    offset, digest = self.stream(item, partial, offset, digest)
                    self.slots.leave(ticket)  # before the release: the next file gets the slot
                finally:
                    self.slots.release()
                break
            except (urllib.error.URLError, OSError, http.client.HTTPException, FetchError) as error:
                fatal = self.fatal(error, item, (expected or 0) - offset, offset)
                if fatal is not None:
                    raise fatal
                attempt += 1
                if attempt > self.retries:
                    raise FetchError("gave up after %d retries: %s (the %d bytes fetched are kept; "
                                     "the next run resumes)" % (self.retries, error, offset))
                emit(event="retry", dest=item["dest"], attempt=attempt, error=str(error)[:200],
                     done=offset)
                time.sleep(self.backoff * (2 ** (attempt - 1)))
                offset = os.path.getsize(partial) if os.path.exists(partial) else 0
                digest = sha256_file(partial) if offset else hashlib.sha256()
        return digest

    def stream(self, item, partial, offset, digest):
        response = self.open(item, offset or None)
        if offset and response.status != 206:
            offset, digest = 0, hashlib.sha256()  # the server ignored Range: start over
        total = item.get("size")
        mode = "ab" if offset else "wb"
        last = 0.0
        hasher = Hasher(digest)
        try:
            with open(partial, mode) as handle:
                flusher = Flusher(handle.fileno())
                kept = StreamKept(handle)
                track(kept)  # a stop flushes what arrived (hf_fetch_guard.stop_now)
                try:
                    while True:
                        buf = hasher.buffer()
                        count = response.readinto(buf)
                        if not count:
                            hasher.release(buf)
                            break
                        handle.write(memoryview(buf)[:count])
                        hasher.update(buf, count)
                        offset += count
                        flusher.wrote(count)
                        now = time.monotonic()
                        if now - last >= self.interval:
                            last = now
                            emit(event="progress", dest=item["dest"], done=offset, total=total)
                    handle.flush()
                finally:
                    untrack(kept)
                    flusher.stop()
                os.fsync(handle.fileno())
        finally:
            digest = hasher.finish()
            response.close()
        if total is not None and offset < total:
            raise FetchError("connection ended early at %d of %d bytes" % (offset, total))
        return offset, digest


def exit_when_stdin_closes():
    """Stop when stdin ends: the run that started us closed our channel, or lost it."""
    while sys.stdin.read(4096):
        pass
    stop_now(3)  # what arrived is checkpointed; the next run resumes from there


def main():
    # Line 1: the manifest; line 2: the token (empty: none). Never a file, never argv.
    manifest = json.loads(sys.stdin.readline())
    token = sys.stdin.readline().strip()
    stop_on_signals()
    if manifest.get("stop_on_eof"):
        threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    fetcher = Fetcher(manifest, token)
    failures = []

    def run(index, item):
        try:
            emit(event="start", dest=item["dest"], total=item.get("size"))
            fetcher.fetch(item, index)
        except Exception as error:  # report every file; the exit code says if any failed
            failures.append(item["dest"])
            emit(event="error", dest=item["dest"], message=str(error)[:500],
                 reason=getattr(error, "reason", None))

    # A thread per file: the Slots let `parallel` of them use the network at once, in order.
    threads = [threading.Thread(target=run, args=pair, daemon=True)
               for pair in enumerate(manifest["files"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
