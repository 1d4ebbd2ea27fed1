"""templates/hf_fetch.py in byte ranges: the bookkeeping as pure functions, then the program
itself against the fake Hub on 127.0.0.1, run as `up` runs it (manifest and token on stdin,
JSON events on stdout) but with this machine's Python and folders: no SSH, no node.

The served files count their own 8-byte words (word i holds i), so a block written at the
wrong offset changes the sha256 even where a model file would be zeros. HF_FETCH_PYTHON runs
the program with another interpreter (the node's may be any Python 3.8+).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.harness.fake_hub import FakeHub
from tests.harness.fetcher import FETCHER, load_fetcher

PYTHON = os.environ.get("HF_FETCH_PYTHON") or sys.executable
REPO, NAME = "city96/FLUX.1-dev-gguf", "flux1-dev-Q8_0.safetensors"
GATED = "black-forest-labs/FLUX.1-dev"
TOKEN = "hf_rangeTestTokenNeverOnTheCdn0123456789"
MiB = 1 << 20


hf, hf_ranges = load_fetcher()


# -- the bookkeeping, pure ----------------------------------------------------------------------


@pytest.mark.parametrize(("spans", "merged"), [
    ([], []),
    ([[0, 0], [5, 5]], []),
    ([[5, 10], [0, 3]], [[0, 3], [5, 10]]),
    ([[0, 5], [5, 10]], [[0, 10]]),  # touching spans join
    ([[0, 8], [2, 4], [7, 12], [20, 30]], [[0, 12], [20, 30]]),
])
def test_merge_spans(spans, merged):
    assert hf_ranges.merge_spans(spans) == merged


@pytest.mark.parametrize(("done", "size", "missing"), [
    ([], 100, [[0, 100]]),
    ([[0, 100]], 100, []),
    ([[0, 40]], 100, [[40, 100]]),  # an old single-stream partial of 40 bytes
    ([[10, 20], [50, 60]], 100, [[0, 10], [20, 50], [60, 100]]),
    ([[90, 150]], 100, [[0, 90]]),  # spans past the end are clipped
])
def test_missing_spans(done, size, missing):
    assert hf_ranges.missing_spans(done, size) == missing


@pytest.mark.parametrize(("missing", "connections", "min_piece", "count"), [
    ([[0, 800]], 8, 1, 8),
    ([[0, 10]], 4, 1, 4),
    ([[0, 800]], 8, 200, 4),  # never below min_piece
    ([[0, 100]], 8, 200, 1),  # a span smaller than min_piece stays whole
    ([[0, 100], [300, 1000]], 8, 1, 8),  # one per connection, shared in proportion
    ([[0, 1000]], 1, 1, 1),
    ([], 8, 1, 0),
])
def test_plan_pieces_covers_what_is_missing_in_similar_pieces(missing, connections, min_piece, count):
    pieces = hf_ranges.plan_pieces(missing, connections, min_piece)
    assert len(pieces) == count
    assert hf_ranges.merge_spans(pieces) == hf_ranges.merge_spans(missing), "exactly the missing bytes"
    assert sum(end - start for start, end in pieces) == sum(end - start for start, end in missing)
    for start, end in pieces:
        span = next(s for s in missing if s[0] <= start and end <= s[1])
        assert end - start >= min(min_piece, span[1] - span[0])
    lengths = [end - start for start, end in pieces if [start, end] not in missing]
    assert not lengths or max(lengths) - min(lengths) <= max(lengths) // 2 + 1


def test_split_point_takes_the_second_half_only_when_both_halves_are_worth_a_request():
    assert hf_ranges.split_point(0, 100, 10) == 50
    assert hf_ranges.split_point(40, 100, 10) == 70
    assert hf_ranges.split_point(80, 100, 10) == 90
    assert hf_ranges.split_point(81, 100, 10) is None
    assert hf_ranges.split_point(100, 100, 1) is None


def test_checkpoint_every_is_a_fifth_of_a_percent_within_bounds():
    assert hf_ranges.checkpoint_every(12_700_000_000) == 25_400_000
    assert hf_ranges.checkpoint_every(100 * MiB) == 256 * 1024
    assert hf_ranges.checkpoint_every(10 ** 12) == 64 * MiB


def test_the_sidecar_round_trips_and_refuses_another_file():
    text = hf_ranges.render_sidecar(1000, "ab" * 32, [[500, 600], [0, 100], [100, 200]])
    assert json.loads(text) == {"size": 1000, "sha256": "ab" * 32, "done": [[0, 200], [500, 600]]}
    assert hf_ranges.parse_sidecar(text, 1000, "ab" * 32) == [[0, 200], [500, 600]]
    assert hf_ranges.parse_sidecar(text, 999, "ab" * 32) is None, "another size"
    assert hf_ranges.parse_sidecar(text, 1000, "cd" * 32) is None, "another sha256"
    assert hf_ranges.parse_sidecar(hf_ranges.render_sidecar(50, None, [[0, 80]]), 50, None) == [[0, 50]]
    for garbage in ("", "{", "[]", '{"size": 1000}', '{"size": 1000, "done": [[1]]}', "null"):
        assert hf_ranges.parse_sidecar(garbage, 1000, None) is None, garbage


def test_write_sidecar_replaces_it_whole(tmp_path):
    path = str(tmp_path / "f.partial.ranges")
    hf_ranges.write_sidecar(path, "one")
    hf_ranges.write_sidecar(path, "two")
    assert Path(path).read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.partial.ranges"], "no tmp left"


@pytest.mark.parametrize(("status", "content_range", "first", "end", "size", "raises"), [
    (206, "bytes 100-199/1000", 100, 200, 1000, None),
    (206, "bytes 100-199/*", 100, 200, 1000, None),
    (200, None, 0, 1000, 1000, None),  # the whole file asked, the whole file got
    (200, None, 100, 200, 1000, "RangeIgnored"),
    (200, None, 0, 500, 1000, "RangeIgnored"),
    (206, "bytes 0-99/1000", 100, 200, 1000, "FetchError"),  # other bytes
    (206, "bytes 100-199/2000", 100, 200, 1000, "FetchError"),  # another file
    (206, None, 100, 200, 1000, "FetchError"),
    (204, None, 100, 200, 1000, "FetchError"),
])
def test_check_piece_response(status, content_range, first, end, size, raises):
    if raises is None:
        hf_ranges.check_piece_response(status, content_range, first, end, size)
        return
    with pytest.raises(hf.FetchError) as caught:
        hf_ranges.check_piece_response(status, content_range, first, end, size)
    assert type(caught.value).__name__ == raises


def _fetcher(**settings):
    return hf.Fetcher({"endpoint": "http://127.0.0.1:9", **settings})


def _item(tmp_path, size, sha256=None):
    dest = str(tmp_path / "unet" / "x.gguf")
    return {"repo": REPO, "file": "x.gguf", "dest": dest, "size": size, "sha256": sha256,
            "record": dest + ".verified"}


def test_on_disk_reads_an_old_partial_as_its_first_bytes_and_a_sidecar_as_its_spans(tmp_path, capsys):
    item = _item(tmp_path, 1000, "ab" * 32)
    partial, sidecar = item["dest"] + ".partial", item["dest"] + ".partial.ranges"
    Path(partial).parent.mkdir(parents=True)
    fetcher = _fetcher()
    assert fetcher.on_disk(item, partial, sidecar) == []

    Path(partial).write_bytes(b"x" * 300)  # left by the single-stream fetcher: no sidecar
    assert fetcher.on_disk(item, partial, sidecar) == [[0, 300]]

    Path(partial).write_bytes(b"x" * 1000)
    Path(sidecar).write_text(hf_ranges.render_sidecar(1000, "ab" * 32, [[0, 100], [500, 700]]))
    assert fetcher.on_disk(item, partial, sidecar) == [[0, 100], [500, 700]]

    Path(partial).write_bytes(b"x" * 600)  # killed while growing the partial: trust what it holds
    assert fetcher.on_disk(item, partial, sidecar) == [[0, 100], [500, 600]]

    Path(sidecar).write_text(hf_ranges.render_sidecar(1000, "cd" * 32, [[0, 100]]))  # another file
    assert fetcher.on_disk(item, partial, sidecar) == []
    assert not Path(partial).exists() and not Path(sidecar).exists()
    assert "fetching again" in capsys.readouterr().out

    Path(partial).write_bytes(b"x" * 1001)  # longer than the file: useless
    assert fetcher.on_disk(item, partial, sidecar) == []
    assert not Path(partial).exists()


def test_a_free_connection_takes_over_the_second_half_of_the_biggest_piece(tmp_path):
    fetcher = SimpleNamespace(connections=2, min_piece=MiB, interval=1.0, retries=0)
    item = _item(tmp_path, 40 * MiB)
    download = hf.RangedDownload(fetcher, item, "", "", [])
    first, second = download.take(), download.take()
    assert [(first.start, first.end), (second.start, second.end)] == [(0, 20 * MiB), (20 * MiB, 40 * MiB)]
    first.pos = first.end  # the first connection is done, the second one is 4 MiB in
    second.pos = 24 * MiB
    third = download.take()
    # Halfway through what the second has left past the block it may be writing.
    assert (third.start, third.end) == (32 * MiB + MiB // 2, 40 * MiB)
    assert second.end == third.start
    second.pos = second.end - MiB  # too little left anywhere for a request of its own
    third.pos = third.end - 2 * MiB
    assert download.take() is None


@pytest.mark.parametrize("part", ["hf_fetch.py", "hf_fetch_io.py", "hf_fetch_ranges.py"])
def test_the_fetcher_parses_as_python_3_8(part):
    ast.parse((FETCHER.parent / part).read_text(), feature_version=(3, 8))


# -- the program against the fake Hub -----------------------------------------------------------


def counting_file(path: Path, size: int) -> tuple[Path, str]:
    """Write `size` bytes where 8-byte word i holds i; return the path and its sha256."""
    words = np.arange(-(-size // 8), dtype="<u8").tobytes()[:size]
    path.write_bytes(words)
    return path, hashlib.sha256(words).hexdigest()


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[Path, str]:
    return counting_file(tmp_path_factory.mktemp("hub") / "big.bin", 32 * MiB)


@pytest.fixture
def hub(big):
    with FakeHub() as fake:
        fake.add_file(REPO, NAME, big[0], sha256=big[1])
        yield fake


def item_for(dest_dir: Path, source: tuple[Path, str], repo=REPO, name=NAME, **extra) -> dict:
    dest = str(dest_dir / "unet" / name)
    return {"repo": repo, "file": name, "revision": "main", "dest": dest,
            "size": source[0].stat().st_size, "sha256": source[1], "quant": None,
            "record": dest + ".verified", **extra}


def manifest_for(hub: FakeHub, items: list[dict], **settings) -> dict:
    manifest = {"endpoint": hub.url, "parallel": 3, "retries": 2, "backoff": 0.05,
                "progress_interval": 0.05, "connections": 4, "max_connections": 16,
                "range_threshold": MiB, "min_piece": 4 * MiB, "files": items}
    manifest.update(settings)
    return manifest


def stdin_for(manifest: dict, token: str | None) -> str:
    return json.dumps(manifest) + "\n" + (token or "") + "\n"


def fetch(manifest: dict, token: str | None = None) -> tuple[int, list[dict]]:
    """Run the fetcher to its end; return its exit code and its events."""
    done = subprocess.run([PYTHON, str(FETCHER)], input=stdin_for(manifest, token),
                          capture_output=True, text=True, timeout=120)
    assert done.stderr == "", done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def kinds(events: list[dict]) -> list[str]:
    return [e["event"] for e in events if e["event"] != "progress"]


def gets(hub: FakeHub):
    """The GETs that carried (or were to carry) file bytes: not the Hub's redirects."""
    return [r for r in hub.requests if r.method == "GET" and r.status != 302
            and ("/resolve/" in r.path or r.path.startswith("/blobs/"))]


