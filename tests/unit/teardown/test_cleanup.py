"""What a teardown may delete (pure): wipe levels, guards on the work folder, the token probe."""

from __future__ import annotations

import pytest

from provisioner.teardown.cleanup import plan_removals, plist_problem, token_probe, workdir_problem

W = "/Users/admin/provision"
OUTPUTS = [(f"{W}/ComfyUI/output/a.png", 10), (f"{W}/ComfyUI/output/sub/b.png", 20)]
MODELS = [(f"{W}/ComfyUI/models/unet/x.gguf", 1000), (f"{W}/ComfyUI/models/unet/x.gguf.verified", 1)]
PLIST = "/Users/admin/Library/LaunchAgents/dev.provision.comfyui.plist"


def plan(**kw):
    fields = dict(workdir=W, workdir_bytes=5000, outputs=OUTPUTS, models=MODELS, plist=PLIST)
    fields.update(kw)
    return [(r.what, r.path, r.bytes, r.tree) for r in plan_removals(**fields)]


def test_no_wipe_removes_the_verified_outputs_only():
    assert plan(wipe="none") == [("output", p, b, False) for p, b in OUTPUTS]


def test_keep_outputs_remote_keeps_them():
    assert plan(wipe="none", keep_outputs_remote=True) == []


def test_wipe_models_adds_the_downloaded_models():
    assert plan(wipe="models") == [("output", p, b, False) for p, b in OUTPUTS] + \
        [("model", p, b, False) for p, b in MODELS]


def test_wipe_all_is_the_plist_then_the_work_folder():
    assert plan(wipe="all") == [("launch-agent", PLIST, 0, False), ("workdir", W, 5000, True)]
    assert plan(wipe="all", plist=None) == [("workdir", W, 5000, True)]


@pytest.mark.parametrize("wipe", ["models", "all"])
def test_a_refused_wipe_deletes_only_the_verified_outputs(wipe):
    assert plan(wipe=wipe, wipe_allowed=False) == [("output", p, b, False) for p, b in OUTPUTS]


@pytest.mark.parametrize("workdir, home, bad", [
    ("/Users/admin/provision", "/Users/admin", False),
    ("/home/u/work/provision", "/home/u", False),
    ("/srv/provision-node", "/home/u", False),
    ("/", "/home/u", True),
    ("", "/home/u", True),
    ("provision", "/home/u", True),
    ("/home/u", "/home/u", True),
    ("/home/u/", "/home/u", True),
    ("/home", "/home/u", True),
    ("/Users", "/Users/admin", True),
    ("/tmp", "/home/u", True),
    ("/usr/local", "/home/u", True),
    ("/opt/homebrew", "/Users/admin", True),
    ("/home/u/x/../..", "/home/u", True),
    ("/home/u/./provision", "/home/u", True),
])
def test_workdir_problem(workdir, home, bad):
    assert (workdir_problem(workdir, home) is not None) is bad


def test_plist_must_be_the_one_up_wrote():
    assert plist_problem(PLIST, "/Users/admin", "dev.provision.comfyui") is None
    assert plist_problem("/Library/LaunchDaemons/x.plist", "/Users/admin", "dev.provision.comfyui")


def test_the_token_probe_never_carries_the_token():
    token = "hf_abcdefghijklmnopqrstuvwxyz01234567"
    probe = token_probe(token)
    assert probe["prefix"] == "hf_" and probe["length"] == len(token)
    assert token not in str(probe) and token[3:] not in str(probe) and token[3:12] not in str(probe)
    assert len(probe["sha256"]) == 64


def test_a_token_without_a_known_prefix_sends_no_prefix():
    assert token_probe("sometokenwithoutprefix0123456789")["prefix"] == ""
