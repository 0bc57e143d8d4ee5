"""Read tensors from `.safetensors` files (single or sharded) without torch.

The format is an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
shape and byte range, then the raw data (https://huggingface.co/docs/safetensors). Reading it
with a memory map keeps one tensor in RAM at a time, so a 1.5B bf16 model (3.5 GB) converts in
a few hundred MB; and the converter does not need torch, which the `convert` extra leaves out.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.errors import ConvertError

#: safetensors dtype -> numpy dtype of its bytes. BF16 has no numpy type: read as uint16, widened.
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
}
#: Upper bound on a sane header (the format's own reference reader refuses above 100 MB).
MAX_HEADER_BYTES = 100 * 1024 * 1024

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor's bytes lie: file, dtype name, shape and absolute byte range."""

    name: str
    path: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


def read_header(path: Path) -> dict[str, TensorRef]:
    """Parse one file's header into `TensorRef`s (no tensor data is read)."""
    try:
        with open(path, "rb") as fh:
            raw_len = fh.read(8)
            if len(raw_len) != 8:
                raise ConvertError(f"{path}: too short to be a safetensors file ({len(raw_len)} bytes)")
            (n,) = struct.unpack("<Q", raw_len)
            if n > MAX_HEADER_BYTES:
                raise ConvertError(f"{path}: header length {n} is implausible: the file is not safetensors "
                                   "or is corrupt; re-save the model with save_pretrained()")
            header = json.loads(fh.read(n))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConvertError(f"{path}: cannot read the safetensors header ({exc}); re-save the model") from None
    size = path.stat().st_size
    base = 8 + n
    refs: dict[str, TensorRef] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype")
        if dtype not in DTYPES:
            raise ConvertError(f"{path}: tensor {name!r} has dtype {dtype}; the converter reads "
                               f"{sorted(DTYPES)} (save the model in bf16/fp16/fp32)")
        start, end = (base + int(x) for x in info["data_offsets"])
        ref = TensorRef(name, path, dtype, tuple(int(d) for d in info["shape"]), start, end)
        if end > size or end - start != ref.n_elements * DTYPES[dtype].itemsize:
            raise ConvertError(f"{path}: tensor {name!r} byte range {start}..{end} does not fit its shape "
                               f"{ref.shape} or the file size {size}: the file is truncated; copy it again")
        refs[name] = ref
    return refs


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files of a Hugging Face model folder, via the shard index when present."""
    index = model_dir / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text("utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConvertError(f"{index}: not a shard index with a 'weight_map' ({exc})") from None
        files = sorted({model_dir / f for f in weight_map.values()})
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ConvertError(f"{index} names shards that are not in {model_dir}: {missing}; copy them "
                               "there")
        return files
    if (model_dir / SINGLE_FILE).is_file():
        return [model_dir / SINGLE_FILE]
    shards = sorted(model_dir.glob("model-*-of-*.safetensors"))
    if shards:
        return shards
    others = sorted(p.name for p in model_dir.glob("*.bin")) + sorted(p.name for p in model_dir.glob("*.pt"))
    hint = (f" (found {others}: re-save with save_pretrained(..., safe_serialization=True))" if others
            else " (merge the adapter first: make merge)")
    raise ConvertError(f"{model_dir}: no weights: expected {SINGLE_FILE} or {INDEX_FILE}{hint}")


def index_tensors(model_dir: Path) -> dict[str, TensorRef]:
    """Every tensor of the model folder by name; a name in two shards is an error."""
    refs: dict[str, TensorRef] = {}
    for path in weight_files(model_dir):
        for name, ref in read_header(path).items():
            if name in refs:
                raise ConvertError(f"tensor {name!r} is in both {refs[name].path.name} and {path.name}")
            refs[name] = ref
    return refs


def load_f32(ref: TensorRef) -> np.ndarray:
    """The tensor as a float32 array (bf16 widened exactly: its bits are the top half of an f32)."""
    raw = np.memmap(ref.path, dtype=DTYPES[ref.dtype], mode="r", offset=ref.start,
                    shape=(ref.n_elements,))
    if ref.dtype == "BF16":
        out = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        out = np.asarray(raw, dtype=np.float32)
    return out.reshape(ref.shape)


def load_raw(ref: TensorRef) -> np.ndarray:
    """The tensor's stored values without conversion (bf16 as uint16 bit patterns)."""
    raw = np.memmap(ref.path, dtype=DTYPES[ref.dtype], mode="r", offset=ref.start, shape=(ref.n_elements,))
    return np.array(raw).reshape(ref.shape)
