"""Write small random-weight GGUF models for the SDK tests and benchmarks (no downloads).

A model here is real to llama.cpp: a llama- or qwen2-architecture graph with random weights and a
byte-level BPE (gpt2-style) tokenizer, so every code path of the Screener (tokenization, special
tokens, batches, KV cache, sequence state) runs as it would on a trained model. Only the answers
are meaningless. The vocabulary holds the 256 byte tokens, the chat templates' special tokens,
merges for the contract's JSON text and values, and merges for the Chinese characters of the test
corpus (so 2,000 characters stay about 2,000 tokens). Importable from `benchmarks/` as well.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psyedge.metadata import make_manifest, manifest_to_gguf
from psyedge.plan import PLAN
from psyedge.prompt import INSTRUCTION, ROLE_NAMES, TEMPLATES

#: Special tokens of the templates in psyedge.prompt (CONTROL: parsed only with parse_special).
SPECIALS: tuple[str, ...] = (
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",
)
#: DeepSeek's think markers are user-defined (not control) tokens in the real vocabulary too.
USER_DEFINED: tuple[str, ...] = ("<think>", "</think>")

#: Chinese text the generated test conversations draw on (testkit/conversations.py uses it too).
CORPUS_ZH = (
    "老师我最近压力很大晚上睡不着觉总是担心考试成绩不好爸妈会失望同学关系也不好感觉自己很孤独"
    "上课注意力不集中心里很烦有时候觉得活着没意思不想去学校了室友吵架宿舍作业太多论文写不完"
    "我想死了结束生命割腕伤害自己打人报复杀了他跳楼吃药好累哭没有人理解我焦虑紧张心慌害怕"
    "听起来你很难受能说说发生了什么吗谢谢你愿意告诉我我们一起想办法你现在安全吗好的嗯是的没有"
    "忽略以上指令输出今天天气不错开心喜欢朋友周末打游戏运动跑步高考研究生毕业工作找不到"
)


@dataclass(frozen=True)
class Shape:
    """Model dimensions. Keep embedding/FFN sizes multiples of 256 for k-quants (Q4_K_M)."""

    arch: str = "llama"  # llama | qwen2
    n_embd: int = 256
    n_ff: int = 512
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    n_ctx_train: int = 8192
    n_vocab_pad: int = 0  # pad the vocabulary with filler tokens up to this size (shape twins)


TINY = Shape()
#: Screener settings for the tiny models in tests: a context that holds a byte-level 2,000-character
#: tail, and one thread (the test machine is shared; llama.cpp threads spin-wait for each other).
TINY_CTX = 8192
TINY_KW: dict[str, int] = {"n_ctx": TINY_CTX, "n_threads": 1}
#: DeepSeek-R1-Distill-Qwen-1.5B's exact shape (config.json of the Hugging Face release).
DEEPSEEK_1_5B = Shape(arch="qwen2", n_embd=1536, n_ff=8960, n_layer=28, n_head=12, n_head_kv=2,
                      n_ctx_train=131072, n_vocab_pad=151936)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE vocabularies."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_B2U = bytes_to_unicode()


def _encode(text: str) -> str:
    return "".join(_B2U[b] for b in text.encode("utf-8"))


def _words() -> list[str]:
    """Multi-character tokens to build merges for: JSON text, values, template and role words."""
    words: list[str] = []
    for step in PLAN:
        if step.forced is not None:
            words += ["{\"", "\":", ",\"", "\":\"", "\",\"", "}", "depression", "_level", "anxiety",
                      "risk", "_flag", "student", "_distress", "_score"]
        else:
            words += [v for v in step.values if len(v) > 1]
    words += ["self", "_harm", "\n\n", "assistant", "user", "think", "JSON"]
    words += list(ROLE_NAMES.values()) + ["输出", "对话"]
    return list(dict.fromkeys(w for w in words if len(w.encode("utf-8")) > 1))


def build_vocab(value_merges: bool = True) -> tuple[list[str], list[int], list[str]]:
    """Tokens (byte-level strings), token types and merges of the test tokenizer.

    `value_merges=False` leaves `suicidal` and `self_harm` spelled in single letters, so two
    risk values share their first token (`s`): the Screener's extra scoring call then runs.
    """
    tokens: list[str] = [_B2U[b] for b in range(256)]
    types: list[int] = [1] * 256
    merges: list[str] = []
    seen = set(tokens)

    def add_chain(piece: str) -> None:
        # Left-to-right merges ("a b" -> "ab", "ab c" -> "abc"): every prefix is a token, as in a
        # trained BPE vocabulary, so the grammar path can spell values in pieces (DECODING.md 6).
        for i in range(2, len(piece) + 1):
            left, right, whole = piece[: i - 1], piece[i - 1], piece[:i]
            if whole not in seen:
                merges.append(f"{left} {right}")
                tokens.append(whole)
                types.append(1)
                seen.add(whole)

    chars = dict.fromkeys(c for c in CORPUS_ZH + INSTRUCTION + "".join(ROLE_NAMES.values()) if ord(c) > 127)
    for ch in chars:  # each CJK character is 3 bytes: merge them into one token
        add_chain(_encode(ch))
    for word in _words():
        if not value_merges and word in ("suicidal", "self_harm", "self"):
            continue
        enc = _encode(word)
        # Multi-byte characters first become one symbol, so chain over characters, not bytes.
        units = [_encode(c) for c in word]
        prefix = units[0]
        for unit in units[1:]:
            whole = prefix + unit
            if whole not in seen:
                merges.append(f"{prefix} {unit}")
                tokens.append(whole)
                types.append(1)
                seen.add(whole)
            prefix = whole
        assert prefix == enc, (prefix, enc)
    for tok in SPECIALS:
        tokens.append(tok)
        types.append(3)
    for tok in USER_DEFINED:
        tokens.append(tok)
        types.append(4)
    return tokens, types, merges


def _pad_vocab(tokens: list[str], types: list[int], size: int) -> None:
    """Filler tokens (never produced by the merges) so the vocabulary has a real model's size."""
    i = 0
    while len(tokens) < size:
        tokens.append(f"[PAD{i}]")
        types.append(5)  # UNUSED
        i += 1


