"""Read a GGUF file's metadata without llama.cpp (for `psyedge info` and for choosing a template).

Loading a model in llama.cpp maps all of its weights; `psyedge info` and the Screener's template
check only need the key/value header, which this module reads directly (GGUF v2/v3, little
endian, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md). Large arrays (the token list,
the merges) are skipped and reported by their length only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from psyedge.errors import ModelError

_MAGIC = b"GGUF"
#: GGUF value type -> struct format of a scalar (8 = string, 9 = array are handled apart).
_SCALARS: dict[int, str] = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
#: Arrays longer than this are summarised as `ArrayInfo` instead of read into a list.
MAX_ARRAY_ITEMS = 64


@dataclass(frozen=True)
class ArrayInfo:
    """A long array's element type and length (its items are skipped)."""

    item_type: int
    length: int


@dataclass
class GGUFInfo:
    """A GGUF header: format version, tensor count and the key/values."""

    path: Path
    version: int
    n_tensors: int
    kv: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.kv.get(key, default)

    @property
    def architecture(self) -> str:
        return str(self.kv.get("general.architecture", ""))

    @property
    def n_vocab(self) -> int:
        tokens = self.kv.get("tokenizer.ggml.tokens")
        if isinstance(tokens, ArrayInfo):
            return tokens.length
        return len(tokens) if isinstance(tokens, list) else 0

    def summary(self) -> dict[str, Any]:
        """The facts `psyedge info` prints (small, JSON-serialisable)."""
        arch = self.architecture
        out: dict[str, Any] = {
            "path": str(self.path),
            "size_bytes": self.path.stat().st_size,
            "gguf_version": self.version,
            "architecture": arch,
            "name": self.kv.get("general.name", ""),
            "file_type": self.kv.get("general.file_type"),
            "n_tensors": self.n_tensors,
            "n_vocab": self.n_vocab,
            "tokenizer": self.kv.get("tokenizer.ggml.model", ""),
            "tokenizer_pre": self.kv.get("tokenizer.ggml.pre", ""),
            "context_length": self.kv.get(f"{arch}.context_length"),
            "n_layer": self.kv.get(f"{arch}.block_count"),
            "n_embd": self.kv.get(f"{arch}.embedding_length"),
            "has_chat_template": "tokenizer.chat_template" in self.kv,
        }
        out["psyedge"] = {k: v for k, v in self.kv.items() if k.startswith("psyedge.")}
        return out


def _read(f: BinaryIO, n: int, path: Path) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ModelError(f"{path}: truncated GGUF header (wanted {n} bytes at offset {f.tell()}); "
                         "the file is incomplete: copy or download it again")
    return data


def _string(f: BinaryIO, path: Path) -> str:
    (n,) = struct.unpack("<Q", _read(f, 8, path))
    return _read(f, n, path).decode("utf-8", errors="replace")


def _value(f: BinaryIO, vtype: int, path: Path) -> Any:
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype]
        return struct.unpack(fmt, _read(f, struct.calcsize(fmt), path))[0]
    if vtype == _STRING:
        return _string(f, path)
    if vtype == _ARRAY:
        item_type, length = struct.unpack("<IQ", _read(f, 12, path))
        if length <= MAX_ARRAY_ITEMS:
            return [_value(f, item_type, path) for _ in range(length)]
        if item_type in _SCALARS:
            f.seek(struct.calcsize(_SCALARS[item_type]) * length, 1)
        else:  # strings (or nested arrays): each has its own length
            for _ in range(length):
                _value(f, item_type, path)
        return ArrayInfo(item_type, length)
    raise ModelError(f"{path}: unknown GGUF value type {vtype} at offset {f.tell()}; not a GGUF this SDK can "
                     "read")


def read_info(path: str | Path) -> GGUFInfo:
    """Read the header of a GGUF file; `ModelError` naming the file when it is not one."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file not found: {p} (pass the path of a .gguf file)")
    with p.open("rb") as f:
        magic = f.read(4)
        if magic != _MAGIC:
            raise ModelError(f"{p} is not a GGUF file (starts with {magic!r}, expected b'GGUF')")
        version, n_tensors, n_kv = struct.unpack("<IQQ", _read(f, 20, p))
        if version < 2 or version > 3:
            raise ModelError(f"{p}: GGUF version {version} is not supported (expected 2 or 3)")
        info = GGUFInfo(p, version, n_tensors)
        for _ in range(n_kv):
            key = _string(f, p)
            (vtype,) = struct.unpack("<I", _read(f, 4, p))
            info.kv[key] = _value(f, vtype, p)
    return info
