"""choose_models: which quality each node gets, its verdict, and why (docs/sizing.md)."""

from __future__ import annotations

import json

import pytest

from provisioner.core.config import ModelSource, NodeConfig
from provisioner.core.errors import ConfigError, SizingError
from provisioner.install.catalog import load_catalog
from provisioner.install.sizing import ModelPlan, SizingOptions, choose_models, gpu_budget
from provisioner.node.facts.model import Gpu, NodeFacts

CATALOG = load_catalog()
GIB = 1024**3
PLENTY_OF_DISK = 2000 * 10**9


def mac(memory_gib: float, **changes) -> NodeFacts:
    fields = dict(
        platform="macos", os_name="macOS", os_version="15.5", arch="arm64", chip="Apple M4 Pro",
        cpu_count=14, memory_bytes=int(memory_gib * GIB), disk_free_bytes=PLENTY_OF_DISK,
        disk_path="/Users/admin", home="/Users/admin", user="admin", uid=501,
    )
    fields.update(changes)
    return NodeFacts(**fields)


def linux(memory_gib: float, gpus_gib: tuple[float, ...] = (), **changes) -> NodeFacts:
    fields = dict(
        platform="linux", os_name="Debian GNU/Linux 12 (bookworm)", os_version="12",
        arch="x86_64", chip="AMD EPYC", cpu_count=32, memory_bytes=int(memory_gib * GIB),
        gpus=tuple(Gpu(name=f"NVIDIA GPU {i}", memory_bytes=int(g * GIB))
                   for i, g in enumerate(gpus_gib)),
        disk_free_bytes=PLENTY_OF_DISK, disk_path="/home/ubuntu", home="/home/ubuntu",
        user="ubuntu", uid=1000,
    )
    fields.update(changes)
    return NodeFacts(**fields)


def plan(facts: NodeFacts, model: str = "dev", quality: str = "auto", **options) -> ModelPlan:
    return choose_models(facts, CATALOG, SizingOptions(model=model, quality=quality, **options))


def unet(p: ModelPlan) -> str:
    return next(f.file for f in p.files if f.role == "unet")


# ------------------------------------------------------------------ the seed's benchmark


SEED = [
    # FACTS.md, "The seed's benchmark table" (M4 Pro, 1024x1024)
    (16, "auto", "q4", "red"),
    (32, "auto", "q4", "yellow"),
    (64, "auto", "q8", "green"),  # recommended on 64 GB: Q8_0
    (64, "q4", "q4", "green"),
    (64, "bf16", "bf16", "green"),
]


@pytest.mark.parametrize("memory_gib, asked, quality, verdict", SEED)
def test_reproduces_the_seed_benchmark(memory_gib, asked, quality, verdict):
    result = plan(mac(memory_gib), quality=asked)
    assert (result.quality, result.verdict) == (quality, verdict)


# ------------------------------------------------------------------ auto, by memory size


AUTO = [
    (16, "q4", "red"),
    (18, "q4", "red"),
    (24, "q4", "red"),
    (32, "q4", "yellow"),
    (36, "q4", "green"),
    (48, "q8", "green"),
    (64, "q8", "green"),
    (96, "q8", "green"),
    (128, "q8", "green"),
]


@pytest.mark.parametrize("model", ["dev", "schnell"])
@pytest.mark.parametrize("memory_gib, quality, verdict", AUTO)
def test_auto_quality_by_memory(model, memory_gib, quality, verdict):
    result = plan(mac(memory_gib), model=model)
    assert (result.quality, result.verdict) == (quality, verdict)
    assert result.model == model and result.quality_requested == "auto"
    assert unet(result).startswith(f"flux1-{model}-")
    assert result.memory_bytes == memory_gib * GIB


@pytest.mark.parametrize("model, weights, memory_needed", [
    ("dev", "10.29 GB", "15.44 GB"),  # 10.291 GB / (2/3)
    ("schnell", "10.26 GB", "15.39 GB"),
])
def test_8gb_is_refused_with_the_numbers(model, weights, memory_needed):
    with pytest.raises(SizingError) as caught:
        plan(mac(8), model=model)
    message = str(caught.value)
    assert f"need {weights} of GPU memory for the smallest plan (q4)" in message
    assert "this node has 5.73 GB budget (8.59 GB memory" in message
    assert f"at least {memory_needed} of memory (a 16 GB Mac or larger" in caught.value.hint


@pytest.mark.parametrize("asked", ["q4", "q5", "q6", "q8", "bf16"])
def test_8gb_is_refused_whatever_quality_is_asked(asked):
    with pytest.raises(SizingError):
        plan(mac(8), quality=asked)


