"""templates/hf_fetch_guard.py: one writer per partial file, a full disk said plainly, and a
stopped fetcher that keeps what it wrote. Against the fake Hub on 127.0.0.1, no SSH."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.harness.fake_hub import FakeHub
from tests.harness.fetcher import FETCHER, load_fetcher
from tests.unit.node.test_hf_fetch_ranges import (
    NAME,
    PYTHON,
    REPO,
    MiB,
    assert_in_place,
    counting_file,
    gets,
    item_for,
    manifest_for,
    range_start,
    stdin_for,
)

hf, hf_ranges = load_fetcher()
import hf_fetch_guard as guard  # noqa: E402  (importable once load_fetcher put templates/ on the path)


def test_a_second_writer_waits_for_the_first_and_gives_up_after_its_wait(tmp_path):
    dest = str(tmp_path / "unet" / "f.gguf")
    order = []
    with guard.writer_lock(dest):
        lock_file = Path(dest + ".partial.lock")
        assert lock_file.read_text().strip() == str(os.getpid())

        def second():
            with guard.writer_lock(dest, wait=10):
                order.append("second")

        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.5)  # give it time to (wrongly) get in
        order.append("first done")
        with pytest.raises(guard.WriterBusy, match="another download"):
            with guard.writer_lock(dest, wait=0.3):
                pass
    waiter.join(10)
    assert order == ["first done", "second"]
    assert not lock_file.exists(), "the last writer removes it"


def test_another_process_holding_the_file_blocks_a_fetch_with_a_clear_error(tmp_path):
    dest = str(tmp_path / "unet" / NAME)
    holder = subprocess.Popen(
        [PYTHON, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import hf_fetch_guard as g\n"
         "with g.writer_lock(sys.argv[2]):\n print('held', flush=True); sys.stdin.read()",
         str(FETCHER.parent), dest], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(guard.WriterBusy):
            with guard.writer_lock(dest, wait=0.5):
                pass
    finally:
        holder.stdin.close()
        holder.wait(10)
    with guard.writer_lock(dest, wait=5):  # its death released it
        pass


def test_a_full_disk_stops_the_file_at_once_naming_free_space_and_what_is_missing(
        tmp_path, monkeypatch, capsys):
    source = counting_file(tmp_path / "f.bin", 8 * MiB)
    written = []
    real_write_at = hf_ranges.write_at

    def fills_up(fd, data, offset):
        if sum(written) + len(data) > 3 * MiB:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(len(data))
        real_write_at(fd, data, offset)

    monkeypatch.setattr(hf_ranges, "write_at", fills_up)
    with FakeHub() as hub:
        hub.add_file(REPO, NAME, source[0], sha256=source[1])
        item = item_for(tmp_path / "node", source)
        manifest = manifest_for(hub, [item], min_piece=MiB, retries=5, backoff=5)
        started = time.monotonic()
        with pytest.raises(hf.FetchError) as failed:
            hf.Fetcher(manifest).fetch(item, 0)
        assert time.monotonic() - started < 4, "no retry (and no backoff) for a full disk"
    message = str(failed.value)
    assert "disk is full" in message and " free on " in message and "still to fetch" in message
    assert "are kept" in message and "re-run `provision up`" in message
    assert "retries" not in message
    sidecar = json.loads(Path(item["dest"] + ".partial.ranges").read_text())
    kept = sum(end - start for start, end in sidecar["done"])
    assert 0 < kept <= 3 * MiB, "what was written is listed for the next run"
    capsys.readouterr()


def stop_midway(hub, manifest: dict, after_bytes: float, how: str) -> int:
    """Run the fetcher until the hub sent ``after_bytes``, stop it (SIGTERM, or by closing
    its stdin); return its exit code."""
    running = subprocess.Popen([PYTHON, str(FETCHER)], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True)
    try:
        running.stdin.write(stdin_for(manifest, None))
        running.stdin.flush()
        deadline = time.monotonic() + 60
        while sum(r.bytes_sent for r in gets(hub)) < after_bytes:
            assert time.monotonic() < deadline and running.poll() is None
            time.sleep(0.02)
        if how == "SIGTERM":
            running.send_signal(signal.SIGTERM)
        else:
            running.stdin.close()
        return running.wait(timeout=20)
    finally:
        if running.poll() is None:
            running.kill()
        if not running.stdin.closed:
            running.stdin.close()


def test_a_stopped_fetcher_lists_what_it_wrote_so_a_resume_refetches_only_what_was_in_the_air(
        tmp_path):
    source = counting_file(tmp_path / "huge.bin", 96 * MiB)
    results = {}
    with FakeHub() as hub:
        hub.add_file(REPO, NAME, source[0], sha256=source[1])
        hub.throttle(4 * MiB)
        for how in ("SIGTERM", "stdin closed"):
            item = item_for(tmp_path / how.replace(" ", "-"), source)
            manifest = manifest_for(hub, [item], min_piece=16 * MiB, max_connections=4,
                                    stop_on_eof=True)
            hub.clear_requests()
            code = stop_midway(hub, manifest, item["size"] * 0.4, how)
            words = np.fromfile(item["dest"] + ".partial", dtype="<u8")
            on_disk = int((words == np.arange(len(words), dtype="<u8")).sum()) * 8
            listed = sum(end - start for start, end in
                         json.loads(Path(item["dest"] + ".partial.ranges").read_text())["done"])
            results[how] = (code, on_disk, listed)
    for how, (code, on_disk, listed) in results.items():
        assert code == (143 if how == "SIGTERM" else 3), how
        # Everything on disk is listed but what was between recv and pwrite at the stop.
        assert on_disk - listed < on_disk / 200, (how, on_disk, listed)
        assert listed <= on_disk + 8 * 16, "nothing listed that is not on disk (a piece may end mid-word)"


def test_resume_after_a_stop_never_asks_for_a_listed_byte_again(tmp_path):
    source = counting_file(tmp_path / "f.bin", 48 * MiB)
    with FakeHub() as hub:
        hub.add_file(REPO, NAME, source[0], sha256=source[1])
        hub.throttle(4 * MiB)
        item = item_for(tmp_path / "node", source)
        manifest = manifest_for(hub, [item], min_piece=8 * MiB, max_connections=4)
        stop_midway(hub, manifest, item["size"] * 0.5, "SIGTERM")
        listed = json.loads(Path(item["dest"] + ".partial.ranges").read_text())["done"]
        hub.clear_requests()
        hub.throttle(None)
        done = subprocess.run([PYTHON, str(FETCHER)], input=stdin_for(manifest, None),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:]
        for request in gets(hub):
            start = range_start(request)
            end = start + request.bytes_sent
            assert not any(s < end and start < e for s, e in listed), (request.range, listed)
    assert_in_place(item)