def range_start(request) -> int:
    return int(request.range.split("=")[1].split("-")[0]) if request.range else 0


def assert_in_place(item: dict) -> None:
    """The file is in place with the hub's sha256 and its record; nothing else is left."""
    dest = Path(item["dest"])
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == item["sha256"]
    record = json.loads(Path(item["record"]).read_text())
    assert record["sha256"] == item["sha256"] and record["size"] == item["size"]
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name, dest.name + ".verified"]


def overlap_all(requests) -> bool:
    """True if every request was being answered at one same moment."""
    return max(r.started for r in requests) < min(r.ended for r in requests)


def test_a_large_file_comes_in_concurrent_ranges_and_is_verified(big, tmp_path):
    with FakeHub(cdn=True) as hub:
        hub.add_file(GATED, NAME, big[0], sha256=big[1], gated=True)
        hub.set_token(TOKEN)
        hub.throttle(8 * MiB)  # 1 s for a quarter of the file on one connection
        item = item_for(tmp_path, big, repo=GATED)
        code, events = fetch(manifest_for(hub, [item]), TOKEN)
        log = hub.requests
    assert code == 0, events
    assert_in_place(item)
    assert kinds(events) == ["start", "ranges", "verify", "done"]
    assert events[1]["pieces"] == 4 and events[1]["connections"] == 4 and events[1]["missing"] == item["size"]
    assert events[-1] == {"event": "done", "dest": item["dest"], "bytes": item["size"], "resumed_from": 0,
                          "connections": 4}
    progress = [e["done"] for e in events if e["event"] == "progress"]
    assert progress == sorted(progress) and 0 < progress[-1] <= item["size"]

    bodies = [r for r in log if r.server == "cdn"]
    assert len(bodies) == 4 and all(r.status == 206 and not r.dropped for r in bodies)
    spans = [[range_start(r), range_start(r) + r.bytes_sent] for r in bodies]
    assert hf_ranges.merge_spans(spans) == [[0, item["size"]]] and sum(r.bytes_sent for r in bodies) == item["size"]
    assert overlap_all(bodies), "the four ranges were fetched at the same time"
    resolves = [r for r in log if r.server == "hub"]
    assert len(resolves) == 4 and all(r.status == 302 and r.has_authorization for r in resolves)


