"""hub.resolve for node.yaml url: files: a plain HEAD from the laptop for the exact size,
never with the Hub token; a missing file fails before anything moves. Against fake servers
on 127.0.0.1."""

from __future__ import annotations

import pytest

from provisioner.core.errors import DownloadError
from provisioner.install import hub
from provisioner.install.steps.download import FileSpec
from tests.harness.fake_hub import FakeHub

TOKEN = "hf_neverSentToAWebHost0123456789abcdef"


def url_spec(url: str, size: int = 300_000_000) -> FileSpec:
    return FileSpec(role="lora", repo="127.0.0.1", file="l.safetensors", dest="/w/models/loras/l.safetensors",
                    size=size, sha256="ab" * 32, url=url, entry="loras[0]")


@pytest.fixture
def web(tmp_path):
    source = tmp_path / "l.safetensors"
    source.write_bytes(b"x" * 12345)
    with FakeHub() as fake:
        fake.add_plain_file("/dl/l.safetensors", source)
        yield fake


def test_a_url_file_gets_its_exact_size_from_a_head_without_the_token(web):
    [resolved] = hub.resolve([url_spec(web.url + "/dl/l.safetensors")], "https://hub.invalid", TOKEN,
                             "HF_TOKEN")
    assert (resolved.size, resolved.resolved, resolved.sha256) == (12345, True, "ab" * 32)
    assert [(r.method, r.has_authorization) for r in web.requests] == [("HEAD", False)]


def test_a_redirected_head_stays_a_head(tmp_path):
    source = tmp_path / "l.safetensors"
    source.write_bytes(b"y" * 2000)
    with FakeHub(cdn=True) as fake:  # its /resolve/ answers 302 to a second port
        fake.add_file("some/repo", "l.safetensors", source)
        [resolved] = hub.resolve([url_spec(f"{fake.url}/some/repo/resolve/main/l.safetensors")],
                                 "https://hub.invalid", TOKEN, "HF_TOKEN")
        requests = fake.requests
    assert resolved.size == 2000
    assert [(r.server, r.method, r.status) for r in requests] == [("hub", "HEAD", 302), ("cdn", "HEAD", 200)]
    assert not any(r.has_authorization for r in requests)


def test_a_missing_url_fails_before_anything_is_downloaded(web):
    with pytest.raises(DownloadError) as caught:
        hub.resolve([url_spec(web.url + "/dl/gone.safetensors")], "https://hub.invalid", None, "HF_TOKEN")
    assert str(caught.value) == (f"loras[0]: {web.url}/dl/gone.safetensors answers HTTP 404 (no such "
                                 "file); nothing was downloaded")
    assert "url:" in caught.value.hint


def test_an_unreachable_url_keeps_the_plans_size_for_the_node_to_try(web):
    spec = url_spec("http://127.0.0.1:9/l.safetensors")  # the discard port: nothing listens
    assert hub.resolve([spec], "https://hub.invalid", None, "HF_TOKEN") == [spec]
