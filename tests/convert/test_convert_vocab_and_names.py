"""Pre-tokenizer detection, the token table, tensor names, the Llama q/k permutation, RoPE factors."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from gguf import TokenType

from convert.errors import ConvertError
from convert.tensor_map import ARCHITECTURES, NameMapper, llama3_rope_factors, permute_qk
from convert.vocab import LLAMA3_REGEX, QWEN2_REGEX, detect_pre_tokenizer, token_table


def _tok(regex: str | None, added: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    pre: dict[str, Any] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    if regex is None:
        pre = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    return {"normalizer": {"type": "NFC"}, "pre_tokenizer": pre, "added_tokens": added or [],
            "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}}


def test_pre_tokenizer_table() -> None:
    assert detect_pre_tokenizer(_tok(QWEN2_REGEX)) == "qwen2"
    assert detect_pre_tokenizer(_tok(LLAMA3_REGEX)) == "llama-bpe"
    assert detect_pre_tokenizer(_tok(None)) == "gpt2"
    deepseek = _tok(QWEN2_REGEX, [{"id": 3, "content": "<｜begin▁of▁sentence｜>", "special": True}])
    assert detect_pre_tokenizer(deepseek) == "deepseek-r1-qwen"


def test_unknown_pre_tokenizer_fails_unless_named() -> None:
    odd = _tok(r"\p{N}{1,5}|\s+")
    with pytest.raises(ConvertError, match=r"unknown pre-tokenizer.*--pre-tokenizer NAME"):
        detect_pre_tokenizer(odd)
    assert detect_pre_tokenizer(odd, override="llama-bpe") == "llama-bpe"
    with pytest.raises(ConvertError, match="'my-own' is not a llama.cpp"):
        detect_pre_tokenizer(odd, override="my-own")


def test_token_types_and_padding() -> None:
    tok = _tok(QWEN2_REGEX, [
        {"id": 3, "content": "<｜end▁of▁sentence｜>", "special": True},
        {"id": 4, "content": "<｜User｜>", "special": False},   # looks special: control, as upstream
        {"id": 5, "content": "<think>", "special": False},       # plain added token: user-defined
    ])
    tokens, types = token_table(tok, n_vocab=8)
    assert tokens == ["a", "b", "ab", "<｜end▁of▁sentence｜>", "<｜User｜>", "<think>", "[PAD6]", "[PAD7]"]
    assert types == [TokenType.NORMAL] * 3 + [TokenType.CONTROL, TokenType.CONTROL, TokenType.USER_DEFINED,
                                              TokenType.UNUSED, TokenType.UNUSED]


def test_token_id_beyond_embedding_rows() -> None:
    tok = _tok(QWEN2_REGEX, [{"id": 9, "content": "<x>", "special": True}])
    with pytest.raises(ConvertError, match="token id 9 but the model has only 4 embedding rows"):
        token_table(tok, n_vocab=4)


def test_qwen2_names_and_unknown_tensor() -> None:
    mapper = NameMapper(ARCHITECTURES["Qwen2ForCausalLM"], n_layer=2)
    assert mapper.gguf_name("model.embed_tokens.weight") == "token_embd.weight"
    assert mapper.gguf_name("model.layers.1.self_attn.q_proj.bias") == "blk.1.attn_q.bias"
    assert mapper.gguf_name("model.layers.0.mlp.down_proj.weight") == "blk.0.ffn_down.weight"
    assert mapper.gguf_name("lm_head.weight") == "output.weight"
    assert mapper.gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq") is None
    with pytest.raises(ConvertError, match="lora_A"):
        mapper.gguf_name("model.layers.0.self_attn.q_proj.lora_A.weight")


def _rope(v: np.ndarray, pos: int, pairs: str, base: float = 10000.0) -> np.ndarray:
    """RoPE on one head vector: `neox` pairs (i, i+d/2) like transformers, `normal` pairs (2i, 2i+1)."""
    d = v.shape[0]
    out = v.copy()
    for i in range(d // 2):
        a, b = (i, i + d // 2) if pairs == "neox" else (2 * i, 2 * i + 1)
        th = pos * base ** (-2 * i / d)
        out[a] = v[a] * np.cos(th) - v[b] * np.sin(th)
        out[b] = v[a] * np.sin(th) + v[b] * np.cos(th)
    return out


def test_permute_makes_interleaved_rope_match_transformers() -> None:
    """Attention scores from HF weights + NeoX RoPE equal permuted weights + llama.cpp's RoPE."""
    rng = np.random.default_rng(0)
    n_head, d, n_embd = 2, 8, 16
    wq, wk = rng.normal(size=(n_head * d, n_embd)), rng.normal(size=(n_head * d, n_embd))
    x1, x2 = rng.normal(size=n_embd), rng.normal(size=n_embd)
    pq, pk = permute_qk(copy.deepcopy(wq), n_head), permute_qk(copy.deepcopy(wk), n_head)
    for h in range(n_head):
        sl = slice(h * d, (h + 1) * d)
        hf = _rope((wq @ x1)[sl], 5, "neox") @ _rope((wk @ x2)[sl], 2, "neox")
        gg = _rope((pq @ x1)[sl], 5, "normal") @ _rope((pk @ x2)[sl], 2, "normal")
        assert gg == pytest.approx(hf, rel=1e-10)


def test_llama3_rope_factors_bands() -> None:
    f = llama3_rope_factors(64, 500000.0, {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                           "original_max_position_embeddings": 8192})
    assert f.shape == (32,) and f.dtype == np.float32
    assert f[0] == 1.0 and f[-1] == 8.0            # short wavelengths kept, long ones slowed 8x
    assert np.all(np.diff(f) >= 0)                 # monotone through the smooth band


def test_llama_bpe_pre_tokenizer_parity(tiny_dir, tmp_path, conversations) -> None:
    """A Llama-3-style tokenizer (digits split in threes) is detected as `llama-bpe` and llama.cpp
    then tokenizes like Hugging Face, digits and the rendered prompt included."""
    import json
    import shutil

    import llama_cpp
    from tokenizers import Tokenizer

    from convert.to_gguf import convert
    from psyedge.prompt import render

    model = tmp_path / "llama3-tok"
    model.mkdir()
    tok = json.loads((tiny_dir / "tokenizer.json").read_text("utf-8"))
    tok["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = LLAMA3_REGEX
    (model / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), "utf-8")
    shutil.copy(tiny_dir / "tokenizer_config.json", model / "tokenizer_config.json")
    config = json.loads((tiny_dir / "config.json").read_text())
    config["architectures"] = ["LlamaForCausalLM"]
    (model / "config.json").write_text(json.dumps(config))
    res = convert(model, tmp_path / "v.gguf", vocab_only=True)
    assert res.pre_tokenizer == "llama-bpe" and res.arch == "llama"
    hf = Tokenizer.from_file(str(model / "tokenizer.json"))
    llm = llama_cpp.Llama(str(res.path), vocab_only=True, verbose=False)
    texts = [render(c) for c in conversations] + ["学号2023123456，考了 98.5 分，排名 12/345。\n\n\t  end "]
    for text in texts:
        assert llm.tokenize(text.encode(), add_bos=False,
                            special=True) == hf.encode(text, add_special_tokens=False).ids
    pieces = [p for p, _ in hf.pre_tokenizer.pre_tokenize_str("1234567")]
    assert pieces == ["123", "456", "7"]  # the llama3 split (qwen2 splits every digit) really is in use