def test_the_token_goes_to_the_hub_on_every_range_and_retry_never_to_the_cdn(big, tmp_path):
    with FakeHub(cdn=True) as hub:
        hub.add_file(GATED, NAME, big[0], sha256=big[1], gated=True)
        hub.set_token(TOKEN)
        hub.expire_redirects(0.5)  # a retry after the backoff must ask /resolve again
        starts = [start for start, _ in hf_ranges.plan_pieces([[0, item_for(tmp_path, big)["size"]]], 4, 4 * MiB)]
        hub.cut_after(GATED, NAME, 100_000, range_start=starts[1])
        hub.cut_after(GATED, NAME, 200_000, range_start=starts[3])
        item = item_for(tmp_path, big, repo=GATED)
        code, events = fetch(manifest_for(hub, [item], backoff=0.8), TOKEN)
        log = hub.requests
    assert code == 0, events
    assert_in_place(item)
    assert [e["attempt"] for e in events if e["event"] == "retry"] == [1, 1]
    hub_gets = [r for r in log if r.server == "hub" and r.method == "GET"]
    cdn_gets = [r for r in log if r.server == "cdn" and r.method == "GET"]
    assert len(hub_gets) == len(cdn_gets) == 6, "each attempt, retries too, resolved afresh"
    assert all(r.has_authorization and r.status == 302 for r in hub_gets)
    assert not any(r.has_authorization for r in log if r.server == "cdn"), "the token reached the CDN"
    assert {r.status for r in cdn_gets} == {206}, "no expired redirect was reused"


