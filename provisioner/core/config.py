"""node.yaml and fleet.yaml: the pydantic models and their loaders.

Pydantic is the only schema: unknown keys are errors, and docs/node.schema.json is generated
from ``NodeConfig``. Every load error is one line naming the file, the field and the fix.
"""

from __future__ import annotations

import getpass
import os
import re
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .config_errors import config_error, suggest
from .errors import ConfigError
from .sources import CustomNode, GitSource, ModelSource

COMFYUI_REPO = "https://github.com/comfyanonymous/ComfyUI.git"
COMFYUI_REF = "v0.3.64"  # the newest release that starts on torch 2.3.1 (FACTS.md)
GGUF_NODE_REPO = "https://github.com/city96/ComfyUI-GGUF.git"
GGUF_NODE_REF = "795e451"

REJECTED_FP32_VAE_FLAG = "--fp32vae"  # the seed's spelling, rejected by ComfyUI's argparse
# libyaml's loader when PyYAML was built with it: several times faster on every command.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}=?$")
# Hugging Face user access tokens start with hf_; anything long and random-looking that is
# not a valid env-var name is treated as a pasted secret too.
_TOKEN_LIKE = re.compile(r"^(hf_|api_)|^[A-Za-z0-9_\-]{30,}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TunnelConfig(_Model):
    local_port: int = Field(8188, ge=1, le=65535, description="port on your laptop")
    remote_port: int = Field(8188, ge=1, le=65535, description="ComfyUI's port on the node")
    pin_local_port: bool = Field(
        False, description="fail instead of picking the next free port when local_port is taken"
    )


class HubConfig(_Model):
    token_env: str = Field("HF_TOKEN", description="NAME of the local env var holding the token")
    endpoint: Optional[str] = Field(None, description="Hub URL (a mirror); default huggingface.co")

    @field_validator("token_env")
    @classmethod
    def _a_name_not_a_token(cls, value: str) -> str:
        if _TOKEN_LIKE.search(value) and not value.isupper():
            # Never echo the value: it is probably the secret itself.
            raise ValueError(
                "looks like a token, not the NAME of an environment variable (value not shown); "
                "put the token in an env var and write its name here, e.g. token_env: HF_TOKEN"
            )
        if not _ENV_NAME.match(value):
            raise ValueError(
                "must be the NAME of an environment variable (letters, digits, _), e.g. HF_TOKEN"
            )
        return value


class ComfyUIConfig(GitSource):
    extra_args: list[str] = Field(default_factory=list,
                                  description="more ComfyUI flags, e.g. [--preview-method, auto]")
    env: dict[str, str] = Field(default_factory=dict,
                                description="more environment for ComfyUI, e.g. "
                                            "PYTORCH_MPS_HIGH_WATERMARK_RATIO: '0.0'")

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @field_validator("extra_args")
    @classmethod
    def _managed_flags(cls, value: list[str]) -> list[str]:
        for arg in value:
            flag = arg.split("=", 1)[0]
            if flag in ("--listen", "--port"):
                raise ValueError(f"{flag} is managed by provision (ComfyUI listens on 127.0.0.1 "
                                 "and you reach it through the tunnel; the port is tunnel.remote_port)")
            if flag == REJECTED_FP32_VAE_FLAG:
                raise ValueError("ComfyUI rejects --fp32vae; the flag is --fp32-vae, and provision "
                                 "already passes it")
        return value


class PythonConfig(_Model):
    version: str = Field(
        "auto", pattern=r"^(auto|3\.1[0-2])$", description="auto: newest 3.10-3.12 on the node"
    )


class TorchConfig(_Model):
    torch: str = "2.3.1"
    torchvision: str = "0.18.1"
    torchaudio: str = "2.3.1"


class PipConfig(_Model):
    index_url: Optional[str] = None
    no_index: bool = Field(False, description="use only find_links (offline mirrors, tests)")
    extra_index_urls: list[str] = Field(default_factory=list)
    find_links: list[str] = Field(default_factory=list)


class DownloadsConfig(_Model):
    parallel: int = Field(3, ge=1, le=16, description="files fetched at once on the node")
    retries: int = Field(5, ge=0, le=100, description="retries per file within one run")
    backoff_seconds: float = Field(2.0, ge=0, le=600, description="first retry delay; doubles")
    connections: int = Field(8, ge=1, le=64,
                             description="byte ranges of one large file fetched at once")
    max_connections: int = Field(16, ge=1, le=256,
                                 description="connections at once on the node, over all files")
    range_threshold_mb: int = Field(256, ge=1, le=1_000_000,
                                    description="files above this size (MiB) are fetched in ranges")


class OutputsConfig(_Model):
    pull_to: str = Field("./outputs/{name}", description="local folder; {name} is the node name")


class NodeConfig(_Model):
    """One rented node: how to reach it and what to put on it."""

    name: str = Field("", description="defaults to host")
    host: str = Field(min_length=1)
    port: int = Field(22, ge=1, le=65535)
    user: str = Field(default_factory=getpass.getuser, min_length=1)
    identity_file: Optional[str] = Field(None, description="private key; else ssh-agent")
    host_key: Optional[str] = Field(None, description="pinned SHA256:... fingerprint")
    platform: Literal["auto", "macos", "linux"] = "auto"
    model: Literal["dev", "schnell"] = "dev"
    quality: Literal["auto", "q4", "q5", "q6", "q8", "bf16"] = "auto"
    loras: list[ModelSource] = Field(default_factory=list)
    controlnet: Optional[ModelSource] = None
    workdir: str = Field("~/provision", min_length=1)
    tunnel: TunnelConfig = Field(default_factory=TunnelConfig)
    hf: HubConfig = Field(default_factory=HubConfig)
    comfyui: ComfyUIConfig = Field(
        default_factory=lambda: ComfyUIConfig(repo=COMFYUI_REPO, ref=COMFYUI_REF))
    gguf_node: GitSource = Field(
        default_factory=lambda: GitSource(repo=GGUF_NODE_REPO, ref=GGUF_NODE_REF)
    )
    custom_nodes: list[CustomNode] = Field(
        default_factory=list, description="more ComfyUI custom nodes: [{repo, ref, name}]")
    python: PythonConfig = Field(default_factory=PythonConfig)
    torch: TorchConfig = Field(default_factory=TorchConfig)
    pip: PipConfig = Field(default_factory=PipConfig)
    installer: Literal["uv", "pip"] = Field(
        "uv", description="uv: a pinned uv makes the venv and installs (fast; pip when uv cannot "
                          "be installed); pip: python -m venv and pip. Both use the pip: options")
    downloads: DownloadsConfig = Field(default_factory=DownloadsConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    playbook: Optional[str] = Field(None, description="your playbook that extends the built-in one")

    @field_validator("host_key")
    @classmethod
    def _fingerprint(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _FINGERPRINT.match(value):
            raise ValueError(
                "must be an OpenSSH SHA256 fingerprint like SHA256:abc...(43 chars); "
                "get it with: ssh-keyscan HOST | ssh-keygen -lf -"
            )
        return value

    @field_validator("custom_nodes")
    @classmethod
    def _unique_folders(cls, value: list[CustomNode]) -> list[CustomNode]:
        seen: set[str] = set()
        for node in value:
            if str(node.name).lower() in seen:  # macOS folders ignore case
                raise ValueError(f"two entries install into custom_nodes/{node.name}: give one "
                                 "of them another name:")
            seen.add(str(node.name).lower())
        return value

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: str) -> str:
        if "\n" in value or "\0" in value:
            raise ValueError("must be a single-line path")
        if value.rstrip("/") in ("", "~", "/"):
            raise ValueError("must be a folder of its own (e.g. ~/provision): teardown deletes it")
        return value

    @model_validator(mode="after")
    def _default_name(self) -> "NodeConfig":
        if not self.name:
            object.__setattr__(self, "name", self.host)
        return self

    def outputs_dir(self) -> Path:
        """Return the local folder that harvested outputs go to."""
        return Path(self.outputs.pull_to.replace("{name}", self.name)).expanduser()


class FleetConfig(_Model):
    """Several nodes: ``defaults`` merged under each entry of ``nodes``."""

    defaults: dict[str, Any] = Field(default_factory=dict)
    nodes: list[NodeConfig] = Field(min_length=1)
    parallel: int = Field(8, ge=1, le=256)


# ---------------------------------------------------------------------------- loading


def load_node(path: str | os.PathLike[str]) -> NodeConfig:
    """Load and validate a node.yaml; raise ``ConfigError`` naming file, field and fix."""
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of fields (host: ..., user: ...)",
                          "see examples/node.yaml")
    return _node_from_mapping(path, data, where="")


def load_fleet(path: str | os.PathLike[str]) -> FleetConfig:
    """Load a fleet.yaml: ``defaults`` merged field by field under every node."""
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping with defaults: and nodes:", "see docs/fleet.md")
    unknown = set(data) - {"defaults", "nodes", "parallel"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{path}: {key}: unknown key{suggest(key, ['defaults', 'nodes', 'parallel'])}",
                          "a fleet.yaml has defaults:, nodes: and parallel:")
    defaults = data.get("defaults") or {}
    raw_nodes = data.get("nodes")
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: defaults: must be a mapping of node.yaml fields")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise ConfigError(f"{path}: nodes: must be a non-empty list of node mappings")
    nodes = []
    for index, raw in enumerate(raw_nodes):
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: nodes[{index}]: must be a mapping (host: ...)")
        label = raw.get("name") or raw.get("host") or f"nodes[{index}]"
        nodes.append(_node_from_mapping(path, _deep_merge(defaults, raw), where=f"node {label}: "))
    _check_unique_names(path, nodes)
    nodes = _assign_local_ports(path, nodes, raw_nodes, defaults)
    _check_unique_outputs(path, nodes)
    try:
        return FleetConfig(defaults=defaults, nodes=nodes, parallel=data.get("parallel", 8))
    except ValidationError as error:
        raise config_error(path, error, FleetConfig, "") from None


def _check_unique_names(path: Path, nodes: list[NodeConfig]) -> None:
    first_index: dict[str, int] = {}
    for index, node in enumerate(nodes):
        if node.name in first_index:
            raise ConfigError(
                f"{path}: node {node.name}: name is used by two nodes "
                f"(nodes[{first_index[node.name]}] and nodes[{index}])",
                "give every node its own name: (a node without one is named after its host)")
        first_index[node.name] = index


def _assign_local_ports(path: Path, nodes: list[NodeConfig], raw_nodes: list[dict],
                        defaults: dict[str, Any]) -> list[NodeConfig]:
    """Keep the local ports nodes set themselves (unique); give the others the next free
    port upward from the defaults' ``tunnel.local_port``."""
    taken: dict[int, str] = {}
    for node, raw in zip(nodes, raw_nodes):
        if not _sets_local_port(raw):
            continue
        port = node.tunnel.local_port
        if port in taken:
            raise ConfigError(
                f"{path}: nodes {taken[port]} and {node.name}: tunnel.local_port {port} is used by both",
                "give each node its own tunnel.local_port, or leave it out to auto-assign")
        taken[port] = node.name
    candidate = (defaults["tunnel"]["local_port"] if _sets_local_port(defaults)
                 else TunnelConfig.model_fields["local_port"].default)
    assigned = []
    for node, raw in zip(nodes, raw_nodes):
        if _sets_local_port(raw):
            assigned.append(node)
            continue
        while candidate in taken:
            candidate += 1
        if candidate > 65535:
            raise ConfigError(f"{path}: node {node.name}: tunnel.local_port: no port left to "
                              "auto-assign above defaults' tunnel.local_port",
                              "lower defaults.tunnel.local_port, or set one per node")
        taken[candidate] = node.name
        tunnel = node.tunnel.model_copy(update={"local_port": candidate})
        assigned.append(node.model_copy(update={"tunnel": tunnel}))
    return assigned


def _sets_local_port(mapping: dict[str, Any]) -> bool:
    tunnel = mapping.get("tunnel")
    return isinstance(tunnel, dict) and tunnel.get("local_port") is not None


def _check_unique_outputs(path: Path, nodes: list[NodeConfig]) -> None:
    seen: dict[Path, str] = {}
    for node in nodes:
        folder = node.outputs_dir()
        if folder in seen:
            raise ConfigError(
                f"{path}: nodes {seen[folder]} and {node.name}: outputs.pull_to is the same "
                f"folder ({folder}) for both",
                "put {name} in outputs.pull_to (the default ./outputs/{name} does)")
        seen[folder] = node.name


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", "check the path; examples/node.yaml is a start") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        return yaml.load(text, Loader=SAFE_LOADER)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = error.problem or error.context or "invalid YAML"
        raise ConfigError(f"{path}: {where}: not valid YAML: {problem}",
                          "fix the indentation or quoting at that spot") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None


def _node_from_mapping(path: Path, data: dict[str, Any], where: str) -> NodeConfig:
    try:
        node = NodeConfig.model_validate(data)
    except ValidationError as error:
        raise config_error(path, error, NodeConfig, where) from None
    return _resolve_local_paths(path, node, where)


def _resolve_local_paths(path: Path, node: NodeConfig, where: str) -> NodeConfig:
    """Resolve identity_file and playbook relative to the config file; check they exist."""
    updates: dict[str, Any] = {}
    for field in ("identity_file", "playbook"):
        value = getattr(node, field)
        if value is None:
            continue
        resolved = Path(value).expanduser()
        if not resolved.is_absolute():
            resolved = (path.parent / resolved).resolve()
        if not resolved.is_file():
            fix = ("point it at your private key, or remove it to use ssh-agent"
                   if field == "identity_file" else "point it at your playbook file")
            raise ConfigError(f"{path}: {where}{field}: file not found: {resolved}", fix)
        updates[field] = str(resolved)
    return node.model_copy(update=updates) if updates else node


def node_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of node.yaml, generated from ``NodeConfig``."""
    schema = NodeConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "provision node.yaml"
    return schema
