"""A local stand-in for the Hugging Face Hub that the real `huggingface_hub` client talks to.

It speaks the parts of the Hub protocol that downloads and metadata look-ups use (see
FACTS.md, "Hugging Face Hub protocol"), checked against huggingface_hub 2.4.0's source:

- `HEAD`/`GET /{repo}/resolve/{revision}/{path}`: `X-Repo-Commit`, `ETag` (+ `X-Linked-Etag`,
  `X-Linked-Size` for LFS files: sha256 / size), `Content-Length`, `Accept-Ranges: bytes`,
  `Range` -> 206 + `Content-Range` (416 when unsatisfiable). No Xet headers, so the client
  downloads over plain HTTP. With `cdn=True`, LFS files answer 302 to a second port (as the
  real Hub redirects to its CDN) and the body comes from there; `expire_redirects(seconds)`
  makes those redirect URLs expire (403 from the CDN afterwards), as the Hub's signed ones do.
- `POST /api/models/{repo}/paths-info/{revision}` (form `paths=..&expand=..`),
  `GET /api/models/{repo}[/revision/{revision}]` (`?blobs=true` adds sizes and sha256),
  `GET /api/models/{repo}/tree/{revision}[/{path}]` (used by `snapshot_download`),
  `GET /api/models/{repo}/auth-check` (`HfApi.auth_check`).
- `add_plain_file(url_path, path)`: a file at a plain URL (HEAD, GET, Range; no Hub headers,
  no access check), as a web host off the Hub serves a LoRA.
- Errors carry `X-Error-Code` (which the client maps to exceptions), `X-Error-Message` and a
  JSON body `{"error": ...}`: `GatedRepo` (401 without a token, 403 with a wrong one),
  `RepoNotFound`, `RevisionNotFound`, `EntryNotFound` (404).

Gated repos gate file content and `auth-check` only; their metadata is public, as on the Hub.
Bodies are streamed from disk with `os.sendfile`, so multi-GB files cost no memory.
The request log records whether an `Authorization` header came, never its value, and when each
request started and ended (time.monotonic), so tests can see requests overlap.

Faults and limits, for downloaders: `cut_after` (drop a body after N bytes, optionally only the
request whose Range starts at an offset), `ignore_range` (answer 200 with the whole body, as a
server without range support), `throttle` (a cap in bytes/s on each connection, as a CDN that
limits what one connection gets).

Usage::

    with FakeHub() as hub:
        hub.add_file("city96/FLUX.1-dev-gguf", "flux1-dev-Q8_0.gguf", gguf_path)
        hf_hub_download(repo, name, endpoint=hub.url, cache_dir=tmp)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["FakeHub", "HubFile", "HubRequest"]

# Suffixes the Hub's default .gitattributes stores in LFS (a subset); bigger files are LFS too.
_LFS_SUFFIXES = frozenset(
    ".gguf .safetensors .bin .pt .pth .ckpt .onnx .msgpack .h5 .npz .npy .pkl .zip .tar .gz .zst".split()
)
_LFS_MIN_SIZE = 10 * 1024 * 1024
_CHUNK = 8 * 1024 * 1024
_DATE = "2025-01-01T00:00:00.000Z"


@dataclass(frozen=True)
class HubFile:
    """One file as the fake Hub serves it."""

    repo: str
    path: str
    revision: str
    commit: str  # 40-hex X-Repo-Commit of `revision`
    size: int
    sha256: str
    lfs: bool
    blob_id: str  # git blob oid (of the LFS pointer file when `lfs`)
    pointer_size: int  # size of the LFS pointer file (0 when not `lfs`)
    source: Path = field(repr=False)

    @property
    def etag(self) -> str:
        """The ETag the client keys its cache on: sha256 for LFS files, else the git oid."""
        return self.sha256 if self.lfs else self.blob_id


@dataclass(frozen=True)
class HubRequest:
    """One request as the fake Hub (or its CDN) saw and answered it."""

    server: str  # "hub" or "cdn"
    method: str
    path: str  # as sent, percent-encoding kept, without the query
    query: str
    range: str | None  # the Range header, verbatim
    has_authorization: bool  # an Authorization header was present (its value is never kept)
    status: int
    bytes_sent: int  # body bytes written
    dropped: bool  # the body ended early: cut by cut_after, or the client went away
    started: float = 0.0  # time.monotonic() when the request was read
    ended: float | None = None  # time.monotonic() when its answer was finished (None: still going)
    # Just before the body's last bytes were handed to the socket: a client cannot have read
    # them earlier. ``ended`` can come later than the client's next request under load (this
    # thread waits for the GIL after the write), so overlaps are judged on this one.
    last_write: float | None = None


@dataclass
class _Entry:
    """The mutable record behind a HubRequest, logged before the response starts.

    Logged first and updated as the answer goes out (bytes_sent is raised before each write),
    so a client that has read a response always finds it complete in the log.
    """

    server: str
    method: str
    path: str
    query: str
    range: str | None
    has_authorization: bool
    status: int = 0
    bytes_sent: int = 0
    dropped: bool = False
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    last_write: float | None = None


@dataclass
class _Cut:
    n_bytes: int
    times: int
    range_start: int | None  # only requests for bytes from this offset (None: any request)


@dataclass
class _Repo:
    gated: bool = False
    files: dict[str, dict[str, HubFile]] = field(default_factory=dict)  # revision -> path -> file


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class FakeHub:
    """A threaded HTTP server on 127.0.0.1 that serves files the way the Hub does."""

    def __init__(self, *, cdn: bool = False, host: str = "127.0.0.1") -> None:
        self._host = host
        self._cdn_enabled = cdn
        self._lock = threading.Lock()
        self._repos: dict[str, _Repo] = {}
        self._plain: dict[str, HubFile] = {}  # url path -> a file served without Hub headers
        self._token: str | None = None
        self._cuts: dict[tuple[str, str], list[_Cut]] = {}  # (repo, path) -> cuts, oldest first
        self._ignore_range = False
        self._throttle: int | None = None  # bytes/s per connection
        self._redirect_ttl: float | None = None  # seconds a CDN redirect stays valid
        self._log: list[_Entry] = []
        self._connections: set[socket.socket] = set()
        self._blob_dir: Path | None = None  # made on the first add_file(bytes), removed by stop()
        self._stopped = False
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._hub: _Server | None = None
        self._cdn: _Server | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeHub:
        """Bind random ports and serve in background threads; return self. Not restartable."""
        if self._stopped:
            raise RuntimeError("a stopped FakeHub cannot be started again: make a new one")
        if self._hub is not None:
            return self
        self._hub = _Server((self._host, 0), self, "hub")
        self._servers.append(self._hub)
        if self._cdn_enabled:
            self._cdn = _Server((self._host, 0), self, "cdn")
            self._servers.append(self._cdn)
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-hub-{server.role}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and delete blobs made from in-memory data."""
        for server in self._servers:
            server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for server in self._servers:
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()
        self._hub = self._cdn = None
        self._stopped = True
        if self._blob_dir is not None:
            shutil.rmtree(self._blob_dir, ignore_errors=True)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The endpoint to give the client (HF_ENDPOINT / endpoint=), no trailing slash."""
        if self._hub is None:
            raise RuntimeError("FakeHub is not started")
        return _server_url(self._hub)

    @property
    def cdn_url(self) -> str | None:
        """The CDN's base URL when started with cdn=True, else None."""
        return _server_url(self._cdn) if self._cdn is not None else None

    # -- content -----------------------------------------------------------------------------

    def add_file(
        self,
        repo: str,
        path: str,
        data_or_file_path: bytes | str | os.PathLike[str],
        *,
        revision: str = "main",
        gated: bool | None = None,
        lfs: bool | None = None,
        sha256: str | None = None,
    ) -> HubFile:
        """Serve `data_or_file_path` as `path` of model repo `repo` at `revision`.

        bytes are written to a private blob file; a path is served in place (do not change it
        afterwards). `gated` sets the whole repo gated or not (None: leave it as it is).
        `lfs` None means: LFS for model-weight suffixes and files of 10 MiB or more.
        `sha256` skips hashing a big file whose digest the caller already knows.
        """
        if isinstance(data_or_file_path, (bytes, bytearray, memoryview)):
            data = bytes(data_or_file_path)
            digest = hashlib.sha256(data).hexdigest()
            with self._lock:
                if self._blob_dir is None:
                    self._blob_dir = Path(tempfile.mkdtemp(prefix="fake-hub-"))
            source = self._blob_dir / digest
            source.write_bytes(data)
            sha256 = digest
        else:
            source = Path(data_or_file_path).resolve()
            if not source.is_file():
                raise FileNotFoundError(source)
        size = source.stat().st_size
        if sha256 is None:
            sha256 = _sha256_file(source)
        if lfs is None:
            lfs = PurePosixPath(path).suffix.lower() in _LFS_SUFFIXES or size >= _LFS_MIN_SIZE
        if lfs:
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
            blob_id, pointer_size = _git_blob_oid(pointer), len(pointer)
        else:
            blob_id, pointer_size = _git_blob_oid_of_file(source, size), 0
        hub_file = HubFile(
            repo=repo, path=path.strip("/"), revision=revision, commit=self.commit(repo, revision),
            size=size, sha256=sha256, lfs=lfs, blob_id=blob_id, pointer_size=pointer_size, source=source,
        )
        with self._lock:
            entry = self._repos.setdefault(repo, _Repo())
            if gated is not None:
                entry.gated = gated
            entry.files.setdefault(revision, {})[hub_file.path] = hub_file
        return hub_file

    def add_plain_file(self, url_path: str, file_path: str | os.PathLike[str]) -> str:
        """Serve a file at `url_path` as a plain web server does (HEAD, GET, Range; no Hub
        headers, no access check), e.g. a LoRA host off the Hub; return its full URL.
        Faults (`cut_after("", url_path, ...)`, throttle) apply to it too."""
        source = Path(file_path).resolve()
        size = source.stat().st_size
        plain = HubFile(repo="", path=url_path.strip("/"), revision="", commit="", size=size,
                        sha256=_sha256_file(source), lfs=False, blob_id="", pointer_size=0,
                        source=source)
        with self._lock:
            self._plain[url_path] = plain
        return self.url + url_path

    def set_token(self, valid_token: str | None) -> None:
        """Set the one token that unlocks gated repos (None: no token does)."""
        with self._lock:
            self._token = valid_token

    @staticmethod
    def commit(repo: str, revision: str = "main") -> str:
        """Return the fixed 40-hex commit sha that `revision` of `repo` resolves to."""
        return hashlib.sha1(f"fake-hub:{repo}@{revision}".encode()).hexdigest()

    # -- faults ------------------------------------------------------------------------------

    def cut_after(
        self, repo: str, path: str, n_bytes: int, *, times: int = 1, range_start: int | None = None
    ) -> None:
        """Make the next `times` GETs of that file send `n_bytes` of body, then drop the connection.

        With `range_start`, only GETs for bytes from that offset are cut (`Range: bytes=N-...`;
        a GET without Range starts at 0): one range of a multi-connection download. A new cut
        for the same file and `range_start` replaces the old one; cuts for other offsets stay.
        """
        if n_bytes < 0 or times < 1:
            raise ValueError("n_bytes must be >= 0 and times >= 1")
        if range_start is not None and range_start < 0:
            raise ValueError("range_start must be >= 0")
        with self._lock:
            cuts = self._cuts.setdefault((repo, path.strip("/")), [])
            cuts[:] = [cut for cut in cuts if cut.range_start != range_start]
            cuts.append(_Cut(n_bytes, times, range_start))

    def _take_cut(self, repo: str, path: str, start: int) -> int | None:
        with self._lock:
            cuts = self._cuts.get((repo, path), [])
            cut = next((c for c in cuts if c.range_start in (None, start)), None)
            if cut is None:
                return None
            cut.times -= 1
            if cut.times == 0:
                cuts.remove(cut)
            return cut.n_bytes

    def ignore_range(self, enabled: bool = True) -> None:
        """Answer every GET with 200 and the whole body, whatever its Range (no Accept-Ranges)."""
        with self._lock:
            self._ignore_range = enabled

    def throttle(self, bytes_per_second: int | None) -> None:
        """Cap each connection's file body at `bytes_per_second` (None: no cap), as a CDN does.

        The cap is per connection, not shared: N connections get N times the rate."""
        if bytes_per_second is not None and bytes_per_second < 1:
            raise ValueError("bytes_per_second must be >= 1")
        with self._lock:
            self._throttle = bytes_per_second

    def expire_redirects(self, after_seconds: float | None) -> None:
        """Make CDN redirect URLs expire `after_seconds` after the Hub issued them (None: never).

        An expired URL gets 403 from the CDN, as a signed URL past its `X-Amz-Expires` does:
        a client must ask `/resolve` again. Only with `cdn=True`."""
        with self._lock:
            self._redirect_ttl = after_seconds

    def _serving_options(self) -> tuple[bool, int | None]:
        with self._lock:
            return self._ignore_range, self._throttle

    # -- request log -------------------------------------------------------------------------

    @property
    def requests(self) -> list[HubRequest]:
        """A snapshot of the request log, oldest first (requests still being answered included)."""
        with self._lock:
            return [HubRequest(**vars(entry)) for entry in self._log]

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._log.clear()

    def _record(self, entry: _Entry) -> None:
        with self._lock:
            self._log.append(entry)

    # -- lookups used by the handler ------------------------------------------------------------

    def _repo(self, repo: str) -> _Repo:
        with self._lock:
            entry = self._repos.get(repo)
        if entry is None:
            raise _HubError(404, "RepoNotFound", "Repository not found")
        return entry

    def _resolve_revision(self, repo: str, entry: _Repo, revision: str) -> tuple[str, dict[str, HubFile]]:
        with self._lock:
            for name, files in entry.files.items():
                if revision in (name, self.commit(repo, name)):
                    return self.commit(repo, name), dict(files)
        raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")

    def _check_access(self, repo: str, entry: _Repo, authorization: str | None) -> None:
        if not entry.gated:
            return
        with self._lock:
            token = self._token
        presented = None
        if authorization is not None and authorization.lower().startswith("bearer "):
            presented = authorization[len("bearer ") :].strip()
        if presented and token and hmac.compare_digest(presented.encode(), token.encode()):
            return
        repo_url = f"{self.url}/{repo}"
        if authorization is None:
            raise _HubError(
                401, "GatedRepo",
                f"Access to model {repo} is restricted. You must have access to it and be authenticated "
                f"to access it. Please log in. Visit {repo_url} to ask for access.",
            )
        raise _HubError(
            403, "GatedRepo",
            f"Access to model {repo} is restricted and you are not in the authorized list. "
            f"Visit {repo_url} to ask for access.",
        )

    def _blob_by_sha(self, sha256: str) -> HubFile | None:
        with self._lock:
            for entry in self._repos.values():
                for files in entry.files.values():
                    for hub_file in files.values():
                        if hub_file.lfs and hub_file.sha256 == sha256:
                            return hub_file
        return None

    def _repo_ids(self) -> set[str]:
        with self._lock:
            return set(self._repos)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], hub: FakeHub, role: str) -> None:
        self.hub = hub
        self.role = role
        super().__init__(address, _Handler)