def test_a_cut_range_resumes_alone_from_its_last_byte_in_the_same_run(hub, big, tmp_path):
    size = big[0].stat().st_size
    starts = [start for start, _ in hf_ranges.plan_pieces([[0, size]], 4, 4 * MiB)]
    cut = 3_000_000
    hub.cut_after(REPO, NAME, cut, range_start=starts[2])
    item = item_for(tmp_path, big)
    code, events = fetch(manifest_for(hub, [item]))
    assert code == 0, events
    assert_in_place(item)
    retry = next(e for e in events if e["event"] == "retry")
    assert retry["range"] == [starts[2] + cut, starts[3]]
    requests = gets(hub)
    assert sorted(range_start(r) for r in requests) == sorted(starts + [starts[2] + cut])
    again = [r for r in requests if range_start(r) == starts[2] + cut]
    assert again[0].range == f"bytes={starts[2] + cut}-{starts[3] - 1}"
    assert sum(r.bytes_sent for r in requests) == size, "no byte fetched twice"


def test_a_run_that_gives_up_keeps_its_ranges_and_the_next_fetches_only_the_rest(hub, big, tmp_path):
    size = big[0].stat().st_size
    starts = [start for start, _ in hf_ranges.plan_pieces([[0, size]], 4, 4 * MiB)] + [size]
    cut = 1_234_567
    hub.cut_after(REPO, NAME, cut, range_start=starts[2])
    item = item_for(tmp_path, big)
    code, events = fetch(manifest_for(hub, [item], retries=0))
    assert code == 1
    error = next(e for e in events if e["event"] == "error")["message"]
    assert "gave up on 1 range(s)" in error and "only what is missing" in error, error
    partial, sidecar = Path(item["dest"] + ".partial"), Path(item["dest"] + ".partial.ranges")
    assert partial.stat().st_size == size, "preallocated"
    missing = [[starts[2] + cut, starts[3]]]
    assert hf_ranges.missing_spans(hf_ranges.parse_sidecar(sidecar.read_text(), size, item["sha256"]), size) == missing
    assert not Path(item["dest"]).exists()

    hub.clear_requests()
    code, events = fetch(manifest_for(hub, [item]))
    assert code == 0, events
    assert_in_place(item)
    assert [r.range for r in gets(hub)] == [f"bytes={starts[2] + cut}-{starts[3] - 1}"]
    assert gets(hub)[0].bytes_sent == starts[3] - starts[2] - cut
    ranges = next(e for e in events if e["event"] == "ranges")
    assert ranges["resumed_from"] == size - (starts[3] - starts[2] - cut)
    assert events[-1]["resumed_from"] == ranges["resumed_from"]


