"""The download preflight: only the files still to fetch are resolved on the Hub and counted
against the node's free disk, with the numbers when it is short. The Hub is stood in for by
a table of sizes (tests/e2e/test_up_models.py runs it against the fake Hub)."""

from __future__ import annotations

import json

import pytest

from provisioner.core.config import NodeConfig
from provisioner.core.errors import DownloadError
from provisioner.core.units import GIB
from provisioner.install import hub
from provisioner.install.preflight import (
    DOWNLOAD_DISK_HEADROOM,
    check_disk_room,
    disk_needed,
    preflight_downloads,
)
from provisioner.install.steps.command import CommandStep
from provisioner.install.steps.download import DownloadStep, FileSpec
from provisioner.node.facts import assumed_facts

GB = 10**9
MTIME = 1_700_000_000


def facts_with_free(free: int):
    return assumed_facts(64 * GIB).model_copy(update={"disk_free_bytes": free})


# ------------------------------------------------------------------ the disk check, pure

# (bytes still to fetch, free disk) -> refused?
ROOM = [
    (10 * GB, 13 * GB, False),  # 10 GB + 10% + 2 GB headroom fits exactly
    (10 * GB, 13 * GB - 1, True),
    (10 * GB, 500 * GB, False),
    (0, DOWNLOAD_DISK_HEADROOM, False),
    (0, DOWNLOAD_DISK_HEADROOM - 1, True),  # the headroom alone is never given up
]


@pytest.mark.parametrize("remaining, free, refused", ROOM)
def test_the_disk_must_hold_what_is_left_plus_ten_percent_and_the_headroom(remaining, free, refused):
    assert disk_needed(remaining) == int(remaining * 1.1) + 2 * GB
    if not refused:
        check_disk_room(facts_with_free(free), remaining)
        return
    with pytest.raises(DownloadError) as caught:
        check_disk_room(facts_with_free(free), remaining)
    message = str(caught.value)
    assert "not enough free disk on /Users/admin" in message and "nothing was downloaded" in message
    assert "quality:" in caught.value.hint


def test_the_refusal_gives_the_numbers():
    with pytest.raises(DownloadError) as caught:
        check_disk_room(facts_with_free(5 * GB), 10 * GB)
    assert str(caught.value) == (
        "not enough free disk on /Users/admin for the models: need 13.00 GB (10.00 GB still to "
        "fetch + 10% + 2.00 GB), have 5.00 GB, short by 8.00 GB; nothing was downloaded")


# ------------------------------------------------------------------ preflight_downloads

HUB_SIZES = {"unet.gguf": 10 * GB, "clip.gguf": 5 * GB, "vae.safetensors": 1 * GB}


@pytest.fixture
def asked(monkeypatch) -> list:
    """Stand in for the Hub: resolve sizes from HUB_SIZES; record each call's files and token."""
    calls: list = []

    def resolve(specs, endpoint, token, token_env):
        calls.append(([spec.file for spec in specs], token, token_env))
        return [spec.model_copy(update={"size": HUB_SIZES[spec.file], "resolved": True}) for spec in specs]

    monkeypatch.setattr(hub, "resolve", resolve)
    return calls


def download_step(*files: str, when: bool = True) -> DownloadStep:
    return DownloadStep(
        name="models", when=when, endpoint="https://hub.test", fetcher="/w/run/hf_fetch.py",
        python="/usr/bin/python3",
        files=[FileSpec(role=name.split(".")[0], repo="org/flux", file=name, dest=f"/w/models/{name}")
               for name in files])


def probe_output(*states) -> str:
    """The download step's probe output; a state is "verified", "missing" or partial bytes."""
    parts = []
    for index, state in enumerate(states):
        stat = record = partial = ""
        if state == "verified":
            stat, record = f"123 {MTIME}", json.dumps({"size": 123, "mtime": MTIME})
        elif state != "missing":
            partial = str(state)
        parts.append(f"@@stat{index}\n{stat}\n@@record{index}\n{record}\n@@partial{index}\n{partial}")
    return "\n".join(parts) + "\n"


