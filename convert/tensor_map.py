"""Architectures the converter knows, and how each Hugging Face tensor becomes a GGUF tensor.

Names come from gguf-py's `TensorNameMap` (the table llama.cpp itself maintains), so this module
only records what differs per architecture: the GGUF architecture, and whether q/k projections
must be permuted (llama.cpp's `llama` graph applies RoPE to interleaved pairs, while transformers
stores Llama's q/k rows split in halves; Qwen2 uses NeoX-style RoPE on halves in both, so no
permutation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf import MODEL_ARCH, MODEL_ARCH_NAMES, GGMLQuantizationType, TensorNameMap

from convert import gemma3
from convert.errors import ConvertError

#: Writes an architecture's own keys from config.json (path for messages), after the shared ones.
ExtraHParams = Callable[[gguf.GGUFWriter, dict[str, Any], Path], None]


@dataclass(frozen=True)
class ArchSpec:
    """What the converter needs to know about one Hugging Face architecture.

    `norm_shift` is added to every `*norm.weight` (Gemma's RMSNorm convention); `extra_hparams`
    writes the keys only this architecture has.
    """

    arch: MODEL_ARCH
    permute_qk: bool
    norm_shift: float = 0.0
    extra_hparams: ExtraHParams | None = None

    @property
    def name(self) -> str:
        return MODEL_ARCH_NAMES[self.arch]


#: HF `architectures[0]` -> spec. DeepSeek-R1-Distill-Qwen is `Qwen2ForCausalLM`.
ARCHITECTURES: dict[str, ArchSpec] = {
    "Qwen2ForCausalLM": ArchSpec(MODEL_ARCH.QWEN2, permute_qk=False),
    "LlamaForCausalLM": ArchSpec(MODEL_ARCH.LLAMA, permute_qk=True),
    # Gemma 3 rotates halves like transformers (NeoX style): no permutation.
    "Gemma3ForCausalLM": ArchSpec(MODEL_ARCH.GEMMA3, permute_qk=False, norm_shift=gemma3.NORM_SHIFT,
                                  extra_hparams=gemma3.add_hparams),
}
#: Tensors that get `ArchSpec.norm_shift` (HF: input_layernorm, q_norm, model.norm, ...).
NORM_SUFFIX = "norm.weight"

#: Tensors in some checkpoints that llama.cpp recomputes itself (rotary caches).
SKIPPED_SUFFIXES: tuple[str, ...] = (".rotary_emb.inv_freq",)

#: --outtype -> GGML type of 2-D weights. 1-D tensors (norms, biases) stay F32, as llama.cpp wants.
OUTTYPES: dict[str, GGMLQuantizationType] = {
    "f32": GGMLQuantizationType.F32,
    "f16": GGMLQuantizationType.F16,
    "bf16": GGMLQuantizationType.BF16,
}


class NameMapper:
    """HF tensor name -> GGUF tensor name for one architecture and layer count."""

    def __init__(self, spec: ArchSpec, n_layer: int) -> None:
        self._map = TensorNameMap(spec.arch, n_layer)
        self.spec = spec

    def norm_shift(self, hf_name: str) -> float:
        """What to add to this tensor's values (0 for all but an architecture's norm weights)."""
        return self.spec.norm_shift if hf_name.endswith(NORM_SUFFIX) else 0.0

    def gguf_name(self, hf_name: str) -> str | None:
        """The GGUF name, None for a tensor to skip; an unknown tensor is an error."""
        if hf_name.endswith(SKIPPED_SUFFIXES):
            return None
        name = self._map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ConvertError(f"tensor {hf_name!r} has no GGUF name for architecture {self.spec.name}: "
                               "the checkpoint has layers this architecture does not have (was the adapter "
                               "merged? is config.json's architectures right?)")
        return name


def permute_qk(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder each head's rows from halves (HF Llama) to interleaved pairs (llama.cpp `llama`).

    Per head the rows are [r0..r(d/2-1) | r(d/2)..r(d-1)]; llama.cpp rotates (r0, r1), (r2, r3)...
    so row i of the first half goes to 2i and row i of the second half to 2i+1.
    """
    rows = weights.shape[0]
    assert rows % (2 * n_head) == 0, f"{rows} rows do not split into {n_head} heads of two halves"
    return (weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def llama3_rope_factors(head_dim: int, theta: float, scaling: dict[str, float]) -> np.ndarray:
    """Per-frequency divisors of Llama 3.1's RoPE scaling ("llama3" rope_type), stored as the
    `rope_freqs` tensor; the formula is Meta's: long wavelengths are slowed by `factor`, short ones
    kept, the band between interpolated smoothly."""
    factor = float(scaling.get("factor", 8.0))
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for i in range(0, head_dim, 2):
        freq = 1.0 / theta ** (i / head_dim)
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def stored_type(outtype: str, n_dims: int) -> GGMLQuantizationType:
    """GGML type for a tensor of `n_dims` dimensions under `--outtype`."""
    return OUTTYPES[outtype] if n_dims >= 2 else GGMLQuantizationType.F32