def test_an_old_single_stream_partial_is_kept_and_the_rest_fetched_in_ranges(hub, big, tmp_path):
    item = item_for(tmp_path, big)
    Path(item["dest"]).parent.mkdir(parents=True)
    Path(item["dest"] + ".partial").write_bytes(big[0].read_bytes()[: 10 * MiB])
    code, events = fetch(manifest_for(hub, [item]))
    assert code == 0, events
    assert_in_place(item)
    requests = gets(hub)
    assert min(range_start(r) for r in requests) == 10 * MiB
    assert sum(r.bytes_sent for r in requests) == item["size"] - 10 * MiB
    assert events[-1]["resumed_from"] == 10 * MiB


def test_a_server_that_ignores_range_gets_one_stream_from_zero(hub, big, tmp_path):
    hub.ignore_range()
    item = item_for(tmp_path, big)
    code, events = fetch(manifest_for(hub, [item]))
    assert code == 0, events
    assert_in_place(item)
    note = next(e for e in events if e["event"] == "note")
    assert note["fallback"] == "one stream" and "ignored Range" in note["message"]
    assert events[-1]["connections"] == 1 and events[-1]["resumed_from"] == 0
    requests = gets(hub)
    whole = [r for r in requests if r.range is None]
    assert len(whole) == 1 and whole[0].bytes_sent == item["size"] and not whole[0].dropped
    assert whole[0].started > max(r.started for r in requests if r.range), "after the ranges stopped"


def test_a_single_stream_resume_answered_200_starts_over(hub, big, tmp_path):
    hub.ignore_range()
    item = item_for(tmp_path, big)
    Path(item["dest"]).parent.mkdir(parents=True)
    Path(item["dest"] + ".partial").write_bytes(b"\0" * MiB)  # a wrong prefix: it must not stay
    code, events = fetch(manifest_for(hub, [item], range_threshold=64 * MiB))
    assert code == 0, events
    assert_in_place(item)
    assert [r.range for r in gets(hub)] == [f"bytes={MiB}-"]


def test_a_file_below_the_threshold_is_one_stream(hub, big, tmp_path):
    item = item_for(tmp_path, big)
    code, events = fetch(manifest_for(hub, [item], range_threshold=item["size"]))
    assert code == 0, events
    assert_in_place(item)
    assert kinds(events) == ["start", "done"] and events[-1]["connections"] == 1
    assert [r.range for r in gets(hub)] == [None]