def _server_url(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "FakeHub/1"

    # -- plumbing ----------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        with self.server.hub._lock:
            self.server.hub._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.hub._lock:
                self.server.hub._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the request log is the record; stderr stays quiet

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        split = urlsplit(self.path)
        self._query = parse_qs(split.query)
        self._entry = _Entry(
            server=self.server.role, method=method, path=split.path, query=split.query,
            range=self.headers.get("Range"), has_authorization=self.headers.get("Authorization") is not None,
        )
        self.server.hub._record(self._entry)
        try:
            self._answer(method, split.path)
        finally:
            self._entry.ended = time.monotonic()

    def _answer(self, method: str, raw_path: str) -> None:
        try:
            body = self._read_body()
            try:
                if self.server.role == "cdn":
                    self._route_cdn(method, raw_path)
                else:
                    self._route(method, raw_path, body)
            except _HubError as error:
                self._send_error(error)
        except (BrokenPipeError, ConnectionResetError):
            self._entry.dropped = True
            self.close_connection = True
        except Exception as error:  # a bug in the fake: answer 500 if still possible, and say so
            self.close_connection = True
            if self._entry.status == 0:
                self._send_error(_HubError(500, None, f"fake hub error: {error!r}"))
            raise

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _start(self, status: int, headers: dict[str, str]) -> None:
        self._entry.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send_bytes(self, method: str, status: int, body: bytes, headers: dict[str, str]) -> None:
        self._start(status, {**headers, "Content-Length": str(len(body))})
        if method != "HEAD" and body:
            self._entry.bytes_sent = len(body)
            self.wfile.write(body)

    def _send_json(self, method: str, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self._send_bytes(method, status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    def _send_error(self, error: _HubError) -> None:
        headers = {**error.headers, "X-Error-Message": error.message}
        if error.code is not None:
            headers["X-Error-Code"] = error.code
        self._send_json(self.command, {"error": error.message}, error.status, headers)

    # -- routing -----------------------------------------------------------------------------

    def _route(self, method: str, raw_path: str, body: bytes) -> None:
        hub = self.server.hub
        with hub._lock:
            plain = hub._plain.get(raw_path)
        if plain is not None and method in ("GET", "HEAD"):
            return self._serve_file(method, plain, {})
        if raw_path.startswith("/api/models/"):
            segments = raw_path[len("/api/models/") :].split("/")
            repo, rest = _split_repo([unquote(s) for s in segments], hub._repo_ids())
            raw_rest = segments[len(segments) - len(rest) :]
            if method == "POST" and len(rest) >= 2 and rest[0] == "paths-info":
                return self._paths_info(repo, unquote("/".join(raw_rest[1:])), body)
            if method not in ("GET", "HEAD"):
                raise _HubError(405, None, "Method not allowed")
            if rest == []:
                return self._model_info(method, repo, "main")
            if len(rest) == 2 and rest[0] == "revision":
                return self._model_info(method, repo, rest[1])
            if rest == ["auth-check"]:
                entry = hub._repo(repo)
                hub._check_access(repo, entry, self.headers.get("Authorization"))
                return self._send_json(method, {})
            if len(rest) >= 2 and rest[0] == "tree":
                return self._tree(method, repo, rest[1], "/".join(rest[2:]))
            raise _HubError(404, None, "Not Found")
        if "/resolve/" in raw_path and method in ("GET", "HEAD"):
            raw_repo, _, tail = raw_path[1:].partition("/resolve/")
            raw_revision, _, raw_file = tail.partition("/")
            return self._resolve(method, unquote(raw_repo), unquote(raw_revision), unquote(raw_file))
        raise _HubError(404, None, "Not Found")

    def _route_cdn(self, method: str, raw_path: str) -> None:
        match = re.fullmatch(r"/blobs/([0-9a-f]{64})", raw_path)
        hub_file = self.server.hub._blob_by_sha(match.group(1)) if match else None
        if method not in ("GET", "HEAD") or hub_file is None:
            raise _HubError(404, None, "Not Found")
        expires = self._query.get("expires", [None])[-1]
        if expires is not None and time.time() > float(expires):
            raise _HubError(403, None, "Request has expired")
        self._serve_file(method, hub_file, {})

    # -- endpoints ---------------------------------------------------------------------------

    def _resolve(self, method: str, repo: str, revision: str, path: str) -> None:
        hub = self.server.hub
        entry = hub._repo(repo)
        hub._check_access(repo, entry, self.headers.get("Authorization"))
        commit, files = hub._resolve_revision(repo, entry, revision)
        hub_file = files.get(path)
        if hub_file is None:
            raise _HubError(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit})
        headers = {"X-Repo-Commit": commit, "ETag": f'"{hub_file.etag}"'}
        if hub_file.lfs:
            headers["X-Linked-Etag"] = f'"{hub_file.sha256}"'
            headers["X-Linked-Size"] = str(hub_file.size)
        cdn = hub.cdn_url
        if cdn is not None and hub_file.lfs:
            # As the real Hub: the redirect carries the metadata; the body lives elsewhere.
            headers["ETag"] = f'"{hub_file.blob_id}"'
            headers["Location"] = f"{cdn}/blobs/{hub_file.sha256}?repo={quote(repo, safe='')}"
            with hub._lock:
                ttl = hub._redirect_ttl
            if ttl is not None:
                headers["Location"] += f"&expires={time.time() + ttl:.3f}"
            return self._send_bytes(method, 302, b"", headers)
        self._serve_file(method, hub_file, headers)

    def _serve_file(self, method: str, hub_file: HubFile, headers: dict[str, str]) -> None:
        size = hub_file.size
        ignore_range, rate = self.server.hub._serving_options()
        headers = {
            **headers,
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(PurePosixPath(hub_file.path).name)}",
        }
        if not ignore_range:
            headers["Accept-Ranges"] = "bytes"
        headers.setdefault("ETag", f'"{hub_file.etag}"')
        start, end, status = 0, size - 1, 200
        requested_start = 0  # what cut_after(range_start=) matches, even when Range is ignored
        range_header = self.headers.get("Range")
        if range_header is not None:
            parsed = _parse_range(range_header, size)
            if ignore_range:
                requested_start = parsed[0] if parsed else 0
            elif parsed is None:
                raise _HubError(416, None, "Range Not Satisfiable", {"Content-Range": f"bytes */{size}"})
            elif parsed != ():
                start, end = parsed
                requested_start, status = start, 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1
        self._start(status, {**headers, "Content-Length": str(length)})
        if method == "HEAD" or length == 0:
            return
        cut = self.server.hub._take_cut(hub_file.repo, hub_file.path, requested_start)
        limit = length if cut is None else min(cut, length)
        self.wfile.flush()
        sock_fd = self.connection.fileno()
        entry, done = self._entry, 0
        block = _CHUNK if rate is None else max(16 * 1024, min(_CHUNK, rate // 200))  # 5 ms of it
        began = time.monotonic()
        with open(hub_file.source, "rb") as source:
            while done < limit:
                if rate is not None:  # keep this connection at `rate` bytes/s from its start
                    delay = began + done / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                count = min(block, limit - done)
                if done + count >= limit:
                    entry.last_write = time.monotonic()
                entry.bytes_sent = done + count  # raised first: see _Entry
                try:
                    sent = os.sendfile(sock_fd, source.fileno(), start + done, count)
                except OSError:
                    entry.bytes_sent = done
                    raise
                done += sent
                entry.bytes_sent = done
                if sent == 0:  # the file shrank under us
                    break
        if done < length:
            entry.dropped = True
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _model_info(self, method: str, repo: str, revision: str) -> None:
        hub = self.server.hub
        entry = hub._repo(repo)
        commit, files = hub._resolve_revision(repo, entry, revision)
        blobs = _truthy(self._query.get("blobs", ["false"])[-1])
        siblings = []
        for hub_file in sorted(files.values(), key=lambda f: f.path):
            sibling: dict[str, Any] = {"rfilename": hub_file.path}
            if blobs:
                sibling["size"] = hub_file.size
                sibling["blobId"] = hub_file.blob_id
                if hub_file.lfs:
                    sibling["lfs"] = {
                        "sha256": hub_file.sha256, "size": hub_file.size, "pointerSize": hub_file.pointer_size,
                    }
            siblings.append(sibling)
        owner = repo.split("/")[0] if "/" in repo else None
        info = {
            "_id": commit[:24], "id": repo, "modelId": repo, "author": owner, "sha": commit,
            "lastModified": _DATE, "createdAt": _DATE, "private": False, "disabled": False,
            "gated": "manual" if entry.gated else False, "downloads": 0, "likes": 0, "tags": [],
            "siblings": siblings, "usedStorage": sum(f.size for f in files.values()),
        }
        self._send_json(method, info)

    def _paths_info(self, repo: str, revision: str, body: bytes) -> None:
        hub = self.server.hub
        entry = hub._repo(repo)
        commit, files = hub._resolve_revision(repo, entry, revision)
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            form = json.loads(body or b"{}")
            paths = form.get("paths") or []
            paths = [paths] if isinstance(paths, str) else paths
            expand = bool(form.get("expand"))
        else:
            form = parse_qs(body.decode(), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = _truthy(form.get("expand", ["false"])[-1])
        found = []
        for path in paths:
            path = path.strip("/")
            if path in files:
                found.append(_file_entry(files[path], commit, expand))
            elif any(p.startswith(path + "/") for p in files) or path == "":
                found.append(_folder_entry(repo, commit, path, expand))
        self._send_json("POST", found)

    def _tree(self, method: str, repo: str, revision: str, path: str) -> None:
        hub = self.server.hub
        entry = hub._repo(repo)
        commit, files = hub._resolve_revision(repo, entry, revision)
        recursive = _truthy(self._query.get("recursive", ["false"])[-1])
        expand = _truthy(self._query.get("expand", ["false"])[-1])
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and prefix[:-1] in files:
            raise _HubError(404, "EntryNotFound", f"{path} is a file, not a directory")
        if prefix and not any(p.startswith(prefix) for p in files):
            raise _HubError(404, "EntryNotFound", f"Entry not found: {path}")
        entries: dict[str, dict[str, Any]] = {}
        for file_path, hub_file in sorted(files.items()):
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if (recursive or depth == 1) and folder not in entries:
                    entries[folder] = _folder_entry(repo, commit, folder, expand)
            if recursive or len(parts) == 1:
                entries[file_path] = _file_entry(hub_file, commit, expand)
        self._send_json(method, [entries[k] for k in sorted(entries)])


# -- pure helpers --------------------------------------------------------------------------------


def _split_repo(segments: list[str], known: set[str]) -> tuple[str, list[str]]:
    """Split `owner/name/rest...` (or `name/rest...` for a known one-part repo id)."""
    if len(segments) >= 2 and "/".join(segments[:2]) in known:
        return "/".join(segments[:2]), segments[2:]
    if segments and segments[0] in known:
        return segments[0], segments[1:]
    return "/".join(segments[:2]), segments[2:]


def _parse_range(header: str, size: int) -> tuple[int, int] | tuple[()] | None:
    """Parse one `bytes=` range: (start, end) inclusive, () to ignore it, None if unsatisfiable."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if match is None:
        return ()  # multiple ranges or another unit: ignoring Range (200) is allowed
    first, last = match.groups()
    if first == "" and last == "":
        return ()
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return None
        return max(size - n, 0), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or end < start:
        return None
    return start, end


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes")


def _last_commit(commit: str) -> dict[str, str]:
    return {"id": commit, "title": "Upload files", "date": _DATE}


def _file_entry(hub_file: HubFile, commit: str, expand: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": hub_file.blob_id, "size": hub_file.size, "path": hub_file.path}
    if hub_file.lfs:
        entry["lfs"] = {"oid": hub_file.sha256, "size": hub_file.size, "pointerSize": hub_file.pointer_size}
    if expand:
        entry["lastCommit"] = _last_commit(commit)
    return entry


def _folder_entry(repo: str, commit: str, path: str, expand: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "directory", "oid": hashlib.sha1(f"{repo}@{commit}:{path}".encode()).hexdigest(), "path": path,
    }
    if expand:
        entry["lastCommit"] = _last_commit(commit)
    return entry


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _git_blob_oid_of_file(path: Path, size: int) -> str:
    digest = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()
