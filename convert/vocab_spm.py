"""The SentencePiece-style vocabulary (Gemma): tokens, scores, token types, special ids, flags.

tokenizer.json describes such a vocabulary as a BPE with `byte_fallback` over "▁"-spelled text
(spaces become "▁"; a character missing from the vocabulary becomes its UTF-8 bytes `<0xXX>`).
llama.cpp's `llama` (SPM) tokenizer reproduces it from per-token scores instead of a merge list:
starting from single characters it repeatedly joins the adjacent pair whose joined text is a token
with the highest score. Hugging Face's merge list for such a vocabulary holds every split of each
token into two vocabulary pieces, ranked by the token it makes, so scoring each token with minus
the rank of the first merge that makes it gives llama.cpp the same order. A token no merge makes
(single characters) scores below every merge, so llama.cpp would join it last. This reads
tokenizer.json only, so a folder without `tokenizer.model` (the one `make base-gemma` writes)
converts the same way as a hub download; upstream's converter reads `tokenizer.model` with the
sentencepiece package.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import gguf

from convert.errors import ConvertError

log = logging.getLogger(__name__)

SPM_PRE = "default"  # llama.cpp applies no pre-tokenizer to an SPM vocabulary
BYTE_TOKEN = re.compile(r"^<0x[0-9A-F]{2}>$")
#: Scores upstream gives tokens the merge order never reaches (matched whole, or bytes).
SPECIAL_SCORE = -1000.0


def is_sentencepiece_bpe(tok: dict[str, Any]) -> bool:
    """A byte-fallback BPE (SentencePiece converted by transformers), not a byte-level one."""
    model = tok.get("model") or {}
    return model.get("type") == "BPE" and bool(model.get("byte_fallback"))


def _merge_pairs(tok: dict[str, Any]) -> list[tuple[str, str]]:
    """Merges as pairs: tokenizers writes `["a", "b"]` (new) or `"a b"` (old; no spaces in pieces,
    since SentencePiece spells them "▁")."""
    out = []
    for merge in tok["model"].get("merges") or []:
        pair = tuple(merge) if isinstance(merge, list) else tuple(merge.split(" "))
        if len(pair) != 2:
            raise ConvertError(f"tokenizer.json: merge {merge!r} is not a pair of tokens")
        out.append(pair)
    return out


def merge_scores(tok: dict[str, Any]) -> tuple[dict[str, float], float]:
    """token -> minus the rank of the first merge that makes it (higher = merged earlier), and
    the score for tokens no merge makes (below all of those)."""
    scores: dict[str, float] = {}
    pairs = _merge_pairs(tok)
    for rank, (left, right) in enumerate(pairs):
        scores.setdefault(left + right, -float(rank))
    return scores, -float(len(pairs))


def add_space_prefix(tok: dict[str, Any]) -> bool:
    """Whether the tokenizer puts "▁" before the text (Llama 2 does, Gemma 3 does not)."""
    steps = [tok.get("normalizer") or {}, tok.get("pre_tokenizer") or {}]
    flat: list[dict[str, Any]] = []
    for step in steps:
        flat.extend(step.get("normalizers") or step.get("pretokenizers") or [step])
    for step in flat:
        if step.get("type") == "Prepend" and step.get("prepend") == "▁":
            return True
        if step.get("type") == "Metaspace" and step.get("prepend_scheme", "always") != "never":
            return True
    return False


def spm_token_table(tok: dict[str, Any], n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and GGUF token types for ids 0..n_vocab-1 (unused rows `[PAD<id>]`)."""
    vocab: dict[str, int] = tok["model"]["vocab"]
    scores_by_text, unmerged = merge_scores(tok)
    if not scores_by_text:
        raise ConvertError("tokenizer.json: a byte-fallback BPE without merges cannot be scored")
    unk = tok["model"].get("unk_token")
    by_id: dict[int, tuple[str, float, int]] = {}
    for text, tid in vocab.items():
        if BYTE_TOKEN.match(text):
            by_id[int(tid)] = (text, 0.0, gguf.TokenType.BYTE)
        elif text == unk:
            by_id[int(tid)] = (text, SPECIAL_SCORE, gguf.TokenType.UNKNOWN)
        else:
            by_id[int(tid)] = (text, scores_by_text.get(text, unmerged), gguf.TokenType.NORMAL)
    for added in tok.get("added_tokens", []):
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        by_id[int(added["id"])] = (added["content"], SPECIAL_SCORE, kind)
    if by_id and max(by_id) >= n_vocab:
        raise ConvertError(f"tokenizer has token id {max(by_id)} but the model has only {n_vocab} "
                           "embedding rows: the tokenizer does not belong to these weights")
    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []
    for i in range(n_vocab):
        text, score, kind = by_id.get(i, (f"[PAD{i}]", SPECIAL_SCORE, gguf.TokenType.UNUSED))
        tokens.append(text)
        scores.append(score)
        types.append(int(kind))
    n_bytes = sum(t == gguf.TokenType.BYTE for t in types)
    if n_bytes != 256:
        raise ConvertError(f"tokenizer.json has {n_bytes} byte tokens <0x00>..<0xFF>, expected "
                           "256: llama.cpp's byte fallback needs all of them")
    return tokens, scores, types


def add_spm_vocab(writer: gguf.GGUFWriter, model_dir: Path, tok: dict[str, Any],
                  n_vocab: int) -> tuple[str, str | None]:
    """Write the SPM tokenizer keys; return the pre-tokenizer name and the chat template.

    Special ids, add_bos/add_eos and the chat template come from gguf-py's `SpecialVocab`
    (tokenizer_config.json and the post-processor of tokenizer.json), as for the BPE writer.
    """
    tokens, scores, types = spm_token_table(tok, n_vocab)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre(SPM_PRE)
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_add_space_prefix(add_space_prefix(tok))
    special = gguf.SpecialVocab(model_dir, load_merges=False, n_vocab=n_vocab)
    special.add_to_gguf(writer, quiet=True)
    log.info("SPM vocab: %d tokens, special ids %s, add %s", n_vocab, special.special_token_ids,
             special.add_special_token)
    template = special.chat_template
    return SPM_PRE, template if isinstance(template, str) else None