# (the files' state on the node, free disk) -> refused?
PREFLIGHT = [
    (("missing", "missing"), 18_500_000_000, False),  # 15 GB + 10% + 2 GB
    (("missing", "missing"), 18_500_000_000 - 1, True),
    (("verified", "missing"), 7_500_000_000, False),  # the unet is there: 5 GB + 10% + 2 GB
    ((4 * GB, "missing"), 14_100_000_000, False),  # resuming: 6 + 5 GB left, + 10% + 2 GB
    ((4 * GB, "missing"), 14_100_000_000 - 1, True),
    ((20 * GB, "verified"), DOWNLOAD_DISK_HEADROOM, False),  # a partial larger than the file counts 0
    (("verified", "verified"), 0, False),  # nothing to fetch: no disk check, the models take it now
]


@pytest.mark.parametrize("states, free, refused", PREFLIGHT)
def test_only_the_bytes_still_to_fetch_are_counted_against_the_disk(asked, states, free, refused):
    steps = [download_step("unet.gguf", "clip.gguf")]
    probed = {0: probe_output(*states)}
    if refused:
        with pytest.raises(DownloadError, match="not enough free disk"):
            preflight_downloads(NodeConfig(host="h"), facts_with_free(free), steps, probed, None)
        return
    checked = preflight_downloads(NodeConfig(host="h"), facts_with_free(free), steps, probed, None)
    pending = [name for name, state in zip(["unet.gguf", "clip.gguf"], states) if state != "verified"]
    assert asked == [(pending, None, "HF_TOKEN")]
    assert [f.resolved for f in checked[0].files] == [state != "verified" for state in states]


def test_pending_files_are_resolved_and_the_others_left_as_they_are(asked):
    steps = [CommandStep(name="venv", cmd="true"),
             download_step("unet.gguf", "clip.gguf", "vae.safetensors"),
             download_step("unet.gguf", when=False)]
    probed = {1: probe_output("missing", "verified", 1 * GB)}
    checked = preflight_downloads(NodeConfig(host="h"), facts_with_free(100 * GB), steps, probed, "hf_x")

    assert checked[0] is steps[0] and checked[2] is steps[2], "only download steps that run are read"
    assert asked == [(["unet.gguf", "vae.safetensors"], "hf_x", "HF_TOKEN")]
    unet, clip, vae = checked[1].files
    assert (unet.size, unet.resolved) == (10 * GB, True)
    assert clip == steps[1].files[1], "a verified file is not asked about again"
    assert (vae.size, vae.resolved) == (1 * GB, True)
    assert [f.file for f in checked[1].files] == ["unet.gguf", "clip.gguf", "vae.safetensors"]


def test_a_download_step_without_probe_output_fetches_every_file(asked):
    steps = [download_step("unet.gguf")]
    with pytest.raises(DownloadError, match=r"need 13.00 GB \(10.00 GB still to fetch"):
        preflight_downloads(NodeConfig(host="h"), facts_with_free(12 * GB), steps, {}, None)


def test_a_ranged_partial_counts_the_bytes_its_sidecar_lists_not_its_preallocated_size():
    # A file fetched in byte ranges has a .partial as big as the whole file from the start;
    # only its .partial.ranges sidecar says what is on disk.
    step = download_step("unet.gguf")
    sidecar = json.dumps({"size": 10 * GB, "sha256": "a" * 64, "done": [[0, GB], [3 * GB, 5 * GB]]})
    output = f"@@stat0\n\n@@record0\n\n@@partial0\n{10 * GB}\n@@ranges0\n{sidecar}\n"
    assert step.pending(output) == ([0], {0: 3 * GB})
    without = f"@@stat0\n\n@@record0\n\n@@partial0\n{4 * GB}\n@@ranges0\n\n"
    assert step.pending(without) == ([0], {0: 4 * GB})
