"""Fetch model files from the Hugging Face Hub onto this node: resumable, verified, parallel.

Uploaded and run by `provision up` (stdlib only; any Python 3.8+). It reads a JSON manifest on
stdin (never a secret: the token is read from a 0600 file whose path the manifest names) and
prints one JSON event per line on stdout.

Why not huggingface_hub on the node: huggingface_hub 2.x deletes its partial file when a
download fails, so a dropped 12 GB download would start again from zero. Here the bytes
already on disk are kept in `<dest>.partial` and the next run resumes with an HTTP Range
request, whatever killed the previous one (a lost SSH session, a reboot).
"""

import hashlib
import http.client
import json
import os
import queue
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

CHUNK = 1 << 20
BUFFERS = 8  # blocks in flight between the socket and the hashing thread
FLUSH_EVERY = 128 << 20  # bytes written between two background fdatasyncs
_print_lock = threading.Lock()

# ggml tensor types (ggml.h) that are not quantized: ignored when finding a file's quant.
_FLOAT_TYPES = {0: "F32", 1: "F16", 30: "BF16", 28: "F64"}
_GGML_TYPES = {2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
               11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K"}


def emit(**event):
    with _print_lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


class FetchError(Exception):
    pass


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


def sha256_file(path, upto=None):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        remaining = upto
        while True:
            size = CHUNK * 8 if remaining is None else min(CHUNK * 8, remaining)
            if size == 0:
                break
            block = handle.read(size)
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest


class Hasher(threading.Thread):
    """sha256 on a thread of its own, fed from a small pool of reusable buffers.

    hashlib releases the GIL on big blocks, so hashing runs next to the socket read and the
    disk write instead of after them; reused buffers spare an allocation per block."""

    def __init__(self, digest):
        super().__init__(daemon=True)
        self.digest = digest
        self.todo = queue.Queue()
        self.free = queue.Queue()
        for _ in range(BUFFERS):
            self.free.put(bytearray(CHUNK))
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
        sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.stopping:
                return
            try:
                sync(self.fd)
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


class Fetcher:
    def __init__(self, manifest):
        self.endpoint = manifest["endpoint"].rstrip("/")
        self.token = None
        token_file = manifest.get("token_file")
        if token_file and os.path.exists(token_file):
            with open(token_file) as handle:
                self.token = handle.read().strip() or None
        self.retries = int(manifest.get("retries", 5))
        self.backoff = float(manifest.get("backoff", 1.0))
        self.timeout = float(manifest.get("timeout", 60))
        self.interval = float(manifest.get("progress_interval", 0.5))

    def url(self, item):
        quote = urllib.parse.quote
        return "%s/%s/resolve/%s/%s" % (self.endpoint, item["repo"],
                                        quote(item.get("revision") or "main", safe=""),
                                        quote(item["file"]))

    def fetch(self, item):
        dest = item["dest"]
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if os.path.exists(dest):
            digest = sha256_file(dest).hexdigest()
            if self.matches(item, os.path.getsize(dest), digest):
                write_record(item, digest)
                emit(event="done", dest=dest, bytes=os.path.getsize(dest), resumed_from=0,
                     note="present; verified")
                return
            emit(event="note", dest=dest, message="on-disk file failed verification; fetching again")
            os.remove(dest)
        partial = dest + ".partial"
        offset = os.path.getsize(partial) if os.path.exists(partial) else 0
        expected = item.get("size")
        if expected is not None and offset > expected:
            os.remove(partial)
            offset = 0
        digest = sha256_file(partial) if offset else hashlib.sha256()
        resumed_from = offset
        attempt = 0
        # A partial as long as the file (a run killed before the rename) needs no request:
        # a Range from its end would be answered 416, run after run.
        while expected is None or offset < expected:
            try:
                offset, digest = self.stream(item, partial, offset, digest)
                break
            except (urllib.error.URLError, OSError, http.client.HTTPException, FetchError) as error:
                if isinstance(error, urllib.error.HTTPError) and error.code in (401, 403, 404):
                    raise FetchError("HTTP %d from the Hub for %s/%s" % (error.code, item["repo"],
                                                                          item["file"]))
                attempt += 1
                if attempt > self.retries:
                    raise FetchError("gave up after %d retries: %s (the %d bytes fetched are kept; "
                                     "the next run resumes)" % (self.retries, error, offset))
                emit(event="retry", dest=dest, attempt=attempt, error=str(error)[:200], done=offset)
                time.sleep(self.backoff * (2 ** (attempt - 1)))
                offset = os.path.getsize(partial) if os.path.exists(partial) else 0
                digest = sha256_file(partial) if offset else hashlib.sha256()
        sha256 = digest.hexdigest()
        if not self.matches(item, offset, sha256):
            os.remove(partial)
            raise FetchError("downloaded %s does not match: got %d bytes sha256 %s, expected %s bytes "
                             "sha256 %s; removed, the next run fetches it again"
                             % (item["file"], offset, sha256, expected, item.get("sha256")))
        if item.get("quant") and dest.endswith(".gguf"):
            found = gguf_main_type(partial)
            wanted = expected_main_type(item["quant"])
            if found != wanted:
                os.remove(partial)
                raise FetchError("%s is a GGUF of %s weights, but the catalog says %s (%s)"
                                 % (item["file"], found, item["quant"], wanted))
        os.replace(partial, dest)
        write_record(item, sha256)
        emit(event="done", dest=dest, bytes=offset, resumed_from=resumed_from)

    def matches(self, item, size, sha256):
        if item.get("size") is not None and size != item["size"]:
            return False
        return not item.get("sha256") or sha256 == item["sha256"]

    def stream(self, item, partial, offset, digest):
        request = urllib.request.Request(self.url(item))
        if self.token:
            # Unredirected: the token goes to the Hub only, never to the CDN it redirects to.
            request.add_unredirected_header("Authorization", "Bearer " + self.token)
        if offset:
            request.add_header("Range", "bytes=%d-" % offset)
        response = urllib.request.urlopen(request, timeout=self.timeout)
        if offset and response.status != 206:
            offset, digest = 0, hashlib.sha256()  # the server ignored Range: start over
        total = item.get("size")
        mode = "ab" if offset else "wb"
        last = 0.0
        hasher = Hasher(digest)
        try:
            with open(partial, mode) as handle:
                flusher = Flusher(handle.fileno())
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
                    flusher.stop()
                os.fsync(handle.fileno())
        finally:
            digest = hasher.finish()
        if total is not None and offset < total:
            raise FetchError("connection ended early at %d of %d bytes" % (offset, total))
        return offset, digest


def main():
    manifest = json.load(sys.stdin)
    fetcher = Fetcher(manifest)
    failures = []

    def run(item):
        try:
            emit(event="start", dest=item["dest"], total=item.get("size"))
            fetcher.fetch(item)
        except Exception as error:  # report every file; the exit code says if any failed
            failures.append(item["dest"])
            emit(event="error", dest=item["dest"], message=str(error)[:500])

    with ThreadPoolExecutor(max_workers=max(1, int(manifest.get("parallel", 3)))) as pool:
        list(pool.map(run, manifest["files"]))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
