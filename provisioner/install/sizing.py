"""Choose the model files a node can run: pure arithmetic over facts and the catalog.

``choose_models(facts, catalog, options)`` returns a ``ModelPlan``: the files, their bytes,
the estimated peak memory against the node's GPU budget, a verdict (green / yellow / red),
the reasons in sentences with numbers, and whether the disk has room. The model and its
constants are explained in docs/sizing.md; the tunable estimates live in
playbooks/models.yaml (``sizing:``), the facts about platforms are named below.
"""

from __future__ import annotations

import urllib.parse
from fractions import Fraction
from pathlib import PurePosixPath
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict

from ..core.config import ModelSource, NodeConfig
from ..core.errors import ConfigError, SizingError
from ..core.units import GIB, format_bytes, gib
from ..node.facts.model import NodeFacts
from .catalog import QUALITIES, Catalog, ModelFile, ModelName, Quality, SizingEstimates, format_of

Verdict = Literal["green", "yellow", "red"]
QualityRequest = Literal["auto", "q4", "q5", "q6", "q8", "bf16"]

# Metal's default GPU working set (recommendedMaxWorkingSetSize) as commonly observed:
# two thirds of hw.memsize on machines up to 36 GiB, three quarters above. A raised
# iogpu.wired_limit_mb replaces it. (FACTS.md "macOS node"; sources in docs/sizing.md.)
METAL_SMALL_MACHINE_MAX_BYTES = 36 * GIB
METAL_SMALL_MACHINE_FRACTION = Fraction(2, 3)
METAL_LARGE_MACHINE_FRACTION = Fraction(3, 4)
# sysctl iogpu.wired_limit_mb counts in MiB.
WIRED_LIMIT_UNIT_BYTES = 1024**2
# The unified-memory sizes Apple Silicon Macs are sold with (M1 to M4 generations, in GiB:
# a "16 GB" Mac reports 16 GiB in hw.memsize). A refusal names the smallest one that fits,
# since nobody can rent a 15.44 GB Mac.
MAC_MEMORY_TIERS_GIB = (8, 16, 18, 24, 32, 36, 48, 64, 96, 128, 192, 256, 512)
# Linux without an NVIDIA GPU runs ComfyUI on the CPU; budget it like a large Mac.
CPU_RAM_FRACTION = Fraction(3, 4)

# The seed's benchmark (FACTS.md, M4 Pro, 1024x1024, Euler), quoted in warnings so a user
# knows what a yellow or red plan costs in time. schnell was not measured on 32 GB.
SEED_BENCHMARK: dict[str, dict[str, str]] = {
    "dev": {
        "red": "760 s per 1024x1024 image on 16 GB with 4.6 GB swapped, "
               "against ~95 s on 64 GB (dev, 20 steps)",
        "yellow": "~180 s per 1024x1024 image on 32 GB with ~1 GB swapped, "
                  "against ~95 s on 64 GB (dev, 20 steps)",
    },
    "schnell": {
        "red": "~200 s per 1024x1024 image on 16 GB with 4.6 GB swapped, "
               "against ~20 s on 64 GB (schnell, 4 steps)",
        "yellow": "dev at ~180 s per 1024x1024 image on 32 GB with ~1 GB swapped, "
                  "against ~95 s on 64 GB (schnell was not measured on 32 GB)",
    },
}

