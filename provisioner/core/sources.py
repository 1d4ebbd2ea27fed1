"""What node.yaml adds to the install besides ComfyUI itself: custom nodes and model files.

``CustomNode`` is a git checkout under ComfyUI/custom_nodes (its folder name checked to be one
safe folder); ``ModelSource`` is a LoRA or ControlNet from the Hugging Face Hub (repo + file)
or from a plain URL (url + sha256, never fetched with the Hub token).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import urllib.parse
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GitSource(_Model):
    repo: str = Field(min_length=1, description="git URL or local path (mirrors and forks welcome)")
    ref: str = Field(min_length=1, description="tag, branch or commit to check out")


class CustomNode(GitSource):
    """A ComfyUI custom node, installed like ComfyUI-GGUF: a checkout in
    ``ComfyUI/custom_nodes/<name>``, its requirements.txt (if any) under the constraints."""

    name: Optional[str] = Field(None, description="its folder in ComfyUI/custom_nodes; default "
                                                  "the repo's last path part without .git")

    @model_validator(mode="after")
    def _folder(self) -> "CustomNode":
        name = self.name or re.split(r"[/:]", self.repo.rstrip("/"))[-1].removesuffix(".git")
        if not _FOLDER.match(name) or name.endswith(".disabled"):
            what = "name" if self.name else f"the folder name taken from repo ({name!r})"
            raise ValueError(f"{what} must be one folder name of letters, digits, . _ - "
                             "(not ending in .disabled): set name:")
        if name.lower() == "comfyui-gguf":
            raise ValueError("ComfyUI-GGUF is installed by provision itself (gguf_node: sets its "
                             "repo and ref): leave it out of custom_nodes, or set another name:")
        object.__setattr__(self, "name", name)
        return self


class ModelSource(_Model):
    """A LoRA or ControlNet the user adds: a file on the Hugging Face Hub (``repo`` + ``file``)
    or at a plain URL (``url`` + ``sha256``; fetched without the Hub token)."""

    repo: Optional[str] = Field(None, min_length=3,
                                description="Hub repo id, e.g. XLabs-AI/flux-lora-collection")
    url: Optional[str] = Field(None, description="instead of repo: the file's https:// URL; "
                                                 "needs sha256 (http:// only on loopback)")
    file: Optional[str] = Field(None, min_length=1,
                                description="with repo: the path inside the repo; with url: the "
                                            "file name on the node (default: the URL's last part)")
    revision: str = Field("main", description="with repo: branch, tag or commit")
    sha256: Optional[str] = Field(None, description="with url: the file's SHA-256 (64 hex "
                                                    "digits), checked once it is downloaded")
    size_gb: Optional[float] = Field(
        None, gt=0, description="size in decimal GB; else the Hub's (or the URL's) when up runs"
    )

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _SHA256.match(value.strip().lower()):
            raise ValueError("must be 64 hex digits (what `sha256sum FILE` prints)")
        return value.strip().lower() if value is not None else None

    @field_validator("url")
    @classmethod
    def _url(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else _download_url(value)

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSource":
        if self.repo is not None and self.url is not None:
            raise ValueError("give repo: or url:, not both (url: is for files off the Hub)")
        if self.repo is None and self.url is None:
            raise ValueError("needs repo: (a Hugging Face repo, with file:) or url: (with sha256:)")
        if self.repo is not None:
            if self.file is None:
                raise ValueError("file: is required with repo: (the file's path in the repo)")
            if self.sha256 is not None:
                raise ValueError("sha256: goes with url: (a Hub file's sha256 comes from the Hub)")
            return self
        if self.sha256 is None:
            raise ValueError("sha256: is required with url: add sha256: <64 hex digits> (run "
                             "`sha256sum` on the file, or copy it from its download page)")
        if "revision" in self.model_fields_set:
            raise ValueError("revision: goes with repo: (a url: names one file)")
        name = self.file or posixpath.basename(urllib.parse.unquote(urllib.parse.urlsplit(self.url).path))
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"file: {name!r} is not a file name to save the URL's file as: "
                             "set file: (e.g. my-lora.safetensors)")
        object.__setattr__(self, "file", name)
        return self


def _download_url(value: str) -> str:
    """Refuse a URL the node should not fetch: not http(s), with credentials, or plain http://
    off loopback (the bytes are sha256-checked, but what is fetched would still be visible)."""
    parts = urllib.parse.urlsplit(value)
    if any(char.isspace() for char in value) or parts.scheme not in ("https", "http") \
            or not parts.hostname:
        raise ValueError("must be an https:// URL of the file")
    if parts.username or parts.password:
        raise ValueError("must not hold a user or password (they would travel to the node in "
                         "the download manifest): use a URL that needs none")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError("http:// is refused except on loopback (127.0.0.1, localhost): use https://")
    return value


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
