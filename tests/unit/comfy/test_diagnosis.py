"""Why a first image failed: the diagnosis from the outcome, the log and ComfyUI's messages."""

from __future__ import annotations

import pytest

from provisioner.comfy.diagnosis import Versions, diagnose, mps_abort_line
from provisioner.comfy.generate import Generation
from provisioner.comfy.timing import RunTiming

ARGV = ["main.py", "--fp32-vae", "--listen", "127.0.0.1", "--port", "8188"]
SEQUOIA = Versions(torch="2.3.1", comfyui="v0.3.64", gguf_node="795e451d9c1a2b3c", macos="15.1")
LINUX = Versions(torch="2.3.1", comfyui="v0.3.64", gguf_node="795e451", platform="linux")
# The line macOS printed in city96/ComfyUI-GGUF#107.
ABORT = ("/AppleInternal/Library/BuildRoots/5a8a3fcc-55cb-11ef-848e-8a553ba56670/Library/Caches/"
         "com.apple.xbs/Sources/MetalPerformanceShaders/MPSCore/Types/MPSNDArray.mm:891: failed "
         "assertion `[MPSNDArray, initWithBufferImpl:offset:descriptor:isForNDArrayAlias:"
         "isUserBuffer:] Error: buffer is not large enough. Must be 63700992 bytes")


def said(generation, log="", argv=ARGV, versions=SEQUOIA, came_back=None):
    return diagnose(generation, log=log, argv=argv, versions=versions, timeout=600,
                    came_back=came_back)


def test_the_mps_abort_is_found_in_the_log_and_names_versions_and_the_torch_pins():
    log = f"got prompt\nloaded completely 0.0 6456.9 True\n{ABORT}\n'\n"
    assert mps_abort_line(log) == ABORT
    diagnosis = said(Generation("died", "the WebSocket to ComfyUI broke mid-prompt"), log,
                     came_back=True)
    assert "MPS assertion" in diagnosis.message and "buffer is not large enough" in diagnosis.message
    assert "its supervisor restarted it" in diagnosis.message
    hint = diagnosis.hint
    assert "torch 2.3.1, macOS 15.1, ComfyUI v0.3.64, ComfyUI-GGUF 795e451d9c1a" in hint
    assert 'torch: {torch: "2.4.1", torchvision: "0.19.1", torchaudio: "2.4.1"}' in hint
    assert "ComfyUI-GGUF#107" in hint


def test_other_mps_assertions_count_and_ordinary_lines_do_not():
    other = ("/AppleInternal/.../MPSNDArray.mm:829: failed assertion `[MPSNDArray "
             "initWithDevice:descriptor:isTextureBacked:] Error: NDArray dimension length > INT_MAX'")
    assert mps_abort_line(other) == other
    assert mps_abort_line("AssertionError: Torch not compiled with CUDA enabled") is None
    assert mps_abort_line("") is None


def test_a_death_without_the_assertion_shows_the_log_and_off_macos_no_sequoia_note():
    log = "got prompt\nSegmentation fault: 11\n"
    diagnosis = said(Generation("died", "ComfyUI stopped answering"), log, versions=LINUX,
                     came_back=False)
    assert "died while making the first image" in diagnosis.message
    assert "it is not running now" in diagnosis.message and "Segmentation fault: 11" in diagnosis.message
    assert "2.4.1" not in diagnosis.hint and "provision logs" in diagnosis.hint
    on_a_mac = said(Generation("died", "ComfyUI stopped answering"), log)
    assert "2.4.1" in on_a_mac.hint


@pytest.mark.parametrize("argv, fix", [
    (ARGV, "--cpu-vae"),
    (["main.py", "--listen", "127.0.0.1"], "must run with --fp32-vae"),
])
def test_a_black_image_gives_the_fp32_vae_hint_and_the_argv(argv, fix):
    diagnosis = said(Generation("black", "provision-smoke/flux-dev_00001_.png is all black"),
                     argv=argv)
    assert "all black" in diagnosis.message and f"ComfyUI runs: {' '.join(argv)}" in diagnosis.message
    assert fix in diagnosis.hint


def test_an_execution_error_names_the_class_and_comfyuis_message():
    error = {"node_id": "9", "node_type": "VAEDecode", "exception_type": "RuntimeError",
             "exception_message": "MPS backend out of memory\n(more)"}
    diagnosis = said(Generation("error", "VAEDecode (node 9) failed", error=error))
    assert diagnosis.message == ("the first image failed in VAEDecode (node 9): RuntimeError: "
                                 "MPS backend out of memory")
    loader = said(Generation("error", "x", error={"node_type": "UnetLoaderGGUF", "node_id": "1",
                                                  "exception_type": "ValueError",
                                                  "exception_message": "bad header"}))
    assert "sha256" in loader.hint and "UnetLoaderGGUF" in loader.hint


@pytest.mark.parametrize("generation, seen", [
    (Generation("timeout", timing=RunTiming(steps_done=2, steps_total=4)),
     "the sampler reached step 2 of 4"),
    (Generation("timeout", executing="UnetLoaderGGUF"), "still in UnetLoaderGGUF"),
    (Generation("timeout"), "never started the prompt"),
])
def test_a_timeout_says_what_progress_was_seen(generation, seen):
    diagnosis = said(generation)
    assert "no first image within 600 s" in diagnosis.message and seen in diagnosis.message
    assert "--no-smoke" in diagnosis.hint


def test_a_refused_workflow_and_an_interruption_are_told_apart():
    refused = said(Generation("refused", "ComfyUI refused the prompt (400): no KSampler"))
    assert "refused the first-image workflow" in refused.message and "--no-smoke" in refused.hint
    interrupted = said(Generation("interrupted", "interrupted in node 8 (KSampler)"))
    assert "cancelled" in interrupted.message
