"""Gemma 3 config reading and the SentencePiece-style vocabulary, on small hand-made inputs."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from convert import gemma3
from convert.errors import ConvertError
from convert.hf_model import read_hparams
from convert.vocab_spm import add_space_prefix, is_sentencepiece_bpe, merge_scores, spm_token_table

V5 = {"num_hidden_layers": 6, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
      "num_key_value_heads": 1, "head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": 8,
      "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
      "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                          "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}
V4 = {k: v for k, v in V5.items() if k not in ("layer_types", "rope_parameters")}
V4 |= {"rope_theta": 1e6, "rope_local_base_freq": 1e4, "sliding_window_pattern": 3}


def test_both_config_generations_give_the_pattern_and_both_rope_bases() -> None:
    assert gemma3.layer_types(V5) == ["sliding_attention"] * 5 + ["full_attention"]
    assert gemma3.layer_types(V4) == ["sliding_attention"] * 2 + ["full_attention"] + \
        ["sliding_attention"] * 2 + ["full_attention"]
    assert gemma3.rope_bases(V5) == gemma3.rope_bases(V4) == (1e6, 1e4)
    assert read_hparams(V5, Path("config.json")).rope_theta == 1e6  # the global layers' base


@pytest.mark.parametrize(("change", "needle"), [
    ({"query_pre_attn_scalar": 64}, "query_pre_attn_scalar"),
    ({"attn_logit_softcapping": 50.0}, "attn_logit_softcapping"),
    ({"hidden_activation": "gelu"}, "hidden_activation"),
    ({"use_bidirectional_attention": True}, "causal"),
    ({"layer_types": ["sliding_attention"] * 5}, "layer_types"),
])
def test_configs_llama_cpp_would_run_differently_are_refused(change: dict, needle: str) -> None:
    writer = gguf.GGUFWriter(None, "gemma3")
    with pytest.raises(ConvertError, match=needle):
        gemma3.add_hparams(writer, V5 | change, Path("config.json"))


def _spm(merges: list[list[str]]) -> dict:
    vocab = {"<unk>": 0, "<bos>": 1, "▁": 2, "a": 3, "b": 4, "ab": 5, "▁a": 6, "▁ab": 7}
    vocab |= {f"<0x{i:02X}>": 8 + i for i in range(256)}
    return {"model": {"type": "BPE", "byte_fallback": True, "unk_token": "<unk>", "vocab": vocab,
                      "merges": merges},
            "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
            "added_tokens": [{"id": 1, "content": "<bos>", "special": True}]}


def test_scores_follow_the_first_merge_that_makes_each_token() -> None:
    tok = _spm([["a", "b"], ["▁", "a"], ["▁a", "b"], ["▁", "ab"]])
    scores, unmerged = merge_scores(tok)
    assert scores == {"ab": 0.0, "▁a": -1.0, "▁ab": -2.0} and unmerged == -4.0
    assert is_sentencepiece_bpe(tok) and not add_space_prefix(tok)
    tokens, values, types = spm_token_table(tok, 8 + 256 + 2)
    assert tokens[5] == "ab" and values[5] == 0.0 and values[3] == -4.0
    assert types[0] == gguf.TokenType.UNKNOWN and types[1] == gguf.TokenType.CONTROL
    assert types[8] == gguf.TokenType.BYTE and tokens[-1] == f"[PAD{8 + 256 + 1}]"
    with_prefix = tok | {"normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, tok["normalizer"]]}}
    assert add_space_prefix(with_prefix)


def test_a_vocabulary_without_all_256_bytes_is_refused() -> None:
    tok = _spm([["a", "b"]])
    del tok["model"]["vocab"]["<0xFF>"]
    with pytest.raises(ConvertError, match="255 byte tokens"):
        spm_token_table(tok, 8 + 256)
