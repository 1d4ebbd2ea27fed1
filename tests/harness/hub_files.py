"""Build small but valid model files (GGUF, safetensors) for tests.

The files are real: `gguf.GGUFReader` and `safetensors.safe_open` read them back and report
the tensor types asked for. They are not models: the weights are noise (seeded, so the same
arguments give the same bytes and the same sha256) and the tensor names only look like Flux.

`size_hint_bytes` / `n_bytes` grow a file with one zero-filled tensor; numpy's `np.zeros`
pages are not touched until written, so a 2 GB file costs little memory to build.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import LlamaFileType as FT
from safetensors import TensorSpec, safe_open, serialize_file

__all__ = [
    "GGUF_QUANTS",
    "make_gguf",
    "make_safetensors",
    "read_gguf_types",
    "read_safetensors_dtypes",
    "sha256_file",
]

# Quant label as it appears in Hub file names (flux1-dev-Q4_K_S.gguf) ->
# (the ggml type of the weight tensors, general.file_type).
GGUF_QUANTS: dict[str, tuple[QT, FT]] = {
    "F32": (QT.F32, FT.ALL_F32),
    "F16": (QT.F16, FT.MOSTLY_F16),
    "BF16": (QT.BF16, FT.MOSTLY_BF16),
    "Q4_0": (QT.Q4_0, FT.MOSTLY_Q4_0),
    "Q4_1": (QT.Q4_1, FT.MOSTLY_Q4_1),
    "Q5_0": (QT.Q5_0, FT.MOSTLY_Q5_0),
    "Q5_1": (QT.Q5_1, FT.MOSTLY_Q5_1),
    "Q8_0": (QT.Q8_0, FT.MOSTLY_Q8_0),
    "Q2_K": (QT.Q2_K, FT.MOSTLY_Q2_K),
    "Q3_K_S": (QT.Q3_K, FT.MOSTLY_Q3_K_S),
    "Q3_K_M": (QT.Q3_K, FT.MOSTLY_Q3_K_M),
    "Q3_K_L": (QT.Q3_K, FT.MOSTLY_Q3_K_L),
    "Q4_K_S": (QT.Q4_K, FT.MOSTLY_Q4_K_S),
    "Q4_K_M": (QT.Q4_K, FT.MOSTLY_Q4_K_M),
    "Q5_K_S": (QT.Q5_K, FT.MOSTLY_Q5_K_S),
    "Q5_K_M": (QT.Q5_K, FT.MOSTLY_Q5_K_M),
    "Q6_K": (QT.Q6_K, FT.MOSTLY_Q6_K),
}

# gguf 0.19 cannot quantize K-quants; their blocks are written as raw bytes. Noise bytes are
# fine for the packed quants, but the fp16 scale fields must be finite for the blocks to
# dequantize to numbers: byte offsets of each block's fp16 `d`/`dmin` (ggml-common.h).
_K_QUANT_FP16_OFFSETS: dict[QT, tuple[int, ...]] = {
    QT.Q2_K: (80, 82),  # scales[16] qs[64] d dmin
    QT.Q3_K: (108,),  # hmask[32] qs[64] scales[12] d
    QT.Q4_K: (0, 2),  # d dmin scales[12] qs[128]
    QT.Q5_K: (0, 2),  # d dmin scales[12] qh[32] qs[128]
    QT.Q6_K: (208,),  # ql[128] qh[64] scales[16] d
}

_ROW = 256  # elements per row: a multiple of every block size used here (32 and 256)
_PAD_ROW = 4096  # elements per row of the padding tensor

# Tensor names per architecture: (2-D weights, 1-D biases/norms kept in F32 as real files do).
_NAMES: dict[str, tuple[list[str], list[str]]] = {
    "flux": (
        ["img_in.weight", "txt_in.weight", "double_blocks.0.img_attn.qkv.weight",
         "double_blocks.0.img_mlp.0.weight", "single_blocks.0.linear1.weight",
         "final_layer.linear.weight"],
        ["img_in.bias", "txt_in.bias", "double_blocks.0.img_attn.norm.query_norm.scale"],
    ),
    "t5encoder": (
        ["token_embd.weight", "enc.blk.0.attn_q.weight", "enc.blk.0.attn_k.weight",
         "enc.blk.0.ffn_up.weight", "enc.blk.0.ffn_down.weight"],
        ["enc.blk.0.attn_norm.weight", "enc.output_norm.weight"],
    ),
}


def _quant_for(quant: str) -> tuple[QT, FT]:
    try:
        return GGUF_QUANTS[quant.upper()]
    except KeyError:
        raise ValueError(f"unknown GGUF quant {quant!r}; known: {', '.join(GGUF_QUANTS)}") from None


def _encode(values: np.ndarray, qtype: QT, rng: np.random.Generator) -> np.ndarray:
    """Encode float32 rows as `qtype`: uint8 block bytes, or float arrays for F16/F32."""
    if qtype in _K_QUANT_FP16_OFFSETS:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        n_blocks = values.size // block_size
        blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
        scale = np.frombuffer(np.float16(0.01).tobytes(), dtype=np.uint8)
        for offset in _K_QUANT_FP16_OFFSETS[qtype]:
            blocks[:, offset : offset + 2] = scale
        rows = values.shape[0]
        return blocks.reshape(rows, -1)
    return gguf.quants.quantize(values, qtype)


def make_gguf(
    path: str | os.PathLike[str],
    *,
    quant: str = "Q8_0",
    arch: str = "flux",
    size_hint_bytes: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a small valid GGUF whose weight tensors have the ggml type of `quant`.

    `quant` is a label as in Hub file names (Q8_0, Q4_K_S, F16, ...; case-insensitive).
    2-D `.weight` tensors get that type, 1-D biases/norms are F32 (as in city96's files).
    `general.architecture` is `arch`, `general.file_type` the matching LlamaFileType.
    With `size_hint_bytes`, a zero-filled `padding.weight` tensor of the same type brings
    the file to at least that size (overshooting by less than one 4096-element row + 256 B).
    """
    qtype, ftype = _quant_for(quant)
    path = Path(path)
    _write_gguf(path, qtype, ftype, arch, seed, pad_rows=0)
    if size_hint_bytes is not None and path.stat().st_size < size_hint_bytes:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        row_bytes = _PAD_ROW // block_size * type_size
        # The padding tensor adds its own info record (<100 B) and alignment (<32 B) too.
        missing = size_hint_bytes - path.stat().st_size
        _write_gguf(path, qtype, ftype, arch, seed, pad_rows=math.ceil(missing / row_bytes))
    return path


