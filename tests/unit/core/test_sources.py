"""node.yaml's custom_nodes and url: model files: parsed, defaulted, and refused in one line
naming the file, the field and the fix."""

from __future__ import annotations

import pytest

from provisioner.core.config import load_fleet, load_node
from tests.unit.core.test_config import error_of, write

SHA = "0123456789abcdef" * 4


def node(tmp_path, body: str):
    return load_node(write(tmp_path, "host: h\n" + body))


# ------------------------------------------------------------------ custom_nodes


@pytest.mark.parametrize("repo, folder", [
    ("https://github.com/kijai/ComfyUI-KJNodes.git", "ComfyUI-KJNodes"),
    ("https://github.com/kijai/ComfyUI-KJNodes/", "ComfyUI-KJNodes"),
    ("git@github.com:user/comfyui_controlnet_aux.git", "comfyui_controlnet_aux"),
    ("/srv/mirrors/my-node", "my-node"),
])
def test_a_custom_node_is_named_after_its_repo(tmp_path, repo, folder):
    cfg = node(tmp_path, f"custom_nodes: [{{repo: '{repo}', ref: v1}}]\n")
    assert [(n.name, n.repo, n.ref) for n in cfg.custom_nodes] == [(folder, repo, "v1")]


def test_a_custom_node_may_name_its_folder(tmp_path):
    cfg = node(tmp_path, "custom_nodes: [{repo: /x/y.git, ref: abc123, name: mine}]\n")
    assert cfg.custom_nodes[0].name == "mine"


def test_custom_nodes_default_to_none(tmp_path):
    assert node(tmp_path, "").custom_nodes == []


@pytest.mark.parametrize("entry, says", [
    ("{repo: /x/y, ref: v1, name: ../evil}", "custom_nodes.0: name must be one folder name"),
    ("{repo: /x/y, ref: v1, name: a/b}", "custom_nodes.0: name must be one folder name"),
    ("{repo: /x/y, ref: v1, name: .hidden}", "custom_nodes.0: name must be one folder name"),
    ("{repo: /x/y, ref: v1, name: off.disabled}", "not ending in .disabled"),
    ("{repo: 'https://h/x/we ird.git', ref: v1}",
     "the folder name taken from repo ('we ird') must be one folder name"),
    ("{repo: https://github.com/me/ComfyUI-GGUF.git, ref: v1}", "ComfyUI-GGUF is installed by provision"),
    ("{repo: /x/y, ref: v1, name: comfyui-gguf}", "ComfyUI-GGUF is installed by provision"),
    ("{repo: /x/y}", "custom_nodes.0.ref: required field is missing"),
    ("{repo: /x/y, ref: v1, nmae: z}", "custom_nodes.0.nmae: unknown key (did you mean 'name'?)"),
])
def test_a_bad_custom_node_is_one_line_naming_the_field(tmp_path, entry, says):
    error = error_of(write(tmp_path, f"host: h\ncustom_nodes: [{entry}]\n"))
    assert says in str(error)
    assert str(error).startswith(f"{tmp_path / 'node.yaml'}: custom_nodes")


def test_two_custom_nodes_in_one_folder_are_refused_whatever_the_case(tmp_path):
    error = error_of(write(tmp_path, "host: h\ncustom_nodes:\n  - {repo: https://a/x/Foo.git, ref: v1}\n"
                                     "  - {repo: /m/foo, ref: v2}\n"))
    assert "node.yaml: custom_nodes: two entries install into custom_nodes/foo" in str(error)
    assert "another name:" in str(error)


def test_a_fleet_gives_custom_nodes_to_every_node_and_a_node_may_replace_them(tmp_path):
    fleet = load_fleet(write(tmp_path, (
        "defaults: {custom_nodes: [{repo: /m/a, ref: v1}]}\n"
        "nodes:\n  - {name: one, host: 10.0.0.1}\n"
        "  - {name: two, host: 10.0.0.2, custom_nodes: [{repo: /m/b, ref: v2}]}\n"), "fleet.yaml"))
    assert [[n.name for n in node.custom_nodes] for node in fleet.nodes] == [["a"], ["b"]]