def test_16gb_is_not_refused_but_warns_to_expect_swap_with_the_seeds_times():
    result = plan(mac(16))
    (warning,) = result.warnings
    assert "expect heavy swap" in warning and "24.29 GB" in warning
    assert "760 s" in warning and "~95 s" in warning
    schnell = plan(mac(16), model="schnell")
    assert "~200 s" in schnell.warnings[0] and "~20 s" in schnell.warnings[0]


def test_32gb_yellow_warns_of_some_swap():
    (warning,) = plan(mac(32)).warnings
    assert "exceeds the 22.91 GB GPU budget" in warning and "~180 s" in warning


def test_auto_explains_its_choice_with_numbers():
    result = plan(mac(36))
    text = " ".join(result.reasons)
    assert "GPU budget 25.77 GB: Metal's default working set, 2/3 of 36 GiB" in text
    assert "estimated peak is 24.29 GB" in text
    assert "q5 would peak at 26.26 GB, over the 25.77 GB budget" in text
    assert "auto never chooses bf16" in text and "34.17 GB" in text and "18.34 GB" in text


def test_metal_budget_is_two_thirds_up_to_36gib_and_three_quarters_above():
    assert gpu_budget(mac(36))[0] == 36 * GIB * 2 // 3
    assert gpu_budget(mac(48))[0] == 48 * GIB * 3 // 4
    assert plan(mac(64)).budget_bytes == 48 * GIB


# ------------------------------------------------------------------ explicit quality


OVERRIDES = [
    (16, "q4", "red"), (16, "q5", "red"), (16, "q6", "red"), (16, "q8", "red"), (16, "bf16", "red"),
    (64, "q4", "green"), (64, "q5", "green"), (64, "q6", "green"), (64, "q8", "green"),
    (64, "bf16", "green"),
]


@pytest.mark.parametrize("memory_gib, asked, verdict", OVERRIDES)
def test_an_explicit_quality_is_honoured(memory_gib, asked, verdict):
    result = plan(mac(memory_gib), quality=asked)
    assert (result.quality, result.quality_requested, result.verdict) == (asked, asked, verdict)
    assert any(f"quality: {asked}" in reason for reason in result.reasons)
    if verdict == "green":
        assert result.warnings == ()
    else:
        assert f"quality: {asked} was asked for and is honoured" in result.warnings[0]
        assert f"estimated peak {result.peak_bytes / 1e9:.2f} GB" in result.warnings[0]


def test_bf16_uses_the_safetensors_unet_and_fp16_t5():
    result = plan(mac(64), quality="bf16")
    assert [f.file for f in result.files] == [
        "flux1-dev.safetensors", "t5xxl_fp16.safetensors", "clip_l.safetensors", "ae.safetensors",
    ]
    assert {f.repo for f in result.gated_files} == {"black-forest-labs/FLUX.1-dev"}


def test_an_override_whose_weights_exceed_the_budget_says_so():
    result = plan(mac(16), quality="bf16")
    assert "the bf16 weights alone (34.17 GB) exceed the 11.45 GB GPU budget" in result.warnings[1]


def test_an_override_names_what_auto_would_choose():
    result = plan(mac(64), quality="q5")
    assert "auto would choose q8 (green)" in " ".join(result.reasons)


# ------------------------------------------------------------------ raised GPU wired limit


def test_a_raised_wired_limit_replaces_the_default_budget():
    default = plan(mac(32))
    raised = plan(mac(32, gpu_wired_limit_mb=28 * 1024))
    assert (default.quality, default.verdict) == ("q4", "yellow")
    assert (raised.quality, raised.verdict) == ("q6", "green")
    assert raised.budget_bytes == 28 * GIB
    assert "iogpu.wired_limit_mb = 28672" in raised.budget_source


def test_a_lowered_wired_limit_can_refuse():
    with pytest.raises(SizingError, match="this node has 8.59 GB budget"):
        plan(mac(16, gpu_wired_limit_mb=8192))


def test_a_wired_limit_above_memory_is_capped_at_memory():
    budget, source = gpu_budget(mac(16, gpu_wired_limit_mb=32 * 1024))
    assert budget == 16 * GIB and "capped" in source


# ------------------------------------------------------------------ LoRAs and ControlNet