def _write_gguf(path: Path, qtype: QT, ftype: FT, arch: str, seed: int, *, pad_rows: int) -> None:
    weight_names, f32_names = _NAMES.get(arch, _NAMES["flux"])
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(f"fake-{arch}-{qtype.name}")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(int(ftype))
    for name in weight_names:
        encoded = _encode(rng.standard_normal((8, _ROW), dtype=np.float32), qtype, rng)
        writer.add_tensor(name, encoded, raw_dtype=qtype if encoded.dtype == np.uint8 else None)
    for name in f32_names:
        writer.add_tensor(name, rng.standard_normal(_ROW, dtype=np.float32))
    if pad_rows > 0:
        if qtype in (QT.F32, QT.F16):
            dtype = np.float32 if qtype == QT.F32 else np.float16
            writer.add_tensor("padding.weight", np.zeros((pad_rows, _PAD_ROW), dtype=dtype))
        else:
            block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
            padding = np.zeros((pad_rows, _PAD_ROW // block_size * type_size), dtype=np.uint8)
            writer.add_tensor("padding.weight", padding, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


_ST_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "f16": "float16", "fp32": "float32", "f32": "float32"}


def make_safetensors(
    path: str | os.PathLike[str],
    *,
    dtype: str = "bf16",
    n_bytes: int = 64 * 1024,
    seed: int = 0,
) -> Path:
    """Write a valid safetensors file of `dtype` tensors (bf16, fp16 or fp32), about `n_bytes` big.

    Two small noise tensors plus, when `n_bytes` asks for more, a zero-filled `padding`
    tensor; the file is at least `n_bytes` long, and longer by the header and < 4 KiB.
    """
    try:
        st_dtype = _ST_DTYPES[dtype.lower()]
    except KeyError:
        raise ValueError(f"unknown safetensors dtype {dtype!r}; known: {', '.join(_ST_DTYPES)}") from None
    path = Path(path)
    rng = np.random.default_rng(seed)

    def encode(values: np.ndarray) -> np.ndarray:
        if st_dtype == "bfloat16":  # bf16 = the high half of a float32 (truncated)
            return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        return values.astype(np.float16 if st_dtype == "float16" else np.float32)

    tensors: dict[str, np.ndarray] = {
        "decoder.conv_in.weight": encode(rng.standard_normal((16, 64), dtype=np.float32)),
        "decoder.conv_in.bias": encode(rng.standard_normal(16, dtype=np.float32)),
    }
    itemsize = 4 if st_dtype == "float32" else 2
    used = sum(t.nbytes for t in tensors.values())  # the header (~300 B) comes on top
    if n_bytes > used:
        n_items = math.ceil((n_bytes - used) / itemsize)
        rows = math.ceil(n_items / 1024)
        tensors["padding"] = np.zeros((rows, 1024), dtype=np.uint16 if itemsize == 2 else np.float32)

    specs = {
        name: TensorSpec(dtype=st_dtype, shape=list(t.shape), data_ptr=t.ctypes.data, data_len=t.nbytes)
        for name, t in tensors.items()
    }
    # `specs` hold raw pointers into `tensors`, which stays alive until after this call.
    serialize_file(specs, path, metadata={"format": "pt", "fake": "provision test file"})
    return path


def read_gguf_types(path: str | os.PathLike[str]) -> dict[str, str]:
    """Return {tensor name: ggml type name} as `gguf.GGUFReader` reports them."""
    reader = gguf.GGUFReader(path)
    return {t.name: t.tensor_type.name for t in reader.tensors}


def read_safetensors_dtypes(path: str | os.PathLike[str]) -> dict[str, str]:
    """Return {tensor name: dtype} (BF16, F16, F32) as `safetensors.safe_open` reports them."""
    with safe_open(path, framework="numpy") as f:
        return {name: f.get_slice(name).get_dtype() for name in f.keys()}


def sha256_file(path: str | os.PathLike[str], chunk: int = 8 * 1024 * 1024) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
