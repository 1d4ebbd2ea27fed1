"""The fake Hub against the real huggingface_hub client, its `hf` CLI and plain urllib.

The endpoint is always passed explicitly (`endpoint=` / HfApi(endpoint=) / HF_ENDPOINT in a
subprocess's environment): huggingface_hub reads HF_ENDPOINT once, at import.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gguf
import huggingface_hub
import numpy as np
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.harness.fake_hub import FakeHub
from tests.harness.hub_files import make_gguf, make_safetensors, read_gguf_types, read_safetensors_dtypes

GGUF_REPO = "city96/FLUX.1-dev-gguf"
GGUF_NAME = "flux1-dev-Q4_K_S.gguf"
ST_REPO = "comfyanonymous/flux_text_encoders"
ST_NAME = "clip_l.safetensors"
GATED_REPO = "black-forest-labs/FLUX.1-dev"
GATED_NAME = "ae.safetensors"
TOKEN = "hf_FakeHubTestTokenDoNotLog0123456789"

_HF_MAJOR = int(huggingface_hub.__version__.split(".")[0])
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def _isolated_hf_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("model-files")
    return {
        "gguf": make_gguf(folder / GGUF_NAME, quant="Q4_K_S", size_hint_bytes=300_000),
        "safetensors": make_safetensors(folder / ST_NAME, dtype="bf16", n_bytes=200_000),
        "gated": make_safetensors(folder / GATED_NAME, dtype="fp16", n_bytes=50_000, seed=1),
    }


@pytest.fixture(params=[False, True], ids=["direct", "cdn"])
def hub(request: pytest.FixtureRequest, model_files: dict[str, Path]):
    with FakeHub(cdn=request.param) as fake:
        fake.add_file(GGUF_REPO, GGUF_NAME, model_files["gguf"])
        fake.add_file(GGUF_REPO, "README.md", b"# FLUX.1-dev GGUF\n")
        fake.add_file(ST_REPO, ST_NAME, model_files["safetensors"])
        fake.add_file(GATED_REPO, GATED_NAME, model_files["gated"], gated=True)
        fake.set_token(TOKEN)
        yield fake


@pytest.fixture
def direct_hub(model_files: dict[str, Path]):
    with FakeHub() as fake:
        fake.add_file(GGUF_REPO, GGUF_NAME, model_files["gguf"])
        yield fake


def _resolve_url(hub: FakeHub, repo: str, name: str, revision: str = "main") -> str:
    return f"{hub.url}/{repo}/resolve/{revision}/{name}"


# -- the builders ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quant", "ggml_type", "file_type"),
    [
        ("Q8_0", "Q8_0", gguf.LlamaFileType.MOSTLY_Q8_0),
        ("Q4_0", "Q4_0", gguf.LlamaFileType.MOSTLY_Q4_0),
        ("Q4_K_S", "Q4_K", gguf.LlamaFileType.MOSTLY_Q4_K_S),
        ("Q5_K_S", "Q5_K", gguf.LlamaFileType.MOSTLY_Q5_K_S),
        ("Q6_K", "Q6_K", gguf.LlamaFileType.MOSTLY_Q6_K),
        ("Q2_K", "Q2_K", gguf.LlamaFileType.MOSTLY_Q2_K),
        ("F16", "F16", gguf.LlamaFileType.MOSTLY_F16),
        ("BF16", "BF16", gguf.LlamaFileType.MOSTLY_BF16),
    ],
)
def test_make_gguf_writes_the_requested_tensor_type(tmp_path: Path, quant: str, ggml_type: str, file_type: int):
    path = make_gguf(tmp_path / "x.gguf", quant=quant, arch="flux", size_hint_bytes=100_000)

    types = read_gguf_types(path)
    weights = {name: t for name, t in types.items() if name.endswith(".weight")}
    assert weights and set(weights.values()) == {ggml_type}
    assert set(types.values()) <= {ggml_type, "F32"}
    assert 100_000 <= path.stat().st_size < 100_000 + 64 * 1024
    reader = gguf.GGUFReader(path)
    field = reader.fields["general.file_type"]
    assert int(field.parts[field.data[0]][0]) == int(file_type)
    assert reader.fields["general.architecture"].contents() == "flux"
    for tensor in reader.tensors:  # K-quant blocks are raw bytes: they must still decode to numbers
        if tensor.name != "padding.weight":
            values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
            assert np.isfinite(values).all() and np.abs(values).max() < 1e6


def test_make_gguf_is_deterministic_and_rejects_unknown_quants(tmp_path: Path):
    a = make_gguf(tmp_path / "a.gguf", quant="q8_0")
    b = make_gguf(tmp_path / "b.gguf", quant="Q8_0")
    assert _sha256(a) == _sha256(b)
    with pytest.raises(ValueError, match="Q9_9"):
        make_gguf(tmp_path / "c.gguf", quant="Q9_9")


@pytest.mark.parametrize(("dtype", "expected"), [("bf16", "BF16"), ("fp16", "F16")])
def test_make_safetensors_writes_the_requested_dtype(tmp_path: Path, dtype: str, expected: str):
    path = make_safetensors(tmp_path / "x.safetensors", dtype=dtype, n_bytes=123_456)
    assert set(read_safetensors_dtypes(path).values()) == {expected}
    assert 123_456 <= path.stat().st_size < 123_456 + 8192


# -- downloads with the real client -----------------------------------------------------------


def test_hf_hub_download_gets_identical_bytes(hub: FakeHub, model_files: dict[str, Path], tmp_path: Path):
    for repo, name, key in [(GGUF_REPO, GGUF_NAME, "gguf"), (ST_REPO, ST_NAME, "safetensors")]:
        path = hf_hub_download(repo, name, endpoint=hub.url, cache_dir=tmp_path / "cache", token=False)
        assert _sha256(path) == _sha256(model_files[key])
        assert f"snapshots/{hub.commit(repo)}/{name}" in Path(path).as_posix()

    local = hf_hub_download(GGUF_REPO, GGUF_NAME, endpoint=hub.url, local_dir=tmp_path / "local", token=False)
    assert _sha256(local) == _sha256(model_files["gguf"])
    served = [r for r in hub.requests if r.method == "GET" and r.bytes_sent == model_files["gguf"].stat().st_size]
    assert len(served) == 2 and {r.server for r in served} == ({"cdn"} if hub.cdn_url else {"hub"})


def test_head_speaks_the_hub_download_protocol(direct_hub: FakeHub, model_files: dict[str, Path]):
    request = urllib.request.Request(_resolve_url(direct_hub, GGUF_REPO, GGUF_NAME), method="HEAD")
    with _NO_PROXY.open(request) as response:
        headers = response.headers
    sha, size = _sha256(model_files["gguf"]), model_files["gguf"].stat().st_size
    assert re.fullmatch(r"[0-9a-f]{40}", headers["X-Repo-Commit"])
    assert headers["ETag"] == headers["X-Linked-Etag"] == f'"{sha}"'
    assert headers["X-Linked-Size"] == headers["Content-Length"] == str(size)
    assert headers["Accept-Ranges"] == "bytes"
    assert not [h for h in headers if h.lower().startswith("x-xet") or h.lower() == "link"]


def test_snapshot_download_lists_the_tree(hub: FakeHub, tmp_path: Path):
    folder = snapshot_download(GGUF_REPO, endpoint=hub.url, cache_dir=tmp_path / "cache", token=False)
    assert sorted(p.name for p in Path(folder).iterdir()) == ["README.md", GGUF_NAME]


# -- metadata ----------------------------------------------------------------------------------


def test_paths_info_and_model_info_report_sizes_and_sha256(hub: FakeHub, model_files: dict[str, Path]):
    api = HfApi(endpoint=hub.url, token=False)
    sha, size = _sha256(model_files["gguf"]), model_files["gguf"].stat().st_size

    infos = api.get_paths_info(GGUF_REPO, [GGUF_NAME, "README.md", "missing.gguf"], revision="main")
    by_path = {info.path: info for info in infos}
    assert set(by_path) == {GGUF_NAME, "README.md"}
    assert by_path[GGUF_NAME].size == size
    assert by_path[GGUF_NAME].lfs is not None and by_path[GGUF_NAME].lfs.sha256 == sha
    assert by_path[GGUF_NAME].lfs.size == size
    assert by_path["README.md"].lfs is None and by_path["README.md"].size == len(b"# FLUX.1-dev GGUF\n")

    info = api.model_info(GGUF_REPO, files_metadata=True)
    assert info.sha == hub.commit(GGUF_REPO) and info.gated is False
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert siblings[GGUF_NAME].size == size and siblings[GGUF_NAME].lfs.sha256 == sha

    # Gated: metadata stays public, as on the Hub.
    gated = api.model_info(GATED_REPO, revision="main", files_metadata=True)
    assert gated.gated == "manual"
    assert gated.siblings and gated.siblings[0].lfs.sha256 == _sha256(model_files["gated"])
    assert api.get_paths_info(GATED_REPO, GATED_NAME)[0].size == model_files["gated"].stat().st_size


# -- access and errors -------------------------------------------------------------------------


def test_gated_repo_needs_the_valid_token(hub: FakeHub, model_files: dict[str, Path], tmp_path: Path):
    cache = tmp_path / "cache"
    with pytest.raises(GatedRepoError) as no_token:
        hf_hub_download(GATED_REPO, GATED_NAME, endpoint=hub.url, cache_dir=cache, token=False)
    assert no_token.value.response.status_code == 401
    assert f"{hub.url}/{GATED_REPO}" in str(no_token.value)
    with pytest.raises(GatedRepoError) as wrong_token:
        hf_hub_download(GATED_REPO, GATED_NAME, endpoint=hub.url, cache_dir=cache, token="hf_wrong")
    assert wrong_token.value.response.status_code == 403

    path = hf_hub_download(GATED_REPO, GATED_NAME, endpoint=hub.url, cache_dir=cache, token=TOKEN)
    assert _sha256(path) == _sha256(model_files["gated"])

    with pytest.raises(GatedRepoError):
        HfApi(endpoint=hub.url, token=False).auth_check(GATED_REPO)
    with pytest.raises(GatedRepoError):
        HfApi(endpoint=hub.url).auth_check(GATED_REPO, token="hf_wrong")
    HfApi(endpoint=hub.url).auth_check(GATED_REPO, token=TOKEN)
    HfApi(endpoint=hub.url, token=False).auth_check(GGUF_REPO)

    log = hub.requests
    assert TOKEN not in repr(log) and "hf_wrong" not in repr(log)
    resolves = [r for r in log if r.server == "hub" and "/resolve/" in r.path]
    assert [r.has_authorization for r in resolves][:2] == [False, True]
    assert {r.status for r in resolves} >= {401, 403}


def test_missing_file_repo_and_revision_map_to_client_errors(hub: FakeHub, tmp_path: Path):
    cache = tmp_path / "cache"
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(GGUF_REPO, "flux1-dev-Q9_9.gguf", endpoint=hub.url, cache_dir=cache, token=False)
    with pytest.raises(RepositoryNotFoundError) as repo_error:
        hf_hub_download("nobody/nothing", GGUF_NAME, endpoint=hub.url, cache_dir=cache, token=False)
    assert not isinstance(repo_error.value, GatedRepoError)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(GGUF_REPO, GGUF_NAME, revision="v9", endpoint=hub.url, cache_dir=cache, token=False)
    with pytest.raises(RevisionNotFoundError):
        HfApi(endpoint=hub.url, token=False).model_info(GGUF_REPO, revision="v9")
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).get_paths_info("nobody/nothing", GGUF_NAME)


# -- ranges and dropped connections ------------------------------------------------------------


def test_range_request_gets_206_and_the_right_bytes(direct_hub: FakeHub, model_files: dict[str, Path]):
    data = model_files["gguf"].read_bytes()
    url = _resolve_url(direct_hub, GGUF_REPO, GGUF_NAME)

    request = urllib.request.Request(url, headers={"Range": "bytes=100-1099"})
    with _NO_PROXY.open(request) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 100-1099/{len(data)}"
        assert response.read() == data[100:1100]
    with _NO_PROXY.open(urllib.request.Request(url, headers={"Range": "bytes=-10"})) as response:
        assert response.status == 206 and response.read() == data[-10:]
    with pytest.raises(urllib.error.HTTPError) as unsatisfiable:
        _NO_PROXY.open(urllib.request.Request(url, headers={"Range": f"bytes={len(data)}-"}))
    assert unsatisfiable.value.code == 416
    assert unsatisfiable.value.headers["Content-Range"] == f"bytes */{len(data)}"


def test_cut_after_truncates_a_get_and_logs_the_resume_range(direct_hub: FakeHub, model_files: dict[str, Path]):
    data = model_files["gguf"].read_bytes()
    url = _resolve_url(direct_hub, GGUF_REPO, GGUF_NAME)
    direct_hub.cut_after(GGUF_REPO, GGUF_NAME, 50_000)

    with _NO_PROXY.open(url) as response:
        with pytest.raises(http.client.IncompleteRead) as truncated:
            response.read()
    received = truncated.value.partial
    assert received == data[:50_000]

    request = urllib.request.Request(url, headers={"Range": f"bytes={len(received)}-"})
    with _NO_PROXY.open(request) as response:  # one-shot: the next GET is whole
        assert response.status == 206
        assert received + response.read() == data

    gets = [r for r in direct_hub.requests if r.method == "GET"]
    assert [(r.range, r.bytes_sent, r.dropped) for r in gets] == [
        (None, 50_000, True),
        ("bytes=50000-", len(data) - 50_000, False),
    ]


def test_cut_after_and_the_client_download_retry(
    direct_hub: FakeHub, model_files: dict[str, Path], tmp_path: Path
):
    direct_hub.cut_after(GGUF_REPO, GGUF_NAME, 1000, times=1)
    if _HF_MAJOR < 1:  # 0.3x (requests) does not retry a truncated body within the call: the next call does
        import requests

        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            hf_hub_download(GGUF_REPO, GGUF_NAME, endpoint=direct_hub.url, cache_dir=tmp_path, token=False)
    path = hf_hub_download(GGUF_REPO, GGUF_NAME, endpoint=direct_hub.url, cache_dir=tmp_path, token=False)
    assert _sha256(path) == _sha256(model_files["gguf"])
    gets = [r for r in direct_hub.requests if r.method == "GET"]
    # 2.x resumes from 10 MiB boundaries only: a file this small is fetched again from 0.
    assert [(r.bytes_sent, r.dropped) for r in gets] == [(1000, True), (model_files["gguf"].stat().st_size, False)]


# -- the hf CLI --------------------------------------------------------------------------------


def _hf_cli() -> str | None:
    beside_python = Path(sys.executable).parent / "hf"
    return str(beside_python) if beside_python.exists() else shutil.which("hf")


@pytest.mark.skipif(_hf_cli() is None, reason="the huggingface_hub `hf` CLI is not installed")
def test_hf_cli_downloads_from_the_fake_hub(direct_hub: FakeHub, model_files: dict[str, Path], tmp_path: Path):
    direct_hub.add_file(GATED_REPO, GATED_NAME, model_files["gated"], gated=True)
    direct_hub.set_token(TOKEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_"))}
    env.update(HF_ENDPOINT=direct_hub.url, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
    cli = _hf_cli()
    assert cli is not None

    def hf_download(repo: str, name: str, dest: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [cli, "download", repo, name, "--local-dir", str(dest)],
            env={**env, **extra_env}, capture_output=True, text=True, timeout=60,
        )

    done = hf_download(GGUF_REPO, GGUF_NAME, tmp_path / "public")
    assert done.returncode == 0, done.stderr
    assert _sha256(tmp_path / "public" / GGUF_NAME) == _sha256(model_files["gguf"])

    refused = hf_download(GATED_REPO, GATED_NAME, tmp_path / "refused")
    assert refused.returncode == 1
    assert not (tmp_path / "refused" / GATED_NAME).exists()

    allowed = hf_download(GATED_REPO, GATED_NAME, tmp_path / "gated", HF_TOKEN=TOKEN)
    assert allowed.returncode == 0, allowed.stderr
    assert _sha256(tmp_path / "gated" / GATED_NAME) == _sha256(model_files["gated"])
    assert TOKEN not in repr(direct_hub.requests)


# -- what a multi-connection downloader needs ---------------------------------------------------


def test_ignore_range_answers_200_with_the_whole_body(direct_hub: FakeHub, model_files: dict[str, Path]):
    data = model_files["gguf"].read_bytes()
    url = _resolve_url(direct_hub, GGUF_REPO, GGUF_NAME)
    direct_hub.ignore_range()
    for asked in ("bytes=100-199", f"bytes={len(data)}-"):  # even one past the end: no 416
        with _NO_PROXY.open(urllib.request.Request(url, headers={"Range": asked})) as response:
            assert response.status == 200 and "Content-Range" not in response.headers
            assert "Accept-Ranges" not in response.headers
            assert response.read() == data
    direct_hub.ignore_range(False)
    with _NO_PROXY.open(urllib.request.Request(url, headers={"Range": "bytes=100-199"})) as response:
        assert response.status == 206 and response.read() == data[100:200]


def test_cut_after_with_range_start_cuts_only_the_range_from_that_offset(
    direct_hub: FakeHub, model_files: dict[str, Path]
):
    data = model_files["gguf"].read_bytes()
    url = _resolve_url(direct_hub, GGUF_REPO, GGUF_NAME)
    direct_hub.cut_after(GGUF_REPO, GGUF_NAME, 1000, range_start=100_000)
    direct_hub.cut_after(GGUF_REPO, GGUF_NAME, 500, range_start=0)

    def get(asked: str | None) -> bytes:
        headers = {"Range": asked} if asked else {}
        with _NO_PROXY.open(urllib.request.Request(url, headers=headers)) as response:
            try:
                return response.read()
            except http.client.IncompleteRead as truncated:
                return truncated.partial

    assert get("bytes=50000-99999") == data[50_000:100_000]  # no cut for that offset
    assert get("bytes=100000-") == data[100_000:101_000]
    assert get("bytes=100000-") == data[100_000:], "one-shot"
    assert get(None) == data[:500], "a GET without Range starts at 0"
    gets = [r for r in direct_hub.requests if r.method == "GET"]
    assert [(r.range, r.bytes_sent, r.dropped) for r in gets] == [
        ("bytes=50000-99999", 50_000, False),
        ("bytes=100000-", 1000, True),
        ("bytes=100000-", len(data) - 100_000, False),
        (None, 500, True),
    ]


def test_throttle_caps_each_connection_and_the_log_shows_when(direct_hub: FakeHub, model_files: dict[str, Path]):
    size = model_files["gguf"].stat().st_size  # about 300 kB
    url = _resolve_url(direct_hub, GGUF_REPO, GGUF_NAME)
    rate = 1_000_000
    direct_hub.throttle(rate)

    def get(_: int) -> int:
        with _NO_PROXY.open(url) as response:
            return len(response.read())

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(get, range(2))) == [size, size]
    # The handler records the end just after the last byte went out: wait for it.
    deadline = time.monotonic() + 10
    while True:
        gets = [r for r in direct_hub.requests if r.method == "GET"]
        if (len(gets) == 2 and all(r.ended is not None for r in gets)) or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert len(gets) == 2 and all(r.ended is not None for r in gets)
    for request in gets:
        assert request.ended - request.started >= 0.9 * size / rate  # type: ignore[operator]
    assert max(r.started for r in gets) < min(r.ended for r in gets), "side by side"  # type: ignore[type-var]
    # Per connection: two at once take about as long as one, not twice as long.
    assert max(r.ended for r in gets) - min(r.started for r in gets) < 1.6 * size / rate  # type: ignore[operator]
    direct_hub.throttle(None)
    assert get(0) == size


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def test_expired_redirects_are_refused_by_the_cdn(model_files: dict[str, Path]):
    data = model_files["gguf"].read_bytes()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
    with FakeHub(cdn=True) as hub:
        hub.add_file(GGUF_REPO, GGUF_NAME, model_files["gguf"])
        hub.expire_redirects(0.3)

        def resolve() -> str:
            with pytest.raises(urllib.error.HTTPError) as redirect:
                opener.open(_resolve_url(hub, GGUF_REPO, GGUF_NAME))
            assert redirect.value.code == 302
            return redirect.value.headers["Location"]

        location = resolve()
        assert "expires=" in location and location.startswith(str(hub.cdn_url))
        with opener.open(location) as response:
            assert response.read() == data
        time.sleep(0.4)
        with pytest.raises(urllib.error.HTTPError) as expired:
            opener.open(location)
        assert expired.value.code == 403 and expired.value.headers["X-Error-Message"] == "Request has expired"
        with opener.open(resolve()) as response:  # a fresh redirect works again
            assert response.read() == data
