"""The model catalog: playbooks/models.yaml as typed, frozen data.

The catalog says which files make up each Flux.1 model at each quality, where ComfyUI wants
them, and the estimates sizing uses. Sizes in the YAML are the Hub's rounded listings
(``size_gb``); exact bytes and sha256 are filled in from the Hub at preflight.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Optional, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..core.errors import ConfigError
from ..core.resources import data_file
from ..core.units import GB

ModelName = Literal["dev", "schnell"]
Quality = Literal["q4", "q5", "q6", "q8", "bf16"]
Role = Literal["unet", "t5", "clip_l", "vae", "lora", "controlnet"]
Folder = Literal["unet", "clip", "vae", "loras", "controlnet"]
FileFormat = Literal["gguf", "safetensors"]
# Where ``bytes`` came from: the Hub's rounded listing in models.yaml, the user's size_gb,
# our default estimate, or the Hub's metadata API (exact).
BytesSource = Literal["listing", "user", "estimate", "hub"]

QUALITIES: tuple[str, ...] = get_args(Quality)  # smallest first
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
# The ComfyUI models/ subfolder each role belongs in (FACTS.md "Model files").
ROLE_FOLDERS: dict[str, str] = {
    "unet": "unet",
    "t5": "clip",
    "clip_l": "clip",
    "vae": "vae",
    "lora": "loras",
    "controlnet": "controlnet",
}

# File name endings each format is recognised by (.sft is ComfyUI's short safetensors name).
FORMAT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "gguf": (".gguf",),
    "safetensors": (".safetensors", ".sft"),
}

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelFile(_Model):
    """One model file (on the Hugging Face Hub, or a user's at a URL) and where ComfyUI
    expects it."""

    id: str = Field(description="catalog key, or role:repo/file (role:url) for a user's file")
    role: Role
    repo: str = Field(description="Hub repo id; for a file at a url, the URL's host")
    url: Optional[str] = Field(None, description="a user's file off the Hub: fetched from here, "
                                                 "never with the Hub token")
    entry: Optional[str] = Field(None, description="the node.yaml field a user's file comes from")
    file: str = Field(min_length=1, description="path inside the repo")
    revision: str = "main"
    bytes: int = Field(ge=0)
    bytes_source: BytesSource = "listing"
    sha256: Optional[str] = None
    folder: Folder = Field(description="ComfyUI models/ subfolder")
    format: FileFormat
    quant: Optional[str] = Field(None, description="Q8_0, Q4_K_S, BF16, FP16, F32...")
    gated: bool = False
    licence: Optional[str] = None
    licence_url: Optional[str] = Field(None, description="where a gated licence is accepted")

    @model_validator(mode="before")
    @classmethod
    def _bytes_from_size_gb(cls, data: Any) -> Any:
        if isinstance(data, dict) and "size_gb" in data:
            data = dict(data)
            size_gb = data.pop("size_gb")
            if "bytes" in data:
                raise ValueError("give size_gb or bytes, not both")
            if not isinstance(size_gb, (int, float)) or isinstance(size_gb, bool) or size_gb <= 0:
                raise ValueError(
                    f"size_gb must be a positive number of decimal GB (got {size_gb!r})"
                )
            data["bytes"] = gb_to_bytes(size_gb)
        return data

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _SHA256.match(value):
            raise ValueError("must be 64 lowercase hex digits")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ModelFile":
        if self.url is None and not _REPO.match(self.repo):
            raise ValueError(f"repo: {self.repo!r} must be a Hub repo id like owner/name")
        if self.folder != ROLE_FOLDERS[self.role]:
            wanted = ROLE_FOLDERS[self.role]
            raise ValueError(
                f"a {self.role} file belongs in folder {wanted!r}, not {self.folder!r}"
            )
        suffix = PurePosixPath(self.file).suffix.lower()
        if suffix not in FORMAT_SUFFIXES[self.format]:
            raise ValueError(f"format {self.format!r} does not match the file name {self.file!r}")
        if self.gated and not self.licence_url:
            raise ValueError(
                "a gated file needs licence_url: the page where its licence is accepted"
            )
        return self

    @property
    def name(self) -> str:
        """Return the file's name in its ComfyUI folder (the repo path's last part)."""
        return PurePosixPath(self.file).name

    @property
    def target(self) -> str:
        """Return the path under ComfyUI's models/ folder, e.g. ``unet/flux1-dev-Q8_0.gguf``."""
        return f"{self.folder}/{self.name}"

    @property
    def approximate(self) -> bool:
        """True until ``bytes`` has been read from the Hub's metadata."""
        return self.bytes_source != "hub"


class Tier(_Model):
    """The quality-specific files of a tier (catalog keys)."""

    unet: str
    t5: str


class FluxModel(_Model):
    """One Flux.1 model: its shared text encoder and VAE, and one tier per quality."""

    title: str
    clip_l: str
    vae: str
    tiers: dict[Quality, Tier]

    @field_validator("tiers")
    @classmethod
    def _every_quality(cls, value: dict[str, Tier]) -> dict[str, Tier]:
        missing = [quality for quality in QUALITIES if quality not in value]
        if missing:
            raise ValueError(f"missing tiers: {', '.join(missing)}")
        return value


