"""Gemma 3 through the converter, on the real 270M weights (`make base-gemma`'s folder).

The release GGUF was written by llama.cpp's own converter from Google's checkpoint, so it is the
reference for everything the file holds: our f32 conversion of the dequantized folder must give
back its tensors bit for bit (names, the +1 norm convention, tied embeddings) and its vocabulary.
Then llama.cpp must agree with transformers: token for token on every CPsyCounD and PsySUICIDE
text, and in logits on real prompts, one of them longer than the 512-token sliding window.

Measured 2026-12-02 (2 CPU cores shared with other jobs; the module takes about 7 minutes and
8 GB peak RSS, mostly the 262,144-wide logits): tokenizer 0 mismatching texts of 4,564 (1.63 M
tokens); logits over 1,523 positions (388 past the window): f32 max relative error 1.6e-3 with
argmax equal at 100%, f16 1.8e-3 and 99.8% (100% past the window). Even f32 is not exact:
llama.cpp's CPU GELU reads an fp16 table, so its error is not the converted weights'.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from convert.to_gguf import convert
from psyedge.prompt import render

pytestmark = pytest.mark.slow

F32_MAX_REL = 5e-3      # measured 1.6e-3
F16_MAX_REL = 1e-2      # measured 1.8e-3
MIN_ARGMAX = 0.99       # measured 1.000 (f32), 0.998 (f16)
N_CTX = 1024
SWA = 512
GOLDEN = Path(__file__).resolve().parents[2] / "sdk" / "python" / "tests" / "golden"


@pytest.fixture(scope="module")
def gemma_ggufs(gemma_base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("gemma-gguf")
    return {t: convert(gemma_base, out / f"gemma-{t}.gguf", t).path for t in ("f32", "f16")}


def test_f32_gguf_is_the_release_dequantized(gemma_ggufs: dict[str, Path],
                                             gemma_release: Path) -> None:
    import gguf

    ours = gguf.GGUFReader(gemma_ggufs["f32"])
    ref = gguf.GGUFReader(gemma_release)
    mine = {t.name: t for t in ours.tensors}
    assert sorted(mine) == sorted(t.name for t in ref.tensors) and "output.weight" not in mine
    for t in ref.tensors:
        want = gguf.quants.dequantize(t.data, t.tensor_type)
        np.testing.assert_array_equal(mine[t.name].data.reshape(want.shape), want, err_msg=t.name)

    def field(reader: gguf.GGUFReader, key: str) -> object:
        return reader.fields[key].contents()

    for key in ("gemma3.block_count", "gemma3.embedding_length", "gemma3.feed_forward_length",
                "gemma3.attention.head_count", "gemma3.attention.head_count_kv",
                "gemma3.attention.key_length", "gemma3.attention.value_length",
                "gemma3.attention.sliding_window", "gemma3.rope.freq_base", "gemma3.context_length",
                "gemma3.attention.layer_norm_rms_epsilon", "tokenizer.ggml.model",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
                "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
                "tokenizer.ggml.add_space_prefix"):
        assert field(ours, key) == field(ref, key), key
    # What the release leaves to llama.cpp's defaults, written explicitly from config.json.
    pattern = field(ours, "gemma3.attention.sliding_window_pattern")
    assert pattern == [(i + 1) % 6 != 0 for i in range(18)]  # layers 5, 11, 17 global
    assert field(ours, "gemma3.rope.freq_base_swa") == 10000.0
    # Tokens and types equal the release's but for its 30 all-space tokens, which transformers
    # spells with "▁" as ordinary pieces (tokenization is unchanged: see the parity test).
    tokens, ref_tokens = field(ours, "tokenizer.ggml.tokens"), field(ref, "tokenizer.ggml.tokens")
    types = field(ours, "tokenizer.ggml.token_type")
    ref_types = field(ref, "tokenizer.ggml.token_type")
    differ = [i for i in range(len(ref_tokens))
              if (tokens[i], types[i]) != (ref_tokens[i], ref_types[i])]
    assert len(differ) == 30
    for i in differ:
        assert set(ref_tokens[i]) == {" "} and tokens[i] == "▁" * len(ref_tokens[i]), i


@pytest.mark.realdata
def test_tokenizer_parity_on_every_real_text(gemma_base: Path, gemma_ggufs: dict[str, Path],
                                             real_data: Path) -> None:
    import llama_cpp
    from tokenizers import Tokenizer

    files = sorted((real_data / "cpsycoun" / "CPsyCounD" / "Data").glob("case_*.txt"))
    rows = json.loads((real_data / "psysuicide" / "valid.json").read_text("utf-8"))
    assert len(files) == 3084 and len(rows) == 1480
    texts = [f.read_text("utf-8") for f in files] + [r["text"] for r in rows]
    hf = Tokenizer.from_file(str(gemma_base / "tokenizer.json"))
    want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    llm = llama_cpp.Llama(str(gemma_ggufs["f16"]), vocab_only=True, verbose=False)
    bad = [i for i, (text, ids) in enumerate(zip(texts, want, strict=True))
           if llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) != ids]
    llm.close()
    n_tokens = sum(map(len, want))
    print(f"Gemma vocab: {len(bad)} mismatching texts of {len(texts)} ({n_tokens} tokens)")
    assert bad == [], f"{len(bad)} texts tokenize differently, first indices {bad[:5]}"


@pytest.fixture(scope="module")
def parity_ids(gemma_base: Path, real_data: Path) -> list[list[int]]:
    """Raw-template prompts of three PsySUICIDE texts (one per risk kind) and one counseling
    dialogue cut to 900 tokens, past the sliding window."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gemma_base)
    rows = json.loads((real_data / "psysuicide" / "valid.json").read_text("utf-8"))
    classes = ("主动自杀意图", "用户攻击行为", "与自杀/自伤/攻击行为无关")
    picked = [next(r for r in rows if r["data_source"] != "synthetic" and cls in r["labels"])
              for cls in classes]
    prompts = [render([{"role": "user", "text": r["text"]}], "raw") for r in picked]
    ids = [tok(p)["input_ids"] for p in prompts]
    dialogue = (real_data / "cpsycoun" / "CPsyCounD" / "Data" / "case_1408.txt").read_text("utf-8")
    ids.append(tok(dialogue)["input_ids"][:900])
    assert ids[-1][0] == tok.bos_token_id and len(ids[-1]) == 900 > SWA
    return ids