# ------------------------------------------------------------------ url: model files


def test_a_url_lora_takes_its_file_name_from_the_url(tmp_path):
    cfg = node(tmp_path, "loras:\n  - {url: 'https://cdn.example.com/d/My%20Lora.safetensors?x=1', "
                         f"sha256: {SHA.upper()}}}\n")
    lora = cfg.loras[0]
    assert (lora.url, lora.file, lora.sha256, lora.repo) == (
        "https://cdn.example.com/d/My%20Lora.safetensors?x=1", "My Lora.safetensors", SHA, None)


def test_a_url_controlnet_may_name_its_file_and_size(tmp_path):
    cfg = node(tmp_path, f"controlnet: {{url: 'https://e.com/dl?id=7', sha256: {SHA}, "
                         "file: canny.safetensors, size_gb: 1.5}\n")
    assert (cfg.controlnet.file, cfg.controlnet.size_gb) == ("canny.safetensors", 1.5)


def test_hub_entries_are_unchanged(tmp_path):
    cfg = node(tmp_path, "loras: [{repo: XLabs-AI/flux-lora-collection, file: a/realism.safetensors}]\n")
    lora = cfg.loras[0]
    assert (lora.repo, lora.file, lora.revision, lora.url, lora.sha256) == (
        "XLabs-AI/flux-lora-collection", "a/realism.safetensors", "main", None, None)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/l.safetensors", "http://localhost/l.safetensors",
                                 "http://[::1]:9/l.safetensors"])
def test_plain_http_is_allowed_on_loopback(tmp_path, url):
    assert node(tmp_path, f"loras: [{{url: '{url}', sha256: {SHA}}}]\n").loras[0].url == url


@pytest.mark.parametrize("entry, says", [
    ("{url: 'https://e.com/l.safetensors'}",
     "loras.0: sha256: is required with url: add sha256: <64 hex digits>"),
    ("{url: 'https://e.com/l.safetensors', sha256: abc}", "loras.0.sha256: must be 64 hex digits"),
    ("{url: 'http://e.com/l.safetensors', sha256: %s}" % SHA,
     "loras.0.url: http:// is refused except on loopback"),
    ("{url: 'ftp://e.com/l.safetensors', sha256: %s}" % SHA, "loras.0.url: must be an https:// URL"),
    ("{url: 'https://e.com/', sha256: %s}" % SHA, "loras.0: file: '' is not a file name"),
    ("{url: 'https://e.com/l', sha256: %s, file: ../x.safetensors}" % SHA, "loras.0: file: '../x.safetensors' is not a file name"),
    ("{url: 'https://e.com/l.safetensors', sha256: %s, revision: v2}" % SHA, "loras.0: revision: goes with repo:"),
    ("{repo: a/b, file: l.safetensors, url: 'https://e.com/l.safetensors'}", "loras.0: give repo: or url:, not both"),
    ("{file: l.safetensors}", "loras.0: needs repo: (a Hugging Face repo, with file:) or url: (with sha256:)"),
    ("{repo: a/b}", "loras.0: file: is required with repo:"),
    ("{repo: a/b, file: l.safetensors, sha256: %s}" % SHA, "loras.0: sha256: goes with url:"),
])
def test_a_bad_model_entry_is_one_line_naming_the_field_and_the_fix(tmp_path, entry, says):
    error = error_of(write(tmp_path, f"host: h\nloras: [{entry}]\n"))
    assert f"node.yaml: {says}" in str(error), str(error)


def test_a_url_with_a_password_is_refused_without_echoing_it(tmp_path):
    error = error_of(write(tmp_path, "host: h\ncontrolnet: {url: 'https://me:s3cret@e.com/c.safetensors', "
                                     f"sha256: {SHA}}}\n"))
    assert "controlnet.url: must not hold a user or password" in str(error)
    assert "s3cret" not in str(error) and "s3cret" not in error.hint