class SizingEstimates(_Model):
    """The tunable estimates sizing uses (calibrated; see docs/sizing.md)."""

    runtime_overhead_gb: float = Field(ge=0)
    os_reserve_gb: float = Field(ge=0)
    lora_estimate_gb: float = Field(gt=0)
    controlnet_estimate_gb: float = Field(gt=0)
    disk_margin_fraction: float = Field(ge=0)
    disk_margin_gb: float = Field(ge=0)
    auto_qualities: tuple[Quality, ...] = Field(min_length=1)

    @field_validator("auto_qualities")
    @classmethod
    def _smallest_first(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        order = [QUALITIES.index(quality) for quality in value]
        if order != sorted(set(order)):
            raise ValueError(f"list each quality once, smallest first ({', '.join(QUALITIES)})")
        return value

    @property
    def runtime_overhead_bytes(self) -> int:
        return gb_to_bytes(self.runtime_overhead_gb)

    @property
    def os_reserve_bytes(self) -> int:
        return gb_to_bytes(self.os_reserve_gb)

    @property
    def lora_estimate_bytes(self) -> int:
        return gb_to_bytes(self.lora_estimate_gb)

    @property
    def controlnet_estimate_bytes(self) -> int:
        return gb_to_bytes(self.controlnet_estimate_gb)

    @property
    def disk_margin_bytes(self) -> int:
        return gb_to_bytes(self.disk_margin_gb)


class Catalog(_Model):
    """Every model, tier and file the tool knows how to install."""

    sizing: SizingEstimates
    models: dict[ModelName, FluxModel]
    files: dict[str, ModelFile]

    @model_validator(mode="before")
    @classmethod
    def _file_ids(cls, data: Any) -> Any:
        """Give every file its catalog key as ``id``."""
        if isinstance(data, dict) and isinstance(data.get("files"), dict):
            files = {}
            for key, entry in data["files"].items():
                if isinstance(entry, dict) and "id" not in entry:
                    entry = {"id": key, **entry}
                files[key] = entry
            data = {**data, "files": files}
        return data

    @model_validator(mode="after")
    def _references(self) -> "Catalog":
        for key, entry in self.files.items():
            if entry.id != key:
                raise ValueError(f"files.{key}: id {entry.id!r} differs from its key")
        for name, model in self.models.items():
            wanted = [("clip_l", model.clip_l, "clip_l"), ("vae", model.vae, "vae")]
            for quality, tier in model.tiers.items():
                wanted += [(f"tiers.{quality}.unet", tier.unet, "unet"),
                           (f"tiers.{quality}.t5", tier.t5, "t5")]
            for field, key, role in wanted:
                entry = self.files.get(key)
                if entry is None:
                    raise ValueError(f"models.{name}.{field}: no file {key!r} under files:")
                if entry.role != role:
                    raise ValueError(
                        f"models.{name}.{field}: file {key!r} has role {entry.role!r}, not {role!r}"
                    )
        return self

    def file(self, key: str) -> ModelFile:
        """Return the file with catalog key ``key``."""
        return self.files[key]

    def tier_files(self, model: str, quality: str) -> tuple[ModelFile, ...]:
        """Return the files of ``model`` at ``quality``: UNet, T5, CLIP-L, VAE, in that order."""
        flux = self.models[model]  # type: ignore[index]
        tier = flux.tiers[quality]  # type: ignore[index]
        return tuple(self.files[key] for key in (tier.unet, tier.t5, flux.clip_l, flux.vae))


def gb_to_bytes(size_gb: float) -> int:
    """Convert decimal GB (as the Hub lists sizes) to bytes."""
    return round(size_gb * GB)


def default_catalog_path() -> Path:
    """Return the path of the models.yaml that ships with the tool."""
    return data_file("playbooks", "models.yaml")


def load_catalog(path: Optional[Path] = None) -> Catalog:
    """Load and validate models.yaml; raise ``ConfigError`` naming the file and field."""
    path = Path(path) if path is not None else default_catalog_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the model catalog: {error.strerror or error}",
                          "reinstall provision, or fix the path") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}", "fix the YAML at that spot") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping with sizing:, models: and files:")
    # Top-level keys starting with "_" only hold YAML anchors (&name) for merge keys.
    data = {key: value for key, value in data.items() if not str(key).startswith("_")}
    try:
        return Catalog.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}: {field}: {message}",
                          "see docs/sizing.md for the catalog format") from None


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when present
    """A SafeLoader that refuses a key written twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def format_of(file: str) -> Optional[str]:
    """Return the format a file name says it has (gguf, safetensors), or None if unknown."""
    suffix = PurePosixPath(file).suffix.lower()
    for name, suffixes in FORMAT_SUFFIXES.items():
        if suffix in suffixes:
            return name
    return None
