"""Parsers `down` relies on: the one-round-trip probe of the node and ComfyUI's queue."""

from __future__ import annotations

import json

from provisioner.comfy.client import parse_queue
from provisioner.teardown.down import parse_probe


def test_probe_of_a_set_up_node():
    text = ("@@state\n" + json.dumps({"remote_port": 8190, "models": []}) + "\n\n"
            "@@workdir\nexists\nours\nfiles\n@@plist\nexists\n@@token\n"
            "@@service\nloaded=1 running=1 pid=4242\n")
    probe = parse_probe(text)
    assert probe.state["remote_port"] == 8190
    assert probe.workdir_exists and probe.workdir_ours and probe.workdir_has_files
    assert probe.plist_exists and not probe.token_exists
    assert probe.service == {"loaded": True, "running": True, "pid": 4242}


def test_probe_of_a_node_never_set_up():
    probe = parse_probe("@@state\n\n@@workdir\n@@plist\n@@token\n@@service\nloaded=0 running=0 pid=\n")
    assert probe.state == {} and not probe.workdir_exists and not probe.workdir_ours
    assert not probe.service["loaded"] and probe.service["pid"] is None


def test_a_damaged_state_file_reads_as_no_state():
    assert parse_probe("@@state\n{not json\n@@workdir\nexists\nours\n").state == {}


def test_queue_entries_are_read_by_prompt_id():
    data = {"queue_running": [[3, "p-run", {}, {"client_id": "x"}, ["10"]]],
            "queue_pending": [[4, "p-wait1", {}, {}, []], [5, "p-wait2", {}, {}, []]]}
    queue = parse_queue(data)
    assert queue.running == ["p-run"] and queue.pending == ["p-wait1", "p-wait2"]
    assert not queue.empty
    assert parse_queue({"queue_running": [], "queue_pending": []}).empty
    assert parse_queue(None).empty and parse_queue({"queue_running": "junk"}).empty