@pytest.fixture(scope="module")
def hf_logits(gemma_base: Path, parity_ids: list[list[int]]) -> list[np.ndarray]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gemma_base, dtype=torch.float32).eval()
    with torch.no_grad():
        out = [model(torch.tensor([s])).logits[0].numpy() for s in parity_ids]
    del model
    return out


@pytest.mark.realdata
@pytest.mark.parametrize("outtype", ["f32", "f16"])
def test_logits_parity_on_real_prompts(gemma_ggufs: dict[str, Path], parity_ids: list[list[int]],
                                       hf_logits: list[np.ndarray], outtype: str,
                                       record_property: pytest.RecordProperty) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(str(gemma_ggufs[outtype]), n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX,
                          logits_all=True, verbose=False, n_threads=2,
                          type_k=0, type_v=0)  # f32 KV cache: measure the weights, not the cache
    rel, agree = [], []
    for seq, ref in zip(parity_ids, hf_logits, strict=True):
        llm.reset()
        llm.eval(seq)
        got = np.asarray(llm.scores[: len(seq)], dtype=np.float32)
        rel.append(np.abs(got - ref).max(-1) / np.abs(ref).max(-1))
        agree.append(got.argmax(-1) == ref.argmax(-1))
    llm.close()
    rel_all, agree_all = np.concatenate(rel), np.concatenate(agree)
    past_window = agree[-1][SWA:].mean()
    record_property(f"{outtype}_max_rel", float(rel_all.max()))
    record_property(f"{outtype}_argmax", float(agree_all.mean()))
    print(f"{outtype}: {agree_all.size} positions, max relative error {rel_all.max():.3g}, argmax "
          f"{agree_all.mean():.4f} (past the window {past_window:.4f})")
    assert agree_all.mean() >= MIN_ARGMAX and past_window >= MIN_ARGMAX
    assert rel_all.max() < (F32_MAX_REL if outtype == "f32" else F16_MAX_REL)


def test_screener_loads_the_converted_gguf_with_the_raw_template(
        gemma_ggufs: dict[str, Path]) -> None:
    """Same token plan as the release (the SDK golden) and schema-valid labels."""
    from psyedge.contract import validate
    from psyedge.screener import Screener

    golden = json.loads((GOLDEN / "tokens_gemma-3-270m_raw.json").read_text("utf-8"))
    with Screener(gemma_ggufs["f16"], template="raw", n_ctx=N_CTX, lexicon=False) as screener:
        plan = screener.token_plan
        assert list(plan.prefix) == golden["prefix"] and list(plan.suffix) == golden["suffix"]
        assert [list(f) for f in plan.forced] == golden["forced"]
        result = screener.assess(golden["conversation"])
    validate(result.labels.to_dict())
