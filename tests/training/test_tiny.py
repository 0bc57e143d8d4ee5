"""The tiny base model: Qwen2 shape, tokenizer faithful to Qwen2 / DeepSeek-R1, deterministic."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tokenizers import Tokenizer

from psyedge.prompt import get_template, render
from training.tiny import ADDED_TOKENS, BOS, EOS, PAD, QWEN2_SPLIT_REGEX, build_tiny_base


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_files_and_shape(tiny_base: Path) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja", "generation_config.json"):
        assert (tiny_base / name).is_file(), name
    cfg = json.loads((tiny_base / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForCausalLM"]
    assert (cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]) == (256, 512, 2)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]) == (4, 2, 64)
    assert cfg["tie_word_embeddings"] is False
    assert cfg["max_position_embeddings"] == 4096
    assert cfg["hidden_size"] % 256 == 0 and cfg["intermediate_size"] % 256 == 0
    assert cfg["rope_parameters"]["rope_theta"] == 10000.0


def test_tokenizer_contract(tiny_base: Path, tiny_tokenizer) -> None:
    tok = tiny_tokenizer
    cfg = json.loads((tiny_base / "config.json").read_text())
    assert len(tok) == cfg["vocab_size"], "every token id needs an embedding row"
    assert 3000 <= cfg["vocab_size"] <= 6000
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (BOS, EOS, PAD)
    assert tok.pad_token_id != tok.eos_token_id
    for t in (BOS, EOS, PAD, *ADDED_TOKENS):
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t
    ids = tok("你好")["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.eos_token_id not in ids
    assert (tiny_base / "chat_template.jinja").read_text() == get_template("deepseek-r1").jinja
    tcfg = json.loads((tiny_base / "tokenizer_config.json").read_text())
    assert tcfg["add_bos_token"] is True and tcfg["add_eos_token"] is False


def test_pretokenizer_is_qwen2(tiny_base: Path, tiny_tokenizer) -> None:
    raw = json.loads((tiny_base / "tokenizer.json").read_text())
    split, byte_level = raw["pre_tokenizer"]["pretokenizers"]
    assert split["pattern"]["Regex"] == QWEN2_SPLIT_REGEX and split["behavior"] == "Isolated"
    assert byte_level["type"] == "ByteLevel" and byte_level["use_regex"] is False
    assert raw["normalizer"]["type"] == "NFC"
    # transformers 5 rebuilds qwen2 tokenizers from vocab/merges: both load paths must agree.
    file_tok = Tokenizer.from_file(str(tiny_base / "tokenizer.json"))
    for text in ("abc's 12345 JSON\n\n  x", render([{"role": "user", "text": "最近考试压力很大，睡不着😀"}]),
                 '{"depression_level":2,"anxiety_level":1,"risk_flag":"none","student_distress_score":5}'):
        assert tiny_tokenizer(text)["input_ids"] == file_tok.encode(text).ids


def test_prompt_is_compact(tiny_tokenizer) -> None:
    """The SDK's instruction is mostly whole-word tokens (keeps tiny training near a minute)."""
    prompt = render([{"role": "user", "text": "最近考试压力很大，我每天晚上都睡不着。"}])
    assert len(tiny_tokenizer(prompt)["input_ids"]) < len(prompt) / 3


def test_deterministic(tiny_base: Path, tmp_path: Path) -> None:
    again = build_tiny_base(tmp_path / "again", seed=0)
    for name in ("tokenizer.json", "model.safetensors", "config.json"):
        assert _sha(again / name) == _sha(tiny_base / name), name
    other = build_tiny_base(tmp_path / "other", seed=1)
    assert _sha(other / "model.safetensors") != _sha(tiny_base / "model.safetensors")
    assert _sha(other / "tokenizer.json") == _sha(tiny_base / "tokenizer.json")
