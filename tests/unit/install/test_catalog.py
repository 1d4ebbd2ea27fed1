"""The model catalog (playbooks/models.yaml) loads, and every tier resolves to the right files."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
import yaml

from provisioner.core.config import NodeConfig
from provisioner.core.errors import ConfigError
from provisioner.install.catalog import (
    MODEL_NAMES,
    QUALITIES,
    ModelFile,
    default_catalog_path,
    load_catalog,
)

CATALOG = load_catalog()

# (model, quality) -> (UNet file, T5 file, VAE repo, total GB as the Hub lists them)
TIERS = [
    ("dev", "q4", "flux1-dev-Q4_K_S.gguf", "t5-v1_1-xxl-encoder-Q4_K_M.gguf", 10.291),
    ("dev", "q5", "flux1-dev-Q5_K_S.gguf", "t5-v1_1-xxl-encoder-Q5_K_M.gguf", 12.261),
    ("dev", "q6", "flux1-dev-Q6_K.gguf", "t5-v1_1-xxl-encoder-Q6_K.gguf", 14.351),
    ("dev", "q8", "flux1-dev-Q8_0.gguf", "t5-v1_1-xxl-encoder-Q8_0.gguf", 18.341),
    ("dev", "bf16", "flux1-dev.safetensors", "t5xxl_fp16.safetensors", 34.171),
    ("schnell", "q4", "flux1-schnell-Q4_K_S.gguf", "t5-v1_1-xxl-encoder-Q4_K_M.gguf", 10.261),
    ("schnell", "q5", "flux1-schnell-Q5_K_S.gguf", "t5-v1_1-xxl-encoder-Q5_K_M.gguf", 12.231),
    ("schnell", "q6", "flux1-schnell-Q6_K.gguf", "t5-v1_1-xxl-encoder-Q6_K.gguf", 14.321),
    ("schnell", "q8", "flux1-schnell-Q8_0.gguf", "t5-v1_1-xxl-encoder-Q8_0.gguf", 18.341),
    ("schnell", "bf16", "flux1-schnell.safetensors", "t5xxl_fp16.safetensors", 34.171),
]


@pytest.mark.parametrize("model, quality, unet, t5, total_gb", TIERS)
def test_every_tier_resolves_to_its_files_in_comfyui_folders(model, quality, unet, t5, total_gb):
    files = CATALOG.tier_files(model, quality)
    assert [f.role for f in files] == ["unet", "t5", "clip_l", "vae"]
    assert [f.target for f in files] == [
        f"unet/{unet}", f"clip/{t5}", "clip/clip_l.safetensors", "vae/ae.safetensors",
    ]
    assert files[3].repo == f"black-forest-labs/FLUX.1-{model}"
    assert sum(f.bytes for f in files) == round(total_gb * 1e9)
    expected_format = "safetensors" if quality == "bf16" else "gguf"
    assert {files[0].format, files[1].format} == {expected_format}


def test_tier_table_covers_every_model_and_quality():
    assert {(m, q) for m, q, *_ in TIERS} == {(m, q) for m in MODEL_NAMES for q in QUALITIES}


def test_sizes_are_the_hubs_rounded_listing_until_preflight():
    q8 = CATALOG.file("flux1-dev-q8_0")
    assert q8.bytes == 12_700_000_000
    assert q8.bytes_source == "listing" and q8.approximate
    exact = q8.model_copy(update={"bytes": 12_702_607_008, "bytes_source": "hub"})
    assert not exact.approximate


@pytest.mark.parametrize("key", sorted(CATALOG.files))
def test_gated_files_say_where_to_accept_the_licence(key):
    entry = CATALOG.files[key]
    assert entry.gated == entry.repo.startswith("black-forest-labs/")
    if entry.gated:
        assert entry.licence_url == f"https://huggingface.co/{entry.repo}"
    assert entry.licence


def test_no_fp8_file_is_offered():
    assert not [f.file for f in CATALOG.files.values() if "fp8" in f.file.lower()]


def test_quality_and_model_names_match_node_yaml():
    fields = NodeConfig.model_fields
    assert get_args(fields["quality"].annotation) == ("auto",) + QUALITIES
    assert get_args(fields["model"].annotation) == MODEL_NAMES


def test_auto_never_includes_bf16_and_runs_smallest_first():
    assert CATALOG.sizing.auto_qualities == ("q4", "q5", "q6", "q8")


def test_default_path_is_the_shipped_models_yaml():
    assert default_catalog_path().name == "models.yaml"
    assert load_catalog(default_catalog_path()) == CATALOG


def test_a_file_may_pin_its_sha256():
    entry = ModelFile(id="x", role="vae", repo="a/b", file="ae.safetensors", size_gb=0.335,
                      folder="vae", format="safetensors", sha256="a" * 64)
    assert entry.bytes == 335_000_000 and entry.sha256 == "a" * 64


# ------------------------------------------------------------------ broken catalogs


def _raw() -> dict:
    return yaml.safe_load(default_catalog_path().read_text())


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _set(data: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    return data


BROKEN = [
    ("models.dev.tiers.q8.unet", "nope", "models.dev.tiers.q8.unet: no file 'nope'"),
    ("models.dev.tiers.q8.unet", "t5-q8_0", "has role 't5', not 'unet'"),
    ("models.dev.vae", "clip_l", "has role 'clip_l', not 'vae'"),
    ("files.t5-q8_0.folder", "unet", "files.t5-q8_0: a t5 file belongs in folder 'clip'"),
    ("files.vae-dev.licence_url", None, "a gated file needs licence_url"),
    ("files.clip_l.sha256", "not-a-hash", "files.clip_l.sha256"),
    ("files.clip_l.format", "gguf", "does not match the file name"),
    ("files.clip_l.size_gb", -1, "size_gb must be a positive number"),
    ("sizing.auto_qualities", ["q8", "q4"], "smallest first"),
]


@pytest.mark.parametrize("dotted, value, message", BROKEN)
def test_a_broken_catalog_names_the_field(tmp_path, dotted, value, message):
    path = _write(tmp_path, _set(_raw(), dotted, value))
    with pytest.raises(ConfigError) as caught:
        load_catalog(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_a_missing_tier_is_an_error(tmp_path):
    data = _raw()
    del data["models"]["schnell"]["tiers"]["q6"]
    with pytest.raises(ConfigError, match="models.schnell.tiers: missing tiers: q6"):
        load_catalog(_write(tmp_path, data))


def test_a_key_written_twice_is_an_error(tmp_path):
    text = default_catalog_path().read_text()
    text = text.replace("  os_reserve_gb:", "  runtime_overhead_gb: 1.0\n  os_reserve_gb:", 1)
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="'runtime_overhead_gb' appears twice"):
        load_catalog(path)


def test_a_missing_catalog_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the model catalog"):
        load_catalog(tmp_path / "nope.yaml")
