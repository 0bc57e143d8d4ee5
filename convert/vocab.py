"""The byte-level BPE vocabulary: tokens, token types, merges, special ids and the pre-tokenizer.

llama.cpp does not run the Hugging Face pre-tokenizer; it re-implements a fixed set of them and
picks one by the `tokenizer.ggml.pre` name. Upstream's converter finds the name by hashing the
tokenization of a probe text; we compare the `Split` regex in tokenizer.json with the regexes in
`PRE_TOKENIZERS` (each the expression llama.cpp's `llama-vocab.cpp` implements for that name).
A tokenizer whose regex is not in the table fails unless the user names one (`--pre-tokenizer`),
because a wrong pre-tokenizer silently changes every token sequence.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import gguf

from convert.errors import ConvertError

log = logging.getLogger(__name__)

QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
#: A bare ByteLevel pre-tokenizer with use_regex=true applies GPT-2's expression.
GPT2_BYTELEVEL = "<ByteLevel use_regex>"

#: tokenizer.json Split regex -> llama.cpp pre-tokenizer name (llama-vocab.cpp maps `qwen2` and
#: `deepseek-r1-qwen` to the same LLAMA_VOCAB_PRE_TYPE_QWEN2; `llama-bpe` is LLAMA3; `gpt2` GPT2).
PRE_TOKENIZERS: dict[str, str] = {
    QWEN2_REGEX: "qwen2",
    LLAMA3_REGEX: "llama-bpe",
    GPT2_BYTELEVEL: "gpt2",
}
#: The DeepSeek-R1-Distill-Qwen BOS: a Qwen2 regex with this token is upstream's `deepseek-r1-qwen`.
DEEPSEEK_BOS = "<｜begin▁of▁sentence｜>"
#: Names `--pre-tokenizer` accepts: the ones this table can produce plus other llama.cpp BPE names
#: a user may know to be right for their tokenizer (llama-vocab.cpp's list, abridged).
KNOWN_NAMES: tuple[str, ...] = (
    "qwen2", "deepseek-r1-qwen", "llama-bpe", "gpt2", "deepseek-llm", "deepseek-coder", "deepseek-v3",
    "falcon", "starcoder", "refact", "command-r", "stablelm2", "olmo", "dbrx", "smaug-bpe", "smollm",
    "codeshell", "exaone", "chatglm-bpe", "gpt-4o", "tekken", "minerva-7b", "bloom", "poro-chat", "viking",
)


def read_tokenizer_json(model_dir: Path) -> dict[str, Any]:
    """tokenizer.json as a dict, whatever kind of tokenizer it describes."""
    path = model_dir / "tokenizer.json"
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConvertError(f"{model_dir}: no tokenizer.json; save the tokenizer with "
                           "tokenizer.save_pretrained()") from None
    except json.JSONDecodeError as exc:
        raise ConvertError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def load_tokenizer_json(model_dir: Path) -> dict[str, Any]:
    """tokenizer.json, checked to be a byte-level BPE (what `add_vocab` writes)."""
    path = model_dir / "tokenizer.json"
    tok = read_tokenizer_json(model_dir)
    model = tok.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise ConvertError(f"{path}: model type {model.get('type')!r} (byte_fallback="
                           f"{model.get('byte_fallback')}) is not a byte-level BPE; this "
                           "writer handles GPT-2-style BPE (Qwen2, Llama 3); byte-fallback "
                           "vocabularies go to convert.vocab_spm")
    if "ByteLevel" not in json.dumps(tok.get("pre_tokenizer")):
        raise ConvertError(f"{path}: pre_tokenizer has no ByteLevel step: not a byte-level BPE")
    return tok


def _split_regex(pre: Any) -> str | None:
    """The Split regex of the pre-tokenizer, GPT2_BYTELEVEL for a regex-splitting ByteLevel."""
    steps = pre.get("pretokenizers", [pre]) if isinstance(pre, dict) else []
    for step in steps:
        if step.get("type") == "Split":
            pattern = step.get("pattern", {})
            return pattern.get("Regex") or pattern.get("String")
    for step in steps:
        if step.get("type") == "ByteLevel" and step.get("use_regex", True):
            return GPT2_BYTELEVEL
    return None


def detect_pre_tokenizer(tok: dict[str, Any], override: str | None = None) -> str:
    """The llama.cpp pre-tokenizer name for this tokenizer (or the checked `override`)."""
    if override:
        if override not in KNOWN_NAMES:
            raise ConvertError(f"--pre-tokenizer {override!r} is not a llama.cpp BPE pre-tokenizer name; "
                               f"expected one of {list(KNOWN_NAMES)}")
        return override
    regex = _split_regex(tok.get("pre_tokenizer"))
    name = PRE_TOKENIZERS.get(regex or "")
    if name is None:
        raise ConvertError(f"unknown pre-tokenizer: tokenizer.json splits with {regex!r}, which is not "
                           f"one llama.cpp implements for {sorted(set(PRE_TOKENIZERS.values()))}; if you "
                           "know which llama.cpp pre-tokenizer matches it, pass --pre-tokenizer NAME")
    added = {t.get("content") for t in tok.get("added_tokens", [])}
    if name == "qwen2" and DEEPSEEK_BOS in added:
        name = "deepseek-r1-qwen"
    normalizer = tok.get("normalizer")
    if normalizer and normalizer.get("type") != "NFC":
        log.warning("tokenizer.json normaliser %s is not applied by llama.cpp: texts it changes will "
                    "tokenize differently", normalizer.get("type"))
    return name


def looks_special(text: str) -> bool:
    """Chat markers written `<|...|>` (ChatML) or `<｜...｜>` (DeepSeek, full-width bars) are
    control tokens even when tokenizer.json does not flag them special, as upstream treats them."""
    return ((text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<｜") and text.endswith("｜>")))


def token_table(tok: dict[str, Any], n_vocab: int) -> tuple[list[str], list[int]]:
    """Tokens (byte-level text) and GGUF token types for ids 0..n_vocab-1.

    Ids the tokenizer does not use (embedding rows padded to a round size) become `[PAD<id>]`
    with type UNUSED, since llama.cpp needs one entry per embedding row.
    """
    by_id: dict[int, tuple[str, int]] = {}
    for text, tid in tok["model"]["vocab"].items():
        by_id[int(tid)] = (text, gguf.TokenType.NORMAL)
    for added in tok.get("added_tokens", []):
        text, tid = added["content"], int(added["id"])
        special = added.get("special") or looks_special(text)
        by_id[tid] = (text, gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
    if by_id and max(by_id) >= n_vocab:
        raise ConvertError(f"tokenizer has token id {max(by_id)} but the model has only {n_vocab} embedding "
                           "rows: the tokenizer does not belong to these weights (resize the embeddings)")
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_vocab):
        text, kind = by_id.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED))
        tokens.append(text)
        types.append(int(kind))
    return tokens, types


def add_vocab(writer: gguf.GGUFWriter, model_dir: Path, n_vocab: int,
              pre_override: str | None = None) -> tuple[str, str | None]:
    """Write tokenizer keys (model, pre, tokens, types, merges, special ids, add_bos, chat template).

    Returns the pre-tokenizer name and the chat template written (None when the tokenizer has
    none). Merges, special ids and the chat template are read by gguf-py's `SpecialVocab`
    (tokenizer_config.json / chat_template.jinja), the same reader upstream's converter uses.
    """
    tok = load_tokenizer_json(model_dir)
    pre = detect_pre_tokenizer(tok, pre_override)
    tokens, types = token_table(tok, n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=n_vocab)
    if not special.merges:
        raise ConvertError(f"{model_dir / 'tokenizer.json'}: no BPE merges: the tokenizer cannot be used")
    special.add_to_gguf(writer, quiet=True)
    log.info("vocab: %d tokens, %d merges, pre-tokenizer %s, special ids %s", n_vocab, len(special.merges),
             pre, special.special_token_ids)
    template = special.chat_template
    return pre, template if isinstance(template, str) else None

