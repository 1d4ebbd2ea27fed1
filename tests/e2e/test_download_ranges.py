"""`provision up --no-launch` with a model above `downloads.range_threshold_mb`: the node's
fetcher (templates/hf_fetch.py) takes it in byte ranges, several connections at once, from
the fake Hub on loopback.

The hub's request log is the witness: each request's Range header, the bytes it sent, and
when it started and ended. The node's disk is read over SSH. The program's own edge cases
(fsync'd range records, a killed run, stealing, the connection cap) are in
tests/unit/node/test_hf_fetch_ranges.py, where it runs without SSH.
"""

from __future__ import annotations

import json
from typing import Iterator

import pytest

from tests.e2e.conftest import HF_TOKEN, populate_hub
from tests.e2e.test_up_models import (
    PLANNED,
    UNET,
    VAE,
    assert_verified,
    dest,
    file_requests,
    node_exists,
    node_size,
    serve_big,
    up,
    write_yaml,
)
from tests.harness.fake_hub import FakeHub
from tests.harness.fetcher import load_fetcher

pytestmark = pytest.mark.e2e

MiB = 1 << 20
BIG = 64 * MiB  # four ranges of 16 MiB (the fetcher's smallest range) on four connections
RANGED = {"connections": 4, "max_connections": 8, "range_threshold_mb": 16, "retries": 1,
          "backoff_seconds": 0}
def piece_starts(size: int, connections: int = 4) -> list[int]:
    """Where the fetcher's ranges of a fresh file start (its own planning, pure)."""
    hf, hf_ranges = load_fetcher()
    return [start for start, _ in hf_ranges.plan_pieces([[0, size]], connections, hf.MIN_PIECE)]


def range_start(request) -> int:
    return int(request.range.split("=")[1].split("-")[0]) if request.range else 0


@pytest.fixture
def cdn_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    """The default plan's files behind a Hub that redirects downloads to a CDN host."""
    fake = FakeHub(cdn=True).start()
    populate_hub(fake, tmp_path_factory.mktemp("hub-files"))
    try:
        yield fake
    finally:
        fake.stop()


def test_a_large_model_comes_in_concurrent_ranges_and_small_ones_in_one_stream(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    big = serve_big(hub, tmp_path, UNET, BIG)
    size = big.stat().st_size
    hub.throttle(16 * MiB)  # a second per range: the four must run side by side
    node = node_factory(platform="macos", memory_gb=64)
    # One file at a time: a small file finishing while the ranges run would leave its slot to
    # the big file, which then splits its ranges (as it should), so the ranges asked would
    # depend on which file the machine's load let finish first.
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub, downloads={**RANGED, "parallel": 1})
    result, report = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    assert_verified(node, hub)
    assert not node_exists(node, dest("unet", UNET[1]) + ".partial.ranges")

    ranges = file_requests(hub, "GET", UNET)
    assert sorted(range_start(r) for r in ranges) == piece_starts(size), [r.range for r in ranges]
    assert all(r.status == 206 and not r.dropped for r in ranges)
    assert sum(r.bytes_sent for r in ranges) == size, "every byte once"
    assert max(r.started for r in ranges) < min(r.ended for r in ranges), "all four at once"
    for repo_file in PLANNED:
        if repo_file != UNET:
            assert [r.range for r in file_requests(hub, "GET", repo_file)] == [None], repo_file


def test_a_range_cut_for_good_fails_the_run_and_the_next_up_fetches_only_its_rest(
        node_factory, laptop_home, tmp_path, stand_ins, hub):
    big = serve_big(hub, tmp_path, UNET, BIG)
    size = big.stat().st_size
    starts = piece_starts(size) + [size]
    cut = 5_000_000
    hub.cut_after(*UNET, cut, range_start=starts[2])
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub, downloads={**RANGED, "retries": 0})
    failed, report = up(node_yaml, laptop_home)
    assert failed.returncode != 0
    assert UNET[1] in failed.stderr and "re-run" in failed.stderr, failed.stderr
    path = dest("unet", UNET[1])
    assert node_size(node, path + ".partial") == size, "preallocated, the other ranges in it"
    record = json.loads(node.ssh(f"cat {path}.partial.ranges").stdout)
    assert record["done"] == [[0, starts[2] + cut], [starts[3], size]]
    assert not node_exists(node, path)
    assert_verified(node, hub, {k: v for k, v in PLANNED.items() if k != UNET})

    hub.clear_requests()
    result, report = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    gets = file_requests(hub, "GET")
    assert [r.range for r in gets] == [f"bytes={starts[2] + cut}-{starts[3] - 1}"], "only the rest"
    assert gets[0].bytes_sent == starts[3] - starts[2] - cut
    assert_verified(node, hub)
    assert not node_exists(node, path + ".partial.ranges")


def test_a_hub_that_ignores_range_still_delivers_in_one_stream(node_factory, laptop_home, tmp_path,
                                                              stand_ins, hub):
    big = serve_big(hub, tmp_path, UNET, BIG)
    hub.ignore_range()
    node = node_factory(platform="linux")
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub, quality="q8", downloads=RANGED)
    result, report = up(node_yaml, laptop_home)
    assert result.returncode == 0, result.stderr
    whole = [r for r in file_requests(hub, "GET", UNET) if r.range is None]
    assert len(whole) == 1 and whole[0].bytes_sent == big.stat().st_size and not whole[0].dropped
    assert_verified(node, hub, {UNET: "unet"})


def test_the_token_goes_to_the_hub_for_every_range_never_to_the_cdn(node_factory, laptop_home,
                                                                   tmp_path, stand_ins, cdn_hub):
    hub = cdn_hub
    serve_big(hub, tmp_path, VAE, 48 * MiB)  # gated: three ranges, each resolved with the token
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub, downloads=RANGED)
    result, report = up(node_yaml, laptop_home, token=HF_TOKEN)
    assert result.returncode == 0, result.stderr
    assert_verified(node, hub)
    resolves = file_requests(hub, "GET", VAE)
    assert len(resolves) == 3 and all(r.status == 302 and r.has_authorization for r in resolves)
    cdn = [r for r in hub.requests if r.server == "cdn"]
    assert len([r for r in cdn if r.range]) >= 3
    assert not any(r.has_authorization for r in cdn), "the token reached the CDN host"


def test_a_sha256_mismatch_fails_and_leaves_nothing_in_place(node_factory, laptop_home, tmp_path,
                                                             stand_ins, hub):
    big = serve_big(hub, tmp_path, UNET, BIG)
    hub.add_file(*UNET, big, sha256="0" * 64)  # the Hub says one sha256, the bytes are another
    node = node_factory(platform="macos", memory_gb=64)
    node_yaml = write_yaml(node, tmp_path, stand_ins, hub, downloads=RANGED)
    result, report = up(node_yaml, laptop_home)
    assert result.returncode != 0
    assert UNET[1] in result.stderr and "does not match" in result.stderr, result.stderr
    assert len(file_requests(hub, "GET", UNET)) == 4, "fetched in ranges"
    path = dest("unet", UNET[1])
    for leftover in ("", ".partial", ".partial.ranges", ".verified"):
        assert not node_exists(node, path + leftover), leftover
