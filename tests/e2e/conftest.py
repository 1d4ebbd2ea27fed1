"""Stand-ins shared by the end-to-end tests: fake ComfyUI repos, a wheelhouse, a fake Hub."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.harness.fake_comfyui import build_comfyui_repo, build_gguf_repo
from tests.harness.fake_hub import FakeHub
from tests.harness.hub_files import make_gguf, make_safetensors
from tests.harness.sshd import free_port, shared_dir
from tests.harness.wheelhouse import build_wheelhouse

HF_TOKEN = "hf_testtokenDoNotLeak0123456789abcdefXYZ"


@dataclasses.dataclass
class StandIns:
    """Paths and pins of the local stand-ins a node.yaml can point at."""

    comfyui_repo: Path
    gguf_repo: Path
    gguf_ref: str
    wheelhouse: Path

    def node_fields(self, **overrides: Any) -> dict[str, Any]:
        """Return node.yaml fields pointing the tool at the stand-ins (no network).

        Every test node shares this machine's loopback, so ComfyUI gets a free port of its
        own (``tunnel.remote_port``) unless the test names one.
        """
        fields: dict[str, Any] = {
            "comfyui": {"repo": str(self.comfyui_repo), "ref": "v0.3.64"},
            "gguf_node": {"repo": str(self.gguf_repo), "ref": self.gguf_ref},
            "pip": {"no_index": True, "find_links": [str(self.wheelhouse)]},
        }
        tunnel = {"remote_port": free_port(), **overrides.pop("tunnel", {})}
        fields.update(overrides)
        fields["tunnel"] = tunnel
        return fields


@pytest.fixture(scope="session")
def stand_ins() -> Iterator[StandIns]:
    base = shared_dir()  # node users cannot read pytest's tmp folders
    gguf_repo, gguf_ref = build_gguf_repo(base / "ComfyUI-GGUF")
    yield StandIns(comfyui_repo=build_comfyui_repo(base / "ComfyUI"), gguf_repo=gguf_repo,
                   gguf_ref=gguf_ref, wheelhouse=build_wheelhouse(base / "wheelhouse", uv=True))
    shutil.rmtree(base, ignore_errors=True)


# The files every default plan names, small but valid, under their real repo and file names.
def populate_hub(hub: FakeHub, base: Path) -> None:
    base.mkdir(parents=True, exist_ok=True)
    files = {
        ("city96/FLUX.1-dev-gguf", "flux1-dev-Q8_0.gguf"): make_gguf(base / "u8.gguf", quant="Q8_0"),
        ("city96/FLUX.1-dev-gguf", "flux1-dev-Q4_K_S.gguf"): make_gguf(base / "u4.gguf", quant="Q4_K_S"),
        ("city96/FLUX.1-schnell-gguf", "flux1-schnell-Q8_0.gguf"): make_gguf(base / "s8.gguf", quant="Q8_0"),
        ("city96/t5-v1_1-xxl-encoder-gguf", "t5-v1_1-xxl-encoder-Q8_0.gguf"):
            make_gguf(base / "t8.gguf", quant="Q8_0", arch="t5encoder"),
        ("city96/t5-v1_1-xxl-encoder-gguf", "t5-v1_1-xxl-encoder-Q4_K_M.gguf"):
            make_gguf(base / "t4.gguf", quant="Q4_K_M", arch="t5encoder"),
        ("comfyanonymous/flux_text_encoders", "clip_l.safetensors"):
            make_safetensors(base / "clip_l.safetensors", dtype="fp16"),
        ("black-forest-labs/FLUX.1-dev", "ae.safetensors"):
            make_safetensors(base / "ae.safetensors", dtype="fp32"),
        ("black-forest-labs/FLUX.1-schnell", "ae.safetensors"):
            make_safetensors(base / "ae_s.safetensors", dtype="fp32"),
    }
    for (repo, path), source in files.items():
        hub.add_file(repo, path, source, gated=repo.startswith("black-forest-labs/"))
    hub.set_token(HF_TOKEN)


@pytest.fixture
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    fake = FakeHub().start()
    populate_hub(fake, tmp_path_factory.mktemp("hub-files"))
    try:
        yield fake
    finally:
        fake.stop()