def test_loras_and_controlnet_with_sizes_count_against_budget_and_download():
    base = plan(mac(64))
    extras = plan(mac(64),
                  loras=(ModelSource(repo="XLabs-AI/flux-lora-collection",
                                 file="realism_lora.safetensors", size_gb=0.09),),
                  controlnet=ModelSource(repo="XLabs-AI/flux-controlnet-canny-v3",
                                     file="flux-canny-controlnet-v3.safetensors", size_gb=1.49))
    added = 90_000_000 + 1_490_000_000
    assert extras.download_bytes == base.download_bytes + added
    assert extras.peak_bytes == base.peak_bytes + added
    assert [(f.role, f.folder, f.bytes_source) for f in extras.files[4:]] == [
        ("lora", "loras", "user"), ("controlnet", "controlnet", "user"),
    ]
    assert extras.warnings == ()


def test_extras_without_a_size_are_estimated_with_a_warning():
    base = plan(mac(64))
    extras = plan(mac(64),
                  loras=(ModelSource(repo="a/loras", file="one.safetensors"),
                         ModelSource(repo="a/loras", file="two.safetensors")),
                  controlnet=ModelSource(repo="a/cn", file="canny.safetensors"))
    estimated = 2 * 300_000_000 + 3_600_000_000
    assert extras.peak_bytes == base.peak_bytes + estimated
    assert extras.download_bytes == base.download_bytes + estimated
    assert len(extras.warnings) == 3
    assert all("estimated" in warning and "size_gb" in warning for warning in extras.warnings)
    assert {f.bytes_source for f in extras.files[4:]} == {"estimate"}


def test_extras_can_push_auto_down_a_tier():
    controlnet = ModelSource(repo="a/cn", file="big.safetensors", size_gb=7.0)
    assert plan(mac(48)).quality == "q8"
    pushed = plan(mac(48), controlnet=controlnet)
    assert (pushed.quality, pushed.verdict) == ("q6", "green")
    assert "q8 would peak at 39.34 GB, over the 38.65 GB budget" in " ".join(pushed.reasons)


def test_extras_do_not_make_16gb_refused():
    result = plan(mac(16), controlnet=ModelSource(repo="a/cn", file="cn.safetensors"))
    assert (result.quality, result.verdict) == ("q4", "red")


def test_an_extra_that_is_not_safetensors_or_gguf_is_a_config_error():
    with pytest.raises(ConfigError, match=r"loras\[0\].file"):
        plan(mac(64), loras=(ModelSource(repo="a/b", file="lora.ckpt"),))


SHA = "0123456789abcdef" * 4


def test_a_url_lora_counts_at_its_size_and_keeps_its_url_and_sha256():
    base = plan(mac(64))
    lora = ModelSource(url="https://cdn.example.com/l/my-lora.safetensors?dl=1", sha256=SHA,
                       size_gb=0.2)
    extras = plan(mac(64), loras=(lora,))
    entry = extras.files[-1]
    assert extras.download_bytes == base.download_bytes + 200_000_000 and extras.warnings == ()
    assert (entry.role, entry.folder, entry.file, entry.url, entry.sha256, entry.entry) == (
        "lora", "loras", "my-lora.safetensors", lora.url, SHA, "loras[0]")
    assert entry.repo == "cdn.example.com" and entry.bytes_source == "user" and entry.approximate
    assert entry.id == f"lora:{lora.url}"


def test_a_url_controlnet_without_a_size_is_estimated_with_a_warning_naming_its_url():
    result = plan(mac(64), controlnet=ModelSource(url="https://e.com/cn.safetensors", sha256=SHA))
    assert result.files[-1].bytes == 3_600_000_000 and result.files[-1].bytes_source == "estimate"
    assert result.warnings == ("controlnet https://e.com/cn.safetensors: size not given, counted as "
                               "an estimated 3.60 GB; set size_gb for an exact plan.",)


def test_a_url_file_with_a_name_that_is_no_model_asks_for_file():
    with pytest.raises(ConfigError, match=r"loras\[0\].file: 'download'") as caught:
        plan(mac(64), loras=(ModelSource(url="https://e.com/download", sha256=SHA),))
    assert "set file:" in caught.value.hint


def test_a_hub_file_and_a_url_file_of_one_name_are_warned_about():
    result = plan(mac(64), loras=(ModelSource(repo="a/b", file="x/l.safetensors", size_gb=0.1),
                                  ModelSource(url="https://e.com/l.safetensors", sha256=SHA,
                                              size_gb=0.1)))
    assert result.warnings == ("a/b/x/l.safetensors and https://e.com/l.safetensors would both be "
                               "installed as models/loras/l.safetensors; rename one of them.",)


# ------------------------------------------------------------------ disk


def test_disk_shortfall_returns_the_plan_with_the_amount():
    result = plan(mac(64, disk_free_bytes=20_000_000_000))
    assert result.quality == "q8" and result.download_bytes == 18_341_000_000
    # 18.341 GB + 10% + 5 GB
    assert result.disk_needed_bytes == 25_175_100_000
    assert (result.disk_ok, result.disk_shortfall_bytes) == (False, 5_175_100_000)
    (warning,) = result.warnings
    assert "5.18 GB short" in warning and "/Users/admin" in warning


