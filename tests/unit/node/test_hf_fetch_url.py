"""templates/hf_fetch.py with node.yaml `url:` files: fetched from their own host (ranges,
resume and sha256 as Hub files), never with the Hub token, and a wrong sha256 named plainly.
Against two fake servers on 127.0.0.1 (the Hub, and a web host off it), no SSH."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.fake_hub import FakeHub
from tests.unit.node.test_hf_fetch_ranges import (
    MiB,
    assert_in_place,
    counting_file,
    fetch,
    item_for,
    kinds,
    manifest_for,
    range_start,
)

TOKEN = "hf_urlTestTokenNeverForTheWebHost0123456789"
LORA = "/files/my%20lora.safetensors"


@pytest.fixture(scope="module")
def lora(tmp_path_factory) -> tuple[Path, str]:
    return counting_file(tmp_path_factory.mktemp("web") / "lora.safetensors", 6 * MiB)


@pytest.fixture
def servers(lora):
    """(the Hub, a web host serving the LoRA at LORA)."""
    with FakeHub() as hub, FakeHub() as web:
        hub.set_token(TOKEN)
        web.add_plain_file(LORA, lora[0])
        yield hub, web


def url_item(tmp_path: Path, web: FakeHub, lora, **extra) -> dict:
    fields = {"url": web.url + LORA, "entry": "loras[0]", **extra}
    return item_for(tmp_path, lora, repo=web.url.split("//")[1], name="my lora.safetensors",
                    **fields)


def file_gets(web: FakeHub):
    return [r for r in web.requests if r.method == "GET" and r.path == LORA]


@pytest.mark.parametrize("threshold", [MiB, 64 * MiB], ids=["ranges", "one-stream"])
def test_a_url_file_is_fetched_from_its_host_and_never_with_the_token(servers, lora, tmp_path,
                                                                      threshold):
    hub, web = servers
    item = url_item(tmp_path, web, lora)
    code, events = fetch(manifest_for(hub, [item], range_threshold=threshold, min_piece=MiB), TOKEN)
    assert code == 0, events
    assert_in_place(item)
    gets = file_gets(web)
    assert gets and all(r.status in (200, 206) for r in gets)
    if threshold == MiB:
        assert len(gets) > 1 and all(r.range for r in gets), "a large url file comes in ranges"
    assert not any(r.has_authorization for r in web.requests), "the Hub token reached the web host"
    assert hub.requests == [], "a url file is not asked of the Hub"


def test_a_cut_url_download_resumes_with_range_from_the_bytes_kept(servers, lora, tmp_path):
    hub, web = servers
    web.cut_after("", LORA, 2 * MiB)
    item = url_item(tmp_path, web, lora)
    code, events = fetch(manifest_for(hub, [item], range_threshold=64 * MiB), TOKEN)
    assert code == 0, events
    assert_in_place(item)
    assert [range_start(r) for r in file_gets(web)] == [0, 2 * MiB]
    assert "retry" in kinds(events)


def test_a_wrong_sha256_fails_that_file_naming_the_entry_and_both_hashes(servers, lora, tmp_path):
    hub, web = servers
    wrong = "ab" * 32
    item = url_item(tmp_path, web, lora, sha256=wrong)
    item["size"] = None  # as when the preflight's HEAD gave no size
    code, events = fetch(manifest_for(hub, [item], range_threshold=64 * MiB), TOKEN)
    assert code == 1
    error = next(e for e in events if e["event"] == "error")
    assert error["reason"] == "checksum"
    message = error["message"]
    assert message.startswith("loras[0]: ") and web.url + LORA in message
    assert lora[1] in message and wrong in message and "node.yaml says sha256 " + wrong in message
    assert list(Path(item["dest"]).parent.iterdir()) == [], "no file, partial or record is kept"
    assert len(file_gets(web)) == 1, "a wrong sha256 is not retried"


def test_a_missing_url_fails_at_once_naming_the_entry(servers, lora, tmp_path):
    hub, web = servers
    item = url_item(tmp_path, web, lora, url=web.url + "/files/gone.safetensors")
    code, events = fetch(manifest_for(hub, [item], retries=3), TOKEN)
    assert code == 1
    message = next(e for e in events if e["event"] == "error")["message"]
    assert message.startswith("loras[0]: HTTP 404 from " + web.url + "/files/gone.safetensors")
    assert "retry" not in kinds(events)
    assert not any(r.has_authorization for r in web.requests)
