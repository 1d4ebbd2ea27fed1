"""The one-round-trip probe of the node ``down`` starts with."""

from __future__ import annotations

import json

from provisioner.teardown.probe import parse_probe


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
