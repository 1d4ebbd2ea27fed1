"""Hugging Face Hub metadata, from the laptop, before any byte moves.

For every file still to fetch: its exact size and sha256 (the LFS ETag), the commit it
resolves to, and whether our token may read it (gated repos such as FLUX.1-dev answer
with ``GatedRepoError``). One HEAD request per file, in parallel. A file node.yaml names by
``url:`` (off the Hub; its sha256 is node.yaml's) gets a plain HEAD, never with the token,
for its exact size (Content-Length); without an answer the plan's size stands.
"""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from ..core.errors import DownloadError
from ..core.redact import redact
from .steps.download import FileSpec

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
URL_HEAD_TIMEOUT = 15.0  # s for the HEAD of a url: file


_warmed = threading.Event()


def warm_up() -> None:
    """Import huggingface_hub and make its HTTP client on a thread of its own, at once.

    Both take about 0.25 s (the TLS setup) that ``resolve`` would otherwise spend after the
    node's checks; ``up`` calls this once connected (the handshake wants the CPU), so they
    overlap the node's checks."""
    if _warmed.is_set():
        return
    _warmed.set()

    def load() -> None:
        try:
            from huggingface_hub.utils import get_session

            get_session()
        except Exception:  # resolve() meets the same problem and reports it properly
            pass

    threading.Thread(target=load, name="huggingface_hub warm-up", daemon=True).start()


def licence_page(endpoint: str, spec: FileSpec) -> str:
    """Return where the licence of a gated repo is accepted."""
    if spec.licence_url and endpoint.rstrip("/") == "https://huggingface.co":
        return spec.licence_url
    return f"{endpoint.rstrip('/')}/{spec.repo}"


def check_token_present(specs: list[FileSpec], token: Optional[str], token_env: str,
                        endpoint: str) -> None:
    """Fail at once when a gated file is planned and there is no token at all."""
    gated = [spec for spec in specs if spec.gated]
    if gated and not token:
        repos = sorted({spec.repo for spec in gated})
        pages = ", ".join(licence_page(endpoint, spec) for spec in gated[:2])
        raise DownloadError(
            f"{', '.join(repos)} is gated: a Hugging Face token is needed and ${token_env} is not "
            "set; nothing was downloaded",
            f"accept the licence at {pages} with your account, create a read token, then "
            f"export {token_env}=... (hf.token_env in node.yaml names the variable)",
        )


def resolve(specs: list[FileSpec], endpoint: str, token: Optional[str], token_env: str) -> list[FileSpec]:
    """Return ``specs`` with exact sizes, sha256 and commit; raise ``DownloadError`` early."""
    check_token_present(specs, token, token_env, endpoint)
    if not specs:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(specs))) as pool:
        return list(pool.map(lambda spec: _resolve_one(spec, endpoint, token, token_env), specs))


def _resolve_one(spec: FileSpec, endpoint: str, token: Optional[str], token_env: str) -> FileSpec:
    if spec.url:
        return _resolve_url(spec)
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(spec.repo, spec.file, revision=spec.revision, endpoint=endpoint)
    where = f"{spec.repo}/{spec.file}@{spec.revision}"
    try:
        meta = get_hf_file_metadata(url, token=token or False, endpoint=endpoint)
    except hf_errors.GatedRepoError:
        raise DownloadError(
            f"{spec.repo} is gated and the token in ${token_env} may not read it (licence not "
            "accepted, or the token lacks read access); nothing was downloaded",
            f"accept the licence at {licence_page(endpoint, spec)} with the token's account",
        ) from None
    except hf_errors.RepositoryNotFoundError:
        raise DownloadError(f"{spec.repo}: no such repository on {endpoint} (or it is private)",
                            "check the repo id in playbooks/models.yaml or node.yaml") from None
    except hf_errors.RevisionNotFoundError:
        raise DownloadError(f"{where}: no such revision on {endpoint}",
                            "check the revision in node.yaml") from None
    except hf_errors.EntryNotFoundError:
        raise DownloadError(f"{where}: no such file on {endpoint}",
                            "check the file name in playbooks/models.yaml or node.yaml") from None
    except Exception as error:  # network, TLS, proxies: say where we could not reach
        raise DownloadError(f"cannot read {where} from {endpoint}: {redact(str(error))[:200]}",
                            "check the network and hf.endpoint in node.yaml") from None
    etag = (meta.etag or "").strip('"').lower()
    return spec.model_copy(update={
        "size": meta.size,
        "sha256": etag if _SHA256.match(etag) else None,
        "revision": meta.commit_hash or spec.revision,
        "resolved": True,
    })


class _KeepHead(urllib.request.HTTPRedirectHandler):
    """Follow redirects as HEAD (urllib's handler turns them into GETs)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (stdlib's)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and req.get_method() == "HEAD":
            new.method = "HEAD"
        return new


def _resolve_url(spec: FileSpec) -> FileSpec:
    """Return ``spec`` with the size a HEAD of its URL answers (no token, no other header);
    unchanged when the server gives none. A URL answered 404 or 410 fails at once."""
    opener = urllib.request.build_opener(_KeepHead)
    try:
        with opener.open(urllib.request.Request(str(spec.url), method="HEAD"),
                         timeout=URL_HEAD_TIMEOUT) as response:
            length = response.headers.get("Content-Length", "")
    except urllib.error.HTTPError as error:
        if error.code in (404, 410):
            raise DownloadError(f"{spec.entry or spec.file}: {spec.url} answers HTTP {error.code} "
                                "(no such file); nothing was downloaded",
                                "check the url: in node.yaml") from None
        return spec  # e.g. a signed URL that only allows GET: the node's fetcher will see
    except (OSError, ValueError):
        return spec
    if not length.isdigit():
        return spec
    return spec.model_copy(update={"size": int(length), "resolved": True})