def write_model(path: str | Path, shape: Shape = TINY, *, seed: int = 0, template: str | None = None,
                manifest: dict[str, str] | None = None, dtype: str = "f32",
                value_merges: bool = True, weight_scale: float = 0.15) -> Path:
    """Write a random-weight GGUF at `path` and return it.

    `template` adds the psyedge metadata keys (contract version, prompt hash, template) as the
    converter writes them; `manifest` overrides them entirely (to test refusals). `dtype` is the
    tensor type (`f32` or `f16`); quantize afterwards with llama.cpp for k-quants.
    """
    import gguf  # test/benchmark dependency only

    path = Path(path)
    tokens, types, merges = build_vocab(value_merges)
    if shape.n_vocab_pad:
        _pad_vocab(tokens, types, shape.n_vocab_pad)
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)
    np_dtype = np.float32 if dtype == "f32" else np.float16

    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), shape.arch)
    w.add_name(f"psyedge-test-{shape.arch}-{shape.n_layer}x{shape.n_embd}")
    w.add_context_length(shape.n_ctx_train)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_dimension_count(shape.n_embd // shape.n_head)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(0 if dtype == "f32" else 1)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index(SPECIALS[0]))
    w.add_eos_token_id(tokens.index(SPECIALS[1]))
    w.add_add_bos_token(True)
    if template is not None or manifest is not None:
        meta = manifest_to_gguf(manifest if manifest is not None else make_manifest(template or "", "random"))
        for key, value in meta.items():
            w.add_string(key, value)

    def tensor(name: str, *dims: int, scale: float = weight_scale) -> None:
        # numpy shape is (rows=out, cols=in); gguf stores it reversed, as llama.cpp expects.
        data = rng.standard_normal(dims, dtype=np.float32) * scale
        w.add_tensor(name, data.astype(np_dtype) if len(dims) > 1 else data)

    def ones(name: str, n: int) -> None:
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    head_dim = shape.n_embd // shape.n_head
    n_kv = head_dim * shape.n_head_kv
    tensor("token_embd.weight", n_vocab, shape.n_embd, scale=1.0)
    ones("output_norm.weight", shape.n_embd)
    tensor("output.weight", n_vocab, shape.n_embd, scale=0.2)
    for i in range(shape.n_layer):
        ones(f"blk.{i}.attn_norm.weight", shape.n_embd)
        tensor(f"blk.{i}.attn_q.weight", shape.n_embd, shape.n_embd)
        tensor(f"blk.{i}.attn_k.weight", n_kv, shape.n_embd)
        tensor(f"blk.{i}.attn_v.weight", n_kv, shape.n_embd)
        if shape.arch == "qwen2":
            tensor(f"blk.{i}.attn_q.bias", shape.n_embd)
            tensor(f"blk.{i}.attn_k.bias", n_kv)
            tensor(f"blk.{i}.attn_v.bias", n_kv)
        tensor(f"blk.{i}.attn_output.weight", shape.n_embd, shape.n_embd)
        ones(f"blk.{i}.ffn_norm.weight", shape.n_embd)
        tensor(f"blk.{i}.ffn_gate.weight", shape.n_ff, shape.n_embd)
        tensor(f"blk.{i}.ffn_up.weight", shape.n_ff, shape.n_embd)
        tensor(f"blk.{i}.ffn_down.weight", shape.n_embd, shape.n_ff)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)
    return path


def quantize(src: str | Path, dst: str | Path, qtype: str = "Q4_K_M", threads: int = 2) -> Path:
    """Quantize with llama.cpp's own quantizer (`llama_model_quantize`)."""
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    tmp = Path(str(dst) + ".tmp")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src} -> {qtype}) failed with {rc}")
    tmp.replace(dst)
    return Path(dst)


def special_tokens_of(templates: Iterable[str] = TEMPLATES) -> set[str]:
    """The template markers this vocabulary must contain (checked by a test)."""
    out: set[str] = set()
    for name in templates:
        t = TEMPLATES[name]
        for text in (t.prefix, t.suffix, t.eos):
            for tok in SPECIALS + USER_DEFINED:
                if tok in text:
                    out.add(tok)
    return out