def test_a_sha256_mismatch_fails_and_leaves_nothing_in_place(hub, big, tmp_path):
    item = item_for(tmp_path, big)
    item["sha256"] = "0" * 64
    code, events = fetch(manifest_for(hub, [item]))
    assert code == 1
    assert "does not match" in next(e for e in events if e["event"] == "error")["message"]
    assert list(Path(item["dest"]).parent.iterdir()) == [], "no file, partial, record or sidecar"


def test_connections_over_all_files_stay_within_max_connections(big, tmp_path):
    with FakeHub() as hub:
        hub.add_file(REPO, NAME, big[0], sha256=big[1])
        hub.add_file(REPO, "other.safetensors", big[0], sha256=big[1])
        hub.throttle(16 * MiB)
        items = [item_for(tmp_path, big), item_for(tmp_path, big, name="other.safetensors")]
        code, events = fetch(manifest_for(hub, items, max_connections=3))
        requests = gets(hub)
    assert code == 0, events
    for item in items:
        assert hashlib.sha256(Path(item["dest"]).read_bytes()).hexdigest() == item["sha256"]
    # A request ends, for the client, no later than the server's last write: the time the
    # server records after it (``ended``) can fall after the client's next request under load.
    moments = sorted([(r.started, 1) for r in requests]
                     + [(r.last_write if r.last_write is not None else r.ended, -1) for r in requests])
    running = peak = 0
    for _, step in moments:
        running += step
        peak = max(peak, running)
    assert peak == 3


def test_free_connections_take_over_the_rest_of_a_slow_range(hub, big, tmp_path):
    size = big[0].stat().st_size
    starts = [start for start, _ in hf_ranges.plan_pieces([[0, size]], 4, MiB)]
    hub.throttle(8 * MiB)
    hub.cut_after(REPO, NAME, MiB, range_start=starts[0])  # the first range starts late
    item = item_for(tmp_path, big)
    code, events = fetch(manifest_for(hub, [item], min_piece=MiB, backoff=0.8))
    assert code == 0, events
    assert_in_place(item)
    taken_over = [r for r in gets(hub) if range_start(r) not in (*starts, MiB)]
    assert taken_over, [r.range for r in gets(hub)]


def test_a_killed_run_refetches_under_one_percent_of_what_it_had_on_disk(tmp_path):
    source = counting_file(tmp_path / "huge.bin", 192 * MiB)
    with FakeHub() as hub:
        hub.add_file(REPO, NAME, source[0], sha256=source[1])
        hub.throttle(8 * MiB)  # 32 MiB/s on 4 connections: about 6 s for the file
        item = item_for(tmp_path / "node", source)
        # Four connections at most: more would not grow into free slots. What a kill loses is
        # what arrived since the last checkpoint, so it grows with the file's rate.
        manifest = manifest_for(hub, [item], min_piece=16 * MiB, max_connections=4)
        running = subprocess.Popen([PYTHON, str(FETCHER)], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, text=True)
        try:
            assert running.stdin is not None
            running.stdin.write(stdin_for(manifest, None))
            running.stdin.flush()
            deadline = time.monotonic() + 60
            while sum(r.bytes_sent for r in gets(hub)) < item["size"] * 0.6:
                assert time.monotonic() < deadline and running.poll() is None
                time.sleep(0.02)
            running.kill()  # SIGKILL past mid-file: no handler, no last checkpoint
            running.wait(timeout=10)
        finally:
            if running.poll() is None:
                running.kill()
            running.stdin.close()
        # What the killed run had written: the words of the partial that hold their index.
        words = np.fromfile(item["dest"] + ".partial", dtype="<u8")
        on_disk = words == np.arange(len(words), dtype="<u8")
        hub.clear_requests()
        hub.throttle(None)
        code, events = fetch(manifest)
        asked = np.zeros(len(words), dtype=bool)
        for request in gets(hub):  # every word it sent a byte of (pieces end mid-word too)
            asked[range_start(request) // 8:-(-(range_start(request) + request.bytes_sent) // 8)] = True
    assert code == 0, events
    assert_in_place(item)
    had = int(on_disk.sum()) * 8
    refetched = int((asked & on_disk).sum()) * 8
    assert item["size"] // 2 < had < item["size"]
    assert refetched < had / 100, (had, refetched)
    assert not (~asked & ~on_disk).any(), "every byte missing was asked for"
