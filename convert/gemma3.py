"""What Gemma 3 adds to the GGUF beyond the shared hyper-parameters, and what it must not have.

llama.cpp's `gemma3` graph (src/models/gemma3.cpp) takes from the file: the sliding window and
which layers use it (`attention.sliding_window_pattern`, one flag per layer; without it llama.cpp
assumes every 6th layer global), the RoPE base of the global layers (`rope.freq_base`, with the
linear scaling, which it applies to global layers only) and of the local ones
(`rope.freq_base_swa`), and an optional final logit soft-cap. It computes itself what it does not
read, so the converter refuses a config that disagrees with it: the query scale (1/sqrt(head_dim),
except 1/sqrt(n_embd / n_head) for the 62-layer model), the tanh-approximated GELU, causal
attention, no attention soft-cap. The embedding scale sqrt(n_embd) is in the graph.

Config names come in two generations: transformers 4 (`rope_theta`, `rope_local_base_freq`,
`sliding_window_pattern`) and 5 (`rope_parameters` per layer type, `layer_types`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf

from convert.errors import ConvertError

#: RMSNorm weights of HF Gemma are stored minus one (`x * (1 + w)`); llama.cpp multiplies by the
#: stored weight, so every `*norm.weight` gets +1 (as llama.cpp's own converter does).
NORM_SHIFT = 1.0
#: transformers 4 Gemma 3 default: every 6th layer global.
DEFAULT_PATTERN = 6
SLIDING, FULL = "sliding_attention", "full_attention"


def layer_types(config: dict[str, Any]) -> list[str]:
    """Per-layer attention kind, from `layer_types` or the transformers 4 period."""
    n_layer = int(config["num_hidden_layers"])
    kinds = config.get("layer_types")
    if kinds is None:
        period = int(config.get("sliding_window_pattern") or config.get("_sliding_window_pattern")
                     or DEFAULT_PATTERN)
        kinds = [FULL if (i + 1) % period == 0 else SLIDING for i in range(n_layer)]
    if len(kinds) != n_layer or set(kinds) - {SLIDING, FULL}:
        raise ConvertError(f"layer_types {kinds} is not one of {SLIDING!r}/{FULL!r} per layer "
                           f"for {n_layer} layers")
    return list(kinds)


def rope_bases(config: dict[str, Any]) -> tuple[float, float]:
    """(global theta, local theta) from either config generation."""
    params = config.get("rope_parameters") or {}
    if FULL in params:
        local = params.get(SLIDING, {})
        if local.get("rope_type", "default") != "default":
            raise ConvertError(f"rope_parameters.{SLIDING} has rope_type {local['rope_type']!r}; "
                               "llama.cpp scales the global layers only")
        return float(params[FULL]["rope_theta"]), float(local.get("rope_theta", 10000.0))
    theta = float(config.get("rope_theta", 1_000_000.0))
    return theta, float(config.get("rope_local_base_freq", 10000.0))


def check_config(config: dict[str, Any], path: Path) -> None:
    """Refuse what llama.cpp's graph would silently compute differently."""
    n_layer, n_embd = int(config["num_hidden_layers"]), int(config["hidden_size"])
    head_dim = int(config.get("head_dim", 256))
    n_head = int(config["num_attention_heads"])
    want_scalar = n_embd // n_head if n_layer == 62 else head_dim
    problems = []
    if float(config.get("query_pre_attn_scalar", want_scalar)) != want_scalar:
        problems.append(f"query_pre_attn_scalar {config['query_pre_attn_scalar']} (llama.cpp uses "
                        f"{want_scalar} for {n_layer} layers)")
    if config.get("attn_logit_softcapping") is not None:
        problems.append(f"attn_logit_softcapping {config['attn_logit_softcapping']} "
                        "(not in Gemma 3)")
    if config.get("hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
        problems.append(f"hidden_activation {config['hidden_activation']!r} (llama.cpp: tanh GELU)")
    if config.get("use_bidirectional_attention"):
        problems.append("use_bidirectional_attention true (llama.cpp's gemma3 graph is causal)")
    if problems:
        raise ConvertError(f"{path}: Gemma 3 config that llama.cpp cannot run as is: "
                           + "; ".join(problems))


def add_hparams(writer: gguf.GGUFWriter, config: dict[str, Any], path: Path) -> None:
    """The Gemma 3 keys: sliding window, its per-layer pattern, the local RoPE base, soft-cap."""
    check_config(config, path)
    kinds = layer_types(config)
    _, local_theta = rope_bases(config)
    window = config.get("sliding_window")
    if window and SLIDING in kinds:
        writer.add_sliding_window(int(window))
        writer.add_sliding_window_pattern([k == SLIDING for k in kinds])
        writer.add_rope_freq_base_swa(local_theta)
    softcap = config.get("final_logit_softcapping")
    if softcap:
        writer.add_final_logit_softcapping(float(softcap))
