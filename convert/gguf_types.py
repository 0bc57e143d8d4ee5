"""Read back what a GGUF file holds: file type, per-tensor storage types, chosen keys.

Quantisation reports and tests check the written file itself, not what we asked for: llama.cpp
silently substitutes a fallback type for a tensor whose rows do not fit the k-quant block.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
from gguf import GGMLQuantizationType, GGUFReader, LlamaFileType


@dataclass(frozen=True)
class TensorType:
    """One tensor's name, storage type name and shape (GGUF order: fastest dimension first)."""

    name: str
    type: str
    shape: tuple[int, ...]


def _field_value(reader: GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    if field is None:
        return None
    value = field.contents()
    return value


def read_summary(path: str | Path) -> dict[str, Any]:
    """File type name, tensors with types, the chat template and the psyedge.* keys."""
    reader = GGUFReader(path)
    ftype = _field_value(reader, gguf.Keys.General.FILE_TYPE)
    tensors = [TensorType(t.name, GGMLQuantizationType(t.tensor_type).name, tuple(int(x) for x in t.shape))
               for t in reader.tensors]
    return {
        "file_type": LlamaFileType(ftype).name if ftype is not None else None,
        "architecture": _field_value(reader, gguf.Keys.General.ARCHITECTURE),
        "chat_template": _field_value(reader, gguf.Keys.Tokenizer.CHAT_TEMPLATE),
        "tokenizer_pre": _field_value(reader, gguf.Keys.Tokenizer.PRE),
        "psyedge": {f.name: f.contents() for f in reader.fields.values() if f.name.startswith("psyedge.")},
        "tensors": tensors,
    }


def type_counts(tensors: list[TensorType]) -> dict[str, int]:
    """How many tensors are stored in each type."""
    return dict(sorted(Counter(t.type for t in tensors).items()))
