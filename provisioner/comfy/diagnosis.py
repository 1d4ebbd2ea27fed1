"""Why a first image failed, and what to do: pure, a ``Generation`` and the log in, a
``Diagnosis`` out (FACTS.md "torch on Sequoia", ComfyUI-GGUF issues #107 and #108).

The log is read from where it stood before the prompt was submitted, so a ComfyUI that died
and was restarted by its supervisor still shows why it died.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Optional

from .prompts import black_hint

if TYPE_CHECKING:  # plan imports this module's constants: keep Pillow and websockets out
    from .generate import Generation

LOGS_HINT = "`provision logs NODE.yaml` shows ComfyUI's whole log"
# What macOS prints when Metal Performance Shaders abort the process (SIGABRT, exit 134).
MPS_ABORT = re.compile(r"failed assertion.*(MPSNDArray|MetalPerformanceShaders|MPSGraph)|"
                       r"(MPSNDArray|MetalPerformanceShaders).*failed assertion")
# ComfyUI-GGUF's README: macOS Sequoia seems to need torch 2.4.1 (and its matching set).
SEQUOIA_TORCH = {"torch": "2.4.1", "torchvision": "0.19.1", "torchaudio": "2.4.1"}


@dataclasses.dataclass(frozen=True)
class Versions:
    """The set the node runs, named in diagnoses."""

    torch: str
    comfyui: str
    gguf_node: str
    platform: str = "macos"
    macos: Optional[str] = None  # "15.1"; None off macOS

    def describe(self) -> str:
        system = f"macOS {self.macos}" if self.macos else self.platform
        return (f"torch {self.torch}, {system}, ComfyUI {self.comfyui}, "
                f"ComfyUI-GGUF {self.gguf_node[:12]}")


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    message: str
    hint: str


def mps_abort_line(log: str) -> Optional[str]:
    """Return the MPS failed-assertion line of a log, or None."""
    for line in log.splitlines():
        if MPS_ABORT.search(line):
            return line.strip()
    return None


def log_tail(log: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in log.strip().splitlines()[-lines:]) or "(empty log)"


def sequoia_hint(versions: Versions) -> str:
    pins = ", ".join(f"{name}: \"{version}\"" for name, version in SEQUOIA_TORCH.items())
    return (f"the node runs {versions.describe()}. ComfyUI-GGUF's README says macOS Sequoia (15) "
            "seems to need torch 2.4.1: later torch aborts on MPS with \"buffer is not large "
            "enough\" (city96/ComfyUI-GGUF#107). To try it, set in node.yaml "
            f"torch: {{{pins}}} and re-run `provision up` (docs/compatibility.md)")


def diagnose(generation: "Generation", *, log: str, argv: list[str], versions: Versions,
             timeout: float, came_back: Optional[bool] = None) -> Diagnosis:
    """Say why ``generation`` failed. ``log`` is ComfyUI's log since the prompt was submitted;
    ``came_back`` whether ComfyUI answered again after dying (None: not asked)."""
    outcome = generation.outcome
    if outcome == "black":
        return Diagnosis(f"{generation.message}: the VAE decoded NaN or zeros (ComfyUI runs: "
                         f"{' '.join(argv)})", black_hint(argv))
    if outcome == "died":
        abort = mps_abort_line(log)
        back = ("" if came_back is None else
                "; its supervisor restarted it" if came_back else "; it is not running now")
        if abort:
            return Diagnosis(f"ComfyUI aborted in the first image with the MPS assertion "
                             f"{abort!r}{back}", sequoia_hint(versions))
        hint = sequoia_hint(versions) if versions.macos else LOGS_HINT
        return Diagnosis(f"ComfyUI died while making the first image ({generation.message})"
                         f"{back}; last log lines: {log_tail(log)}", hint)
    if outcome == "error":
        error = generation.error
        node_type = str(error.get("node_type") or "?")
        exception = str(error.get("exception_message") or "").strip().splitlines()
        what = f"{error.get('exception_type', 'error')}: {exception[0] if exception else ''}".rstrip(": ")
        hint = (f"a model file may be damaged or not what {node_type} reads: re-run `provision up` "
                "(it verifies every file's sha256); " + LOGS_HINT
                if "Loader" in node_type else LOGS_HINT)  # UNETLoader, DualCLIPLoaderGGUF...
        return Diagnosis(f"the first image failed in {node_type} (node {error.get('node_id', '?')}): "
                         f"{what}", hint)
    if outcome == "timeout":
        return Diagnosis(f"no first image within {timeout:.0f} s ({_progress(generation)}); the "
                         "prompt was interrupted",
                         "a first load of the models can take minutes on a slow disk or a node "
                         "under memory pressure (see `provision status`): re-run `provision up`, "
                         "or skip this check with `provision up --no-smoke`")
    if outcome == "refused":
        return Diagnosis(f"ComfyUI refused the first-image workflow: {generation.message}",
                         "the workflow templates (templates/workflows/) no longer match this "
                         "ComfyUI; `provision up --no-smoke` skips the check")
    if outcome == "interrupted":
        return Diagnosis(f"the first image was interrupted ({generation.message}): someone "
                         "cancelled it in ComfyUI", "re-run `provision up` to make it again")
    return Diagnosis(f"the first image failed: {generation.message}", LOGS_HINT)


def _progress(generation: "Generation") -> str:
    timing = generation.timing
    if timing.steps_done:
        return f"the sampler reached step {timing.steps_done} of {timing.steps_total}"
    if generation.executing:
        return f"no sampler step yet: ComfyUI was still in {generation.executing}"
    return "ComfyUI never started the prompt: was its queue busy?"
