"""`make base-gemma`: the Hugging Face folder written from the Gemma 3 270M release GGUF.

The folder must hold the release's values exactly (dequantized, float32; HF's RMSNorm weights are
the GGUF's minus one), declare Gemma's BOS/EOS the way llama.cpp reads the GGUF, and give the
training code the very token ids the Screener feeds (the SDK's golden token file).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.base_from_gguf import BaseFromGgufError, write_base

GOLDEN = Path(__file__).resolve().parents[2] / "sdk" / "python" / "tests" / "golden"


def test_a_missing_gguf_names_the_make_target(tmp_path: Path) -> None:
    with pytest.raises(BaseFromGgufError, match="make models/gemma-3-270m"):
        write_base(tmp_path / "absent.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_weights_are_the_release_dequantized(gemma_base: Path, gemma_release: Path) -> None:
    import gguf
    from safetensors.numpy import load_file

    from convert.tensor_map import ARCHITECTURES, NameMapper

    config = json.loads((gemma_base / "config.json").read_text("utf-8"))
    assert config["architectures"] == ["Gemma3ForCausalLM"] and config["dtype"] == "float32"
    hf = load_file(gemma_base / "model.safetensors")
    mapper = NameMapper(ARCHITECTURES["Gemma3ForCausalLM"], config["num_hidden_layers"])
    release = {t.name: t for t in gguf.GGUFReader(gemma_release).tensors}
    assert len(hf) == len(release) == 236  # tied embeddings: no lm_head in either
    kinds = set()
    for hf_name, values in hf.items():
        t = release[mapper.gguf_name(hf_name)]
        want = gguf.quants.dequantize(t.data, t.tensor_type).reshape(values.shape)
        shift = mapper.norm_shift(hf_name)
        np.testing.assert_array_equal(values + np.float32(shift), want, err_msg=hf_name)
        kinds.add(t.tensor_type.name)
    assert {"Q4_K", "Q5_0", "Q6_K", "Q8_0", "F32"} <= kinds
    assert "dequantized" in (gemma_base / "README.md").read_text("utf-8")


@pytest.mark.slow
def test_bos_on_eos_off_and_training_ids_equal_the_screener_golden(gemma_base: Path) -> None:
    from transformers import AutoTokenizer

    from psyedge.prompt import INSTRUCTION, get_template, prepare, transcript
    from training.examples import encode_record, wants_bos
    from training.prompt_ids import prompt_ids

    golden = json.loads((GOLDEN / "tokens_gemma-3-270m_raw.json").read_text("utf-8"))
    tok = AutoTokenizer.from_pretrained(gemma_base)
    cfg = json.loads((gemma_base / "tokenizer_config.json").read_text("utf-8"))
    assert cfg["add_bos_token"] is True and cfg["add_eos_token"] is False
    assert wants_bos(gemma_base, tok) and tok.bos_token_id == golden["bos"] == 2
    assert tok.eos_token == "<eos>" and tok.eos_token_id == 1
    turns, _ = prepare(golden["conversation"])
    raw = get_template("raw")
    want = golden["prefix"] + [t for line in golden["lines"] for t in line] + golden["suffix"]
    assert prompt_ids(tok, INSTRUCTION, transcript(turns), raw, bos=True) == want
    record = {"instruction": INSTRUCTION, "input": transcript(turns), "output": golden["answer"]}
    ex = encode_record(tok, record, raw, bos=True)
    assert ex["input_ids"] == want + golden["answer_ids"]
    n_prompt = len(want)
    assert ex["labels"][:n_prompt] == [-100] * n_prompt
    # raw adds no EOS: the last label is the "}" the decode plan forces, never <eos>
    assert ex["labels"][n_prompt:] == golden["answer_ids"] and tok.eos_token_id not in ex["labels"]