@pytest.mark.parametrize("free, ok, shortfall", [
    (25_175_100_000, True, 0),
    (25_175_099_999, False, 1),
    (PLENTY_OF_DISK, True, 0),
])
def test_disk_boundary(free, ok, shortfall):
    result = plan(mac(64, disk_free_bytes=free))
    assert (result.disk_ok, result.disk_shortfall_bytes) == (ok, shortfall)
    assert result.disk_free_bytes == free


# ------------------------------------------------------------------ Linux


LINUX = [
    # (RAM GiB, GPU GiB..., quality, verdict)
    (64, (24,), "q4", "green"),  # RTX 4090: budget is the GPU's 24 GiB
    (128, (80,), "q8", "green"),  # A100 80 GB
    (128, (24, 80), "q4", "green"),  # the first GPU counts
    (64, (), "q8", "green"),  # CPU: 3/4 of RAM
    (16, (), "q4", "red"),
]


@pytest.mark.parametrize("memory_gib, gpus, quality, verdict", LINUX)
def test_linux_budget_is_the_first_gpu_or_three_quarters_of_ram(memory_gib, gpus, quality, verdict):
    result = plan(linux(memory_gib, gpus))
    assert (result.quality, result.verdict) == (quality, verdict)
    if gpus:
        assert result.budget_bytes == gpus[0] * GIB
        assert "GPU" in result.budget_source
    else:
        assert result.budget_bytes == memory_gib * GIB * 3 // 4
        assert any("no NVIDIA GPU" in warning for warning in result.warnings)


def test_linux_gpu_too_small_for_q4_is_refused():
    with pytest.raises(SizingError) as caught:
        plan(linux(64, (8,)))
    assert "this node has 8.59 GB budget" in str(caught.value)
    assert "GPU with at least 10.29 GB" in caught.value.hint


def test_linux_yellow_means_offloading_to_ram():
    result = plan(linux(64, (24,)), quality="q8")
    assert result.verdict == "yellow"
    assert "system RAM" in result.warnings[0] and "seed" not in result.warnings[0]


# ------------------------------------------------------------------ the plan as data


PLAN_KEYS = [
    "model", "quality", "quality_requested", "verdict", "files", "download_bytes", "peak_bytes",
    "overhead_bytes", "budget_bytes", "budget_source", "memory_bytes", "reasons", "warnings",
    "disk_free_bytes", "disk_needed_bytes", "disk_ok", "disk_shortfall_bytes",
]


def test_the_plan_is_json_with_stable_keys_and_round_trips():
    result = plan(mac(64), loras=(ModelSource(repo="a/b", file="l.safetensors"),))
    data = json.loads(result.model_dump_json())
    assert list(data) == PLAN_KEYS
    assert data["files"][0]["file"] == "flux1-dev-Q8_0.gguf"
    assert ModelPlan.model_validate_json(result.model_dump_json()) == result


def test_peak_is_weights_plus_the_calibrated_overhead():
    result = plan(mac(64))
    assert result.overhead_bytes == 14_000_000_000
    assert result.peak_bytes == result.download_bytes + result.overhead_bytes


def test_options_from_config():
    cfg = NodeConfig(host="203.0.113.10", model="schnell", quality="q6",
                     loras=[{"repo": "a/b", "file": "l.safetensors", "size_gb": 0.2}],
                     controlnet={"repo": "a/c", "file": "c.safetensors"})
    options = SizingOptions.from_config(cfg)
    assert (options.model, options.quality) == ("schnell", "q6")
    assert options.loras == (cfg.loras[0],) and options.controlnet == cfg.controlnet
    assert SizingOptions.from_config(NodeConfig(host="h")) == SizingOptions()


@pytest.mark.parametrize("weights, tier", [
    (10_290_000_000, 16),   # the smallest dev plan: 16 GiB x 2/3 = 11.45 GB holds it
    (11_500_000_000, 18),   # just over what 16 GiB gives Metal
    (17_000_000_000, 24),
    (25_000_000_000, 36),   # 36 GiB x 2/3 = 25.77 GB
    (26_000_000_000, 48),   # above 36 GiB the working set is 3/4
    (400_000_000_000, 512),
    (500_000_000_000, None),
])
def test_the_smallest_mac_that_holds_the_weights_is_a_size_macs_are_sold_with(weights, tier):
    from provisioner.install.sizing import smallest_mac_tier

    assert smallest_mac_tier(weights) == tier