_ROLE_LABELS = {"unet": "UNet", "t5": "T5", "clip_l": "CLIP-L", "vae": "VAE",
                "lora": "LoRA", "controlnet": "ControlNet"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SizingOptions(_Model):
    """What the user asked for: the model, a quality (or auto), and extra files."""

    model: ModelName = "dev"
    quality: QualityRequest = "auto"
    loras: tuple[ModelSource, ...] = ()
    controlnet: Optional[ModelSource] = None

    @classmethod
    def from_config(cls, cfg: NodeConfig) -> "SizingOptions":
        """Take the sizing-relevant fields of a node.yaml."""
        return cls(model=cfg.model, quality=cfg.quality, loras=tuple(cfg.loras),
                   controlnet=cfg.controlnet)


class ModelPlan(_Model):
    """The files to install on a node and why; JSON-serialisable with stable keys."""

    model: ModelName
    quality: Quality
    quality_requested: QualityRequest
    verdict: Verdict
    files: tuple[ModelFile, ...]
    download_bytes: int
    peak_bytes: int
    overhead_bytes: int
    budget_bytes: int
    budget_source: str
    memory_bytes: int
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    disk_free_bytes: int
    disk_needed_bytes: int
    disk_ok: bool
    disk_shortfall_bytes: int

    @property
    def gated_files(self) -> tuple[ModelFile, ...]:
        """Return the files whose Hub licence must be accepted (and a token given)."""
        return tuple(entry for entry in self.files if entry.gated)


class _Candidate(_Model):
    quality: Quality
    files: tuple[ModelFile, ...]
    weights_bytes: int
    peak_bytes: int
    verdict: Verdict


def gpu_budget(facts: NodeFacts) -> tuple[int, str]:
    """Return the memory the GPU may use on this node (bytes) and where that figure comes from."""
    memory = facts.memory_bytes
    if facts.platform == "macos":
        if facts.gpu_wired_limit_mb > 0:
            wired = facts.gpu_wired_limit_mb * WIRED_LIMIT_UNIT_BYTES
            source = f"raised GPU wired limit, iogpu.wired_limit_mb = {facts.gpu_wired_limit_mb}"
            if wired > memory:
                return memory, source + f", capped at the {_memory_text(memory)} of memory"
            return wired, source
        fraction = _metal_fraction(memory)
        size = "up to" if memory <= METAL_SMALL_MACHINE_MAX_BYTES else "above"
        return (int(memory * fraction),
                f"Metal's default working set, {fraction} of {_memory_text(memory)} "
                f"on machines {size} {gib(METAL_SMALL_MACHINE_MAX_BYTES):.0f} GiB")
    if facts.gpus:
        gpu = facts.gpus[0]
        others = f", the first of {len(facts.gpus)} GPUs" if len(facts.gpus) > 1 else ""
        return gpu.memory_bytes, f"memory of GPU {gpu.name}{others}"
    return (int(memory * CPU_RAM_FRACTION),
            f"no NVIDIA GPU, CPU run: {CPU_RAM_FRACTION} of {_memory_text(memory)} of RAM")


def choose_models(facts: NodeFacts, catalog: Catalog, options: SizingOptions) -> ModelPlan:
    """Choose the files for ``options.model`` that fit ``facts``; refuse with numbers if none do."""
    estimates = catalog.sizing
    budget, budget_source = gpu_budget(facts)
    memory = facts.memory_bytes
    overhead = estimates.runtime_overhead_bytes
    extras, warnings = _extra_files(options, estimates)
    extras_bytes = sum(entry.bytes for entry in extras)

    candidates: dict[str, _Candidate] = {}
    for quality in QUALITIES:
        files = catalog.tier_files(options.model, quality) + extras
        weights = sum(entry.bytes for entry in files)
        peak = weights + overhead
        candidates[quality] = _Candidate(
            quality=quality, files=files, weights_bytes=weights, peak_bytes=peak,
            verdict=_verdict(peak, budget, memory, estimates.os_reserve_bytes),
        )

    smallest = min(candidates.values(), key=lambda c: c.weights_bytes - extras_bytes)
    smallest_weights = smallest.weights_bytes - extras_bytes
    if smallest_weights > budget:
        raise SizingError(
            f"need {format_bytes(smallest_weights)} of GPU memory for the smallest plan "
            f"({smallest.quality}), this node has {format_bytes(budget)} budget "
            f"({format_bytes(memory)} memory = {_memory_text(memory)}; {budget_source})",
            _more_memory_hint(facts, smallest_weights),
        )

    auto_choice, auto_reasons = _auto_choice(candidates, estimates, budget)
    reserve = estimates.os_reserve_bytes
    reasons = [f"GPU budget {format_bytes(budget)}: {budget_source}."]
    if options.quality == "auto":
        chosen = auto_choice
        reasons.append(_plan_sentence(chosen, overhead, budget))
        reasons.extend(auto_reasons)
        if "bf16" not in estimates.auto_qualities:
            reasons.append(_bf16_sentence(candidates, extras_bytes))
        if chosen.verdict != "green":
            lead = f"no quality fits the GPU budget; using the smallest ({chosen.quality}): "
            warnings.append(_pressure_warning(facts, options.model, chosen, budget, reserve, lead))
    else:
        chosen = candidates[options.quality]
        asked = f"{chosen.quality} is what the config asks for (quality: {chosen.quality})"
        reasons.append(_plan_sentence(chosen, overhead, budget))
        if chosen.quality != auto_choice.quality:
            reasons.append(f"{asked}; auto would choose {auto_choice.quality} "
                           f"({auto_choice.verdict}) here.")
        else:
            reasons.append(f"{asked}, and also what auto would choose.")
        if chosen.verdict != "green":
            lead = f"quality: {chosen.quality} was asked for and is honoured, but "
            warnings.append(_pressure_warning(facts, options.model, chosen, budget, reserve, lead))
        if chosen.weights_bytes > budget:
            warnings.append(f"the {chosen.quality} weights alone "
                            f"({format_bytes(chosen.weights_bytes)}) exceed the "
                            f"{format_bytes(budget)} GPU budget, before any runtime overhead.")

    if facts.platform == "linux" and not facts.gpus:
        warnings.append("no NVIDIA GPU found: ComfyUI will run on the CPU, "
                        "which takes many minutes per 1024x1024 image.")

    download = sum(entry.bytes for entry in chosen.files)
    disk_needed = (download + round(download * estimates.disk_margin_fraction)
                   + estimates.disk_margin_bytes)
    shortfall = max(0, disk_needed - facts.disk_free_bytes)
    if shortfall:
        warnings.append(
            f"not enough disk on {facts.disk_path}: needs {format_bytes(disk_needed)} free "
            f"({format_bytes(download)} download + {estimates.disk_margin_fraction:.0%} "
            f"+ {format_bytes(estimates.disk_margin_bytes)} for the venv, torch and ComfyUI), "
            f"has {format_bytes(facts.disk_free_bytes)}: {format_bytes(shortfall)} short."
        )

    return ModelPlan(
        model=options.model,
        quality=chosen.quality,
        quality_requested=options.quality,
        verdict=chosen.verdict,
        files=chosen.files,
        download_bytes=download,
        peak_bytes=chosen.peak_bytes,
        overhead_bytes=overhead,
        budget_bytes=budget,
        budget_source=budget_source,
        memory_bytes=memory,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        disk_free_bytes=facts.disk_free_bytes,
        disk_needed_bytes=disk_needed,
        disk_ok=shortfall == 0,
        disk_shortfall_bytes=shortfall,
    )


# ------------------------------------------------------------------------------ pieces


def _metal_fraction(memory: int) -> Fraction:
    if memory <= METAL_SMALL_MACHINE_MAX_BYTES:
        return METAL_SMALL_MACHINE_FRACTION
    return METAL_LARGE_MACHINE_FRACTION


def _verdict(peak: int, budget: int, memory: int, reserve: int) -> Verdict:
    if peak <= budget:
        return "green"
    if peak <= memory - reserve:
        return "yellow"
    return "red"


def _auto_choice(candidates: dict[str, _Candidate], estimates: SizingEstimates,
                 budget: int) -> tuple[_Candidate, list[str]]:
    """Return the highest automatic quality that is green (else the smallest) and why."""
    allowed = [candidates[quality] for quality in estimates.auto_qualities]
    green = [c for c in allowed if c.verdict == "green"]
    if not green:
        chosen = allowed[0]
        return chosen, [f"auto: not even {chosen.quality} fits the {format_bytes(budget)} "
                        f"budget (peak {format_bytes(chosen.peak_bytes)}); {chosen.quality} is "
                        "the smallest quality, so it is used."]
    chosen = green[-1]
    index = allowed.index(chosen)
    if index + 1 < len(allowed):
        above = allowed[index + 1]
        why = (f"auto: {chosen.quality} is the highest quality that fits; {above.quality} would "
               f"peak at {format_bytes(above.peak_bytes)}, over the {format_bytes(budget)} budget.")
    else:
        why = f"auto: {chosen.quality} is the highest automatic quality, and it fits."
    return chosen, [why]


def _plan_sentence(chosen: _Candidate, overhead: int, budget: int) -> str:
    parts = " + ".join(f"{_label(entry)} {format_bytes(entry.bytes)}" for entry in chosen.files)
    if chosen.verdict == "green":
        fit = f"within the {format_bytes(budget)} budget: green"
    else:
        fit = f"over the {format_bytes(budget)} budget: {chosen.verdict}"
    return (f"{chosen.quality}: {parts} = {format_bytes(chosen.weights_bytes)} of weights; "
            f"with {format_bytes(overhead)} runtime overhead (ComfyUI, torch, activations at "
            f"1024x1024, fp32 VAE decode) the estimated peak is {format_bytes(chosen.peak_bytes)}, "
            f"{fit}.")


def _bf16_sentence(candidates: dict[str, _Candidate], extras_bytes: int) -> str:
    bf16 = candidates["bf16"].weights_bytes - extras_bytes
    q8 = candidates["q8"].weights_bytes - extras_bytes
    return (f"auto never chooses bf16: it is a {format_bytes(bf16)} download against "
            f"{format_bytes(q8)} for q8 ({bf16 / q8:.1f}x) for a quality difference Q8_0 "
            "barely shows; ask for it with quality: bf16.")


def _pressure_warning(facts: NodeFacts, model: str, chosen: _Candidate, budget: int,
                      reserve: int, lead: str) -> str:
    peak = format_bytes(chosen.peak_bytes)
    usable = format_bytes(max(0, facts.memory_bytes - reserve))
    if chosen.verdict == "yellow":
        if facts.platform == "linux" and facts.gpus:
            what = "ComfyUI will keep part of the model in system RAM and run slower"
        else:
            what = "expect memory pressure (yellow) and some swap"
        text = (f"{lead}its estimated peak {peak} exceeds the {format_bytes(budget)} GPU budget "
                f"(it fits the {usable} of memory left after a {format_bytes(reserve)} reserve): "
                f"{what}")
    else:
        text = (f"{lead}its estimated peak {peak} exceeds the {usable} of memory left after a "
                f"{format_bytes(reserve)} reserve ({_memory_text(facts.memory_bytes)} in all): "
                "expect heavy swap (red) and very slow images")
    if facts.platform == "macos":
        text += f"; on an M4 Pro the seed measured {SEED_BENCHMARK[model][chosen.verdict]}"
    return text + "."


def _extra_files(options: SizingOptions,
                 estimates: SizingEstimates) -> tuple[tuple[ModelFile, ...], list[str]]:
    """Turn the user's LoRAs and ControlNet into ModelFiles; warn where a size is estimated."""
    wanted: list[tuple[str, str, ModelSource, int]] = [
        (f"loras[{index}]", "lora", source, estimates.lora_estimate_bytes)
        for index, source in enumerate(options.loras)
    ]
    if options.controlnet is not None:
        wanted.append(("controlnet", "controlnet", options.controlnet,
                       estimates.controlnet_estimate_bytes))
    files: list[ModelFile] = []
    warnings: list[str] = []
    for field, role, source, estimate in wanted:
        file = str(source.file)
        origin = source.url or f"{source.repo}/{file}"
        file_format = format_of(file)
        if file_format is None:
            raise ConfigError(
                f"{field}.file: {file!r} is not a .safetensors or .gguf file",
                "provision installs Flux LoRAs and ControlNets as .safetensors (or .gguf)"
                + ("; with url:, set file: to the name to save it as" if source.url else ""),
            )
        if source.size_gb is not None:
            size, bytes_source = round(source.size_gb * 1e9), "user"
        else:
            size, bytes_source = estimate, "estimate"
            warnings.append(
                f"{field} {origin}: size not given, counted as an estimated "
                f"{format_bytes(estimate)}; set size_gb for an exact plan."
            )
        host = urllib.parse.urlsplit(source.url).netloc if source.url else None
        files.append(ModelFile(
            id=f"{role}:{origin}", role=role, repo=host or str(source.repo), url=source.url,
            entry=field, file=file, revision=source.revision, sha256=source.sha256, bytes=size,
            bytes_source=bytes_source, folder=_folder(role), format=file_format,
        ))
    seen: dict[str, ModelFile] = {}
    for entry in files:
        other = seen.get(entry.target)
        if other is not None and _origin(other) != _origin(entry):
            warnings.append(f"{_origin(other)} and {_origin(entry)} would both "
                            f"be installed as models/{entry.target}; rename one of them.")
        seen[entry.target] = entry
    return tuple(files), warnings


def _origin(entry: ModelFile) -> str:
    return entry.url or f"{entry.repo}/{entry.file}"


def _folder(role: str) -> str:
    return {"lora": "loras", "controlnet": "controlnet"}[role]


def _label(entry: ModelFile) -> str:
    label = _ROLE_LABELS[entry.role]
    if entry.role in ("lora", "controlnet"):
        name = PurePosixPath(entry.file).name
        return f"{label} {name}" + (" (estimated)" if entry.bytes_source == "estimate" else "")
    return f"{label} {entry.quant}" if entry.quant else label


def _memory_text(n_bytes: int) -> str:
    value = gib(n_bytes)
    return f"{value:.0f} GiB" if abs(value - round(value)) < 0.05 else f"{value:.1f} GiB"


def smallest_mac_tier(weights: int) -> int | None:
    """Return the smallest memory size (GB) Macs are sold with whose default Metal working
    set holds ``weights`` bytes, or None when even the largest does not."""
    for tier in MAC_MEMORY_TIERS_GIB:
        memory = tier * GIB
        if memory * _metal_fraction(memory) >= weights:
            return tier
    return None


def _more_memory_hint(facts: NodeFacts, weights: int) -> str:
    if facts.platform == "macos":
        needed = weights / METAL_SMALL_MACHINE_FRACTION
        if needed > METAL_SMALL_MACHINE_MAX_BYTES:
            needed = weights / METAL_LARGE_MACHINE_FRACTION
        tier = smallest_mac_tier(weights)
        size = f"a {tier} GB Mac or larger, " if tier else ""
        return (f"use a Mac with at least {format_bytes(needed)} of memory ({size}so that the "
                "smallest plan's weights fit Metal's default working set)")
    if facts.gpus:
        return f"use a GPU with at least {format_bytes(weights)} of memory"
    return f"use a node with at least {format_bytes(weights / CPU_RAM_FRACTION)} of RAM"
