"""The adapter GGUF (`convert.lora_gguf`): llama.cpp applying it on the base must give the logits
of the merged model, and the SDK must read the adapter's manifest.

The adapter is a PEFT LoRA on every linear layer of the tiny model with its B matrices drawn at
random (PEFT starts B at zero, which would make any converter look right), so the merged model's
logits differ clearly from the base's, and only a correctly named, oriented and scaled adapter
brings llama.cpp back to them. Everything is f32, so the two paths agree to rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from convert.errors import ConvertError
from convert.lora_gguf import convert_adapter
from convert.to_gguf import convert
from psyedge.decode import Engine, EngineConfig
from psyedge.errors import ModelError
from psyedge.prompt import render

RANK, ALPHA = 4, 8


@pytest.fixture(scope="module")
def base_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model stored in float32, so that the merge adds in f32 and rounds nothing (the
    bf16 tiny base would round the merged weights by ~0.4%, more than this test allows)."""
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("base32") / "tiny-f32"
    AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).save_pretrained(out)
    for f in tiny_dir.iterdir():
        if f.suffix != ".safetensors" and f.name not in ("config.json", "generation_config.json"):
            (out / f.name).write_bytes(f.read_bytes())
    return out


@pytest.fixture(scope="module")
def adapter_dir(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules="all-linear",
                                            lora_dropout=0.0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def files(base_dir: Path, adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from training.merge import merge, stored_dtype

    assert stored_dtype(base_dir) == "float32"
    out = tmp_path_factory.mktemp("lora-gguf")
    merged = merge(base_dir, adapter_dir, out / "merged", template="deepseek-r1")
    return {
        "base": convert(base_dir, out / "base-f32.gguf", "f32").path,
        "merged": convert(merged, out / "merged-f32.gguf", "f32").path,
        "adapter": convert_adapter(adapter_dir, base_dir, out / "adapter.gguf").path,
    }


def _logits(model: Path, tokens: list[int] | None, text: str,
            adapter: Path | None = None) -> tuple[list[int], np.ndarray]:
    eng = Engine(model, EngineConfig(n_ctx=512, n_threads=2, n_seq_max=1), adapter=adapter)
    try:
        ids = tokens if tokens is not None else eng.tokenize(text, special=True)
        return ids, np.stack(eng.decode_seq(ids, 0, logits="all"))
    finally:
        eng.close()


@pytest.mark.slow
def test_base_plus_adapter_gives_the_merged_logits(files: dict[str, Path],
                                                   conversations: list[list[dict[str, str]]]) -> None:
    for conv in conversations[:2]:
        ids, merged = _logits(files["merged"], None, render(conv))
        _, with_adapter = _logits(files["base"], ids, "", adapter=files["adapter"])
        _, base = _logits(files["base"], ids, "")
        scale = np.abs(merged).max()
        assert np.abs(base - merged).max() / scale > 0.05  # the adapter changes the answer
        assert np.abs(with_adapter - merged).max() / scale < 1e-4
        assert (with_adapter.argmax(-1) == merged.argmax(-1)).all()


def test_adapter_file_says_what_llama_cpp_needs(files: dict[str, Path]) -> None:
    import gguf

    r = gguf.GGUFReader(files["adapter"])
    kv = {f.name: f.contents() for f in r.fields.values()}
    assert kv["general.type"] == "adapter" and kv["adapter.type"] == "lora"
    assert kv["adapter.lora.alpha"] == pytest.approx(ALPHA)
    assert kv["psyedge.template"] == "deepseek-r1"
    names = {t.name for t in r.tensors}
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.1.ffn_down.weight.lora_b" in names
    assert len(names) == 2 * 7 * 2  # 2 layers x 7 projections x (A, B)


def test_screener_reads_the_template_from_the_adapter(tiny_dir: Path, files: dict[str, Path],
                                                      tmp_path: Path) -> None:
    from psyedge import Screener

    # A base GGUF without psyedge keys: the template can only come from the adapter.
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in tiny_dir.iterdir():
        if f.name != "psyedge.json":
            (bare / f.name).write_bytes(f.read_bytes())
    base = convert(bare, tmp_path / "bare.gguf", "f16").path
    with pytest.raises(ModelError, match="no psyedge.template"):
        Screener(base)
    with Screener(base, adapter=files["adapter"], n_threads=2) as s:
        assert s.template.name == "deepseek-r1"
        s.assess([{"role": "user", "text": "最近压力很大。"}])


def test_a_missing_or_foreign_adapter_is_a_clear_error(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="adapter file not found"):
        Engine(files["base"], EngineConfig(n_ctx=256, n_seq_max=1), adapter=tmp_path / "none.gguf")
    with pytest.raises(ModelError, match="could not load the adapter"):
        Engine(files["base"], EngineConfig(n_ctx=256, n_seq_max=1), adapter=files["merged"])


def test_options_the_format_cannot_carry_are_refused(adapter_dir: Path, base_dir: Path,
                                                     tmp_path: Path) -> None:
    bad = tmp_path / "dora"
    bad.mkdir()
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    (bad / "adapter_model.safetensors").write_bytes((adapter_dir / "adapter_model.safetensors").read_bytes())
    with pytest.raises(ConvertError, match="use_dora"):
        convert_adapter(bad, base_dir, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()
